"""Batch jobs: every photo of a folder, glob or list classified into a JSONL, CSV or Parquet file.

>>> from facegender.batch import run_batch
>>> summary = run_batch(inputs="photos/", out="faces.jsonl")  # doctest: +SKIP
>>> summary.files, summary.faces, summary.photos_per_second  # doctest: +SKIP
(1200, 1187, 41.5)

INPUT is a folder (searched recursively for image files), a glob (``photos/**/*.jpg``), a ``.txt`` list
(one path a line) or a ``.csv`` list (the ``file`` or ``path`` column when the first row names one, else
the first column); relative paths in a list are relative to the list's folder. A path with a scheme
(``s3://``, ``gs://``, ``memory://``, ``file://``...) is read through fsspec (the ``[fsspec]`` extra plus the
filesystem's own package, e.g. ``s3fs``).

Each file gets one record (:mod:`facegender.records`, plus its ``size`` and ``mtime``), written in
chunks; a file that cannot be read or decoded gets its error record and the job goes on. Records are
keyed by ``(file, size, mtime)``: rerunning with the same output skips the files already recorded and
appends the rest, and a file changed since gets a newer record (the last one for a path wins).

Engines: ``local`` runs chunks on a pool of threads or processes on this machine; ``ray`` runs the same
chunks as Ray Data ``map_batches`` on an actor pool, each actor loading the models once (the ``[ray]``
extra). Both hand their records to the same writer on the calling machine.
"""

from __future__ import annotations

import csv
import glob
import json
import logging
import multiprocessing
import os
import posixpath
import signal
import time
import uuid
from collections import deque
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from types import ModuleType, TracebackType
from typing import TYPE_CHECKING, Any, Final, Literal, Protocol, Self

from facegender.data import IMAGE_SUFFIXES
from facegender.errors import (
    BatchInputError,
    FaceGenderError,
    InvalidImageError,
    MissingExtraError,
    NoFaceError,
)
from facegender.records import FLAT_COLUMNS, flat_row, photo_record
from facegender.results import LABELS, Face
from facegender.settings import Settings

if TYPE_CHECKING:
    from facegender.pipeline import FaceGender

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "DEFAULT_POOL",
    "ENGINES",
    "FORMATS",
    "POOLS",
    "BatchProgress",
    "BatchSummary",
    "Engine",
    "InputFile",
    "OutputFormat",
    "Pool",
    "format_for",
    "list_inputs",
    "predict_records",
    "run_batch",
]

Engine = Literal["local", "ray"]
OutputFormat = Literal["jsonl", "csv", "parquet"]
Pool = Literal["threads", "processes"]
ENGINES: Final[tuple[Engine, ...]] = ("local", "ray")
FORMATS: Final[tuple[OutputFormat, ...]] = ("jsonl", "csv", "parquet")
POOLS: Final[tuple[Pool, ...]] = ("threads", "processes")

DEFAULT_CHUNK_SIZE: Final = 32
"""Files per ``predict_batch`` call, per write and per progress step."""
DEFAULT_POOL: Final[Pool] = "threads"
"""Measured on 500 UTKFace chips on 2 cores (README, Batch): threads beat processes."""
PARQUET_PART_ROWS: Final = 10_000
"""Rows per Parquet part file; a kill loses at most this many unwritten rows, redone on resume."""

_SUFFIX_FORMATS: Final[dict[str, OutputFormat]] = {
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
    ".csv": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
}
_LIST_COLUMNS: Final = ("file", "path")

Key = tuple[str, int | None, float | None]


@dataclass(frozen=True, slots=True)
class InputFile:
    """One file to classify: its path or URL, and its size and modification time when known."""

    path: str
    size: int | None
    mtime: float | None

    @property
    def key(self) -> Key:
        """What identifies this version of the file in an output, for resume."""
        return (self.path, self.size, self.mtime)


@dataclass(frozen=True, slots=True)
class BatchProgress:
    """Where a job stands: ``done`` of ``total`` files to do in this run, ``skipped`` already recorded."""

    done: int
    total: int
    skipped: int


@dataclass(slots=True)
class BatchSummary:
    """What a run did. ``faces`` and ``by_class`` count every face; ``no_face`` and ``errors`` count files."""

    files: int = 0
    faces: int = 0
    by_class: dict[str, int] = field(default_factory=lambda: dict.fromkeys(LABELS, 0))
    no_face: int = 0
    errors: int = 0
    skipped: int = 0
    seconds: float = 0.0

    @property
    def photos_per_second(self) -> float:
        return self.files / self.seconds if self.seconds > 0 else 0.0

    def add(self, record: dict[str, Any]) -> None:
        """Count one written record."""
        self.files += 1
        self.faces += len(record["faces"])
        for face in record["faces"]:
            self.by_class[face["class"]] = self.by_class.get(face["class"], 0) + 1
        error = record["error"]
        if error is not None:
            if error["code"] == NoFaceError.code:
                self.no_face += 1
            else:
                self.errors += 1


def format_for(out: str | os.PathLike[str]) -> OutputFormat:
    """The output format that ``out``'s suffix names.

    Raises:
        BatchInputError: the suffix names none of :data:`FORMATS`.
    """
    suffix = Path(out).suffix.lower()
    if suffix not in _SUFFIX_FORMATS:
        raise BatchInputError(f"cannot tell the output format from {Path(out).name!r}; pass one of {FORMATS}")
    return _SUFFIX_FORMATS[suffix]


def run_batch(
    *,
    inputs: str,
    out: str | os.PathLike[str],
    output_format: OutputFormat | None = None,
    engine: Engine = "local",
    workers: int | None = None,
    pool: Pool = DEFAULT_POOL,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    ray_address: str | None = None,
    settings: Settings | None = None,
    progress: Callable[[BatchProgress], None] | None = None,
) -> BatchSummary:
    """Classify every file that ``inputs`` names into ``out``, skipping those ``out`` already records.

    Args:
        inputs: a folder, a glob, or a ``.txt``/``.csv`` list of paths (local paths or fsspec URLs).
        out: a local ``.jsonl`` or ``.csv`` file, or a folder of Parquet parts; created or appended to.
        output_format: defaults from ``out``'s suffix (:func:`format_for`).
        engine: ``local`` (this machine) or ``ray`` (Ray Data, local or ``ray_address``).
        workers: parallel workers: pool threads or processes, or Ray actors (default: the CPUs here;
            with ``ray_address``, the cluster's CPUs).
        pool: the local engine's kind of worker.
        chunk_size: files per model call, write and progress step.
        ray_address: a Ray cluster (``ray://host:10001`` or ``auto``); without it a local Ray is started
            for the job and stopped after it.
        settings: model settings (default: ``Settings()`` from the environment).
        progress: called with a :class:`BatchProgress` once the inputs are listed, then after every chunk.

    Raises:
        BatchInputError: ``inputs`` names no file, or ``out`` holds something this job cannot append to.
        MissingExtraError: the engine, format or a URL needs a package that is not installed.
        ModelError: a model cannot be loaded.
    """
    started = time.monotonic()
    if chunk_size < 1:
        raise BatchInputError("the chunk size must be at least 1")
    if workers is not None and workers < 1:
        raise BatchInputError("workers must be at least 1")
    chosen_format = output_format or format_for(out)
    files = list_inputs(inputs)
    settings = settings or Settings()
    summary = BatchSummary()
    with _open_writer(Path(out), chosen_format) as writer:
        pending = [item for item in files if item.key not in writer.done]
        summary.skipped = len(files) - len(pending)
        report = progress or (lambda _: None)
        report(BatchProgress(done=0, total=len(pending), skipped=summary.skipped))
        if engine == "ray":
            chunks = _ray_chunks(
                pending, workers=workers, chunk_size=chunk_size, settings=settings, address=ray_address
            )
        else:
            chunks = _local_chunks(
                pending, workers=workers or _cpu_count(), pool=pool, chunk_size=chunk_size, settings=settings
            )
        try:
            for records in chunks:
                writer.write(records)
                for record in records:
                    summary.add(record)
                report(BatchProgress(done=summary.files, total=len(pending), skipped=summary.skipped))
        finally:
            chunks.close()  # stop the workers (and a Ray started for the job) now, also on Ctrl-C
    summary.seconds = time.monotonic() - started
    return summary


# ---------------------------------------------------------------------------------------------- inputs


def list_inputs(spec: str) -> list[InputFile]:
    """The files that ``spec`` names, each once, in a stable order.

    Raises:
        BatchInputError: ``spec`` does not exist, names no file or is a list we cannot read.
        MissingExtraError: ``spec`` is a URL and fsspec is not installed.
    """
    storage = _storage_for(spec)
    if any(char in spec for char in "*?["):
        files = storage.glob(spec)
    elif storage.is_dir(spec):
        files = storage.find_images(spec)
    elif Path(spec).suffix.lower() in {".txt", ".csv"}:
        files = [_storage_for(entry).info(entry) for entry in _list_entries(storage, spec)]
    else:
        files = [storage.info(spec)]  # one photo
        if files[0].size is None:
            raise BatchInputError(f"INPUT not found: {spec}")
    unique = list({item.path: item for item in files}.values())
    if not unique:
        raise BatchInputError(f"INPUT names no image file: {spec}")
    return unique


def _list_entries(storage: _Storage, spec: str) -> list[str]:
    try:
        text = storage.read_text(spec)
    except (OSError, UnicodeDecodeError) as exc:
        raise BatchInputError(f"cannot read the list {spec}: {exc}") from None
    if Path(spec).suffix.lower() == ".csv":
        rows = [row for row in csv.reader(text.splitlines()) if row and row[0].strip()]
        header = [cell.strip().lower() for cell in rows[0]] if rows else []
        named = next((header.index(name) for name in _LIST_COLUMNS if name in header), None)
        column, rows = (named, rows[1:]) if named is not None else (0, rows)
        entries = [row[column].strip() for row in rows if len(row) > column and row[column].strip()]
    else:
        lines = (line.strip() for line in text.splitlines())
        entries = [line for line in lines if line and not line.startswith("#")]
    return [storage.resolve(spec, entry) for entry in entries]


class _Storage(Protocol):
    def is_dir(self, path: str) -> bool: ...
    def find_images(self, root: str) -> list[InputFile]: ...
    def glob(self, pattern: str) -> list[InputFile]: ...
    def info(self, path: str) -> InputFile: ...
    def read_text(self, path: str) -> str: ...
    def resolve(self, list_path: str, entry: str) -> str: ...


def _is_url(path: str) -> bool:
    return "://" in path


def _storage_for(path: str) -> _Storage:
    return _FsspecStorage(path) if _is_url(path) else _LocalStorage()


def _is_image_name(name: str) -> bool:
    return Path(name).suffix.lower() in IMAGE_SUFFIXES


class _LocalStorage:
    """Local paths, stored absolute so that a rerun from another folder still matches its records."""

    def is_dir(self, path: str) -> bool:
        return Path(path).is_dir()

    def find_images(self, root: str) -> list[InputFile]:
        found: list[InputFile] = []
        for folder, dirs, names in os.walk(root):
            dirs.sort()
            found.extend(self.info(str(Path(folder, name))) for name in sorted(names) if _is_image_name(name))
        return found

    def glob(self, pattern: str) -> list[InputFile]:
        # glob.glob, not Path.glob: a pattern may be absolute or start with '..'.
        matches = glob.glob(pattern, recursive=True)  # noqa: PTH207
        return [self.info(path) for path in sorted(matches) if Path(path).is_file()]

    def info(self, path: str) -> InputFile:
        # A missing, unreadable or invalid name is still listed: its record will say what is wrong.
        try:
            absolute = Path(path).resolve()
        except (OSError, ValueError):
            return InputFile(path, None, None)
        try:
            stat = absolute.stat()
        except OSError:
            return InputFile(str(absolute), None, None)
        return InputFile(str(absolute), stat.st_size, stat.st_mtime)

    def read_text(self, path: str) -> str:
        return Path(path).read_text(encoding="utf-8-sig")

    def resolve(self, list_path: str, entry: str) -> str:
        if _is_url(entry):
            return entry
        return str(Path(list_path).resolve().parent / entry)


class _FsspecStorage:
    """Any fsspec filesystem; URLs are stored with their scheme so that workers can open them anywhere."""

    def __init__(self, url: str) -> None:
        self.fs, _ = _import_fsspec().core.url_to_fs(url)

    def _strip(self, url: str) -> str:
        return str(self.fs._strip_protocol(url))

    def _file(self, path: str, details: dict[str, Any]) -> InputFile:
        size = details.get("size")
        return InputFile(self.fs.unstrip_protocol(path), int(size) if size is not None else None, _mtime(details))

    def is_dir(self, path: str) -> bool:
        return bool(self.fs.isdir(self._strip(path)))

    def find_images(self, root: str) -> list[InputFile]:
        found = self.fs.find(self._strip(root), detail=True)
        return [self._file(path, details) for path, details in sorted(found.items()) if _is_image_name(path)]

    def glob(self, pattern: str) -> list[InputFile]:
        found = self.fs.glob(self._strip(pattern), detail=True)
        return [self._file(path, details) for path, details in sorted(found.items()) if details.get("type") == "file"]

    def info(self, path: str) -> InputFile:
        try:
            details = self.fs.info(self._strip(path))
        except (OSError, ValueError):
            return InputFile(path, None, None)
        return self._file(self._strip(path), details)

    def read_text(self, path: str) -> str:
        return bytes(self.fs.cat_file(self._strip(path))).decode("utf-8-sig")

    def resolve(self, list_path: str, entry: str) -> str:
        if _is_url(entry):
            return entry
        return posixpath.join(posixpath.dirname(list_path), entry)


def _mtime(details: dict[str, Any]) -> float | None:
    """The modification time in an fsspec ``info`` dict; each filesystem names it its own way."""
    for name in ("mtime", "LastModified", "last_modified", "updated", "modified", "created"):
        value = details.get(name)
        if isinstance(value, int | float):
            return float(value)
        if isinstance(value, datetime):
            return value.timestamp()
        if isinstance(value, str):
            try:
                return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
            except ValueError:
                continue
    return None


def _import_fsspec() -> ModuleType:
    try:
        import fsspec
    except ImportError:
        raise MissingExtraError('reading URLs needs fsspec: pip install "facegender[fsspec]"') from None
    module: ModuleType = fsspec
    return module


def _read(path: str) -> str | bytes:
    """What ``predict_batch`` should load: a local path as is, a URL's bytes through fsspec."""
    if not _is_url(path):
        return path
    fsspec = _import_fsspec()
    try:
        with fsspec.open(path, "rb") as handle:
            return bytes(handle.read())
    except FileNotFoundError:
        raise InvalidImageError(f"file not found: {path}") from None
    except (OSError, ValueError) as exc:
        raise InvalidImageError(f"cannot read {path}: {exc}") from None


# ---------------------------------------------------------------------------------------------- predicting


def predict_records(fg: FaceGender, files: Sequence[InputFile]) -> list[dict[str, Any]]:
    """One record per file, in order, with every face of the chunk classified in one model call."""
    outcomes: list[list[Face] | FaceGenderError | None] = []
    sources: list[str | bytes] = []
    for item in files:
        try:
            sources.append(_read(item.path))
            outcomes.append(None)
        except FaceGenderError as error:
            outcomes.append(error)
    # An unexpected failure costs only its own file: predict_batch retries the chunk file by file.
    results = iter(fg.predict_batch(sources, return_exceptions=True))
    return [
        {
            "file": item.path,
            "size": item.size,
            "mtime": item.mtime,
            **photo_record(item.path, next(results) if outcome is None else outcome, model_version=fg.model_version),
        }
        for item, outcome in zip(files, outcomes, strict=True)
    ]


def _cpu_count() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _worker_overrides(settings: Settings, workers: int) -> dict[str, Any]:
    """The settings a worker process or actor needs: those set here, one onnxruntime thread per worker.

    Unset fields stay out so that a worker elsewhere finds the models where its own install put them.
    """
    overrides = settings.model_dump(mode="json", exclude_unset=True)
    if workers > 1 and settings.threads == 0:
        overrides["threads"] = 1  # the workers already fill the cores; more threads would only contend
    return overrides


def _chunked(files: Sequence[InputFile], size: int) -> Iterator[list[InputFile]]:
    for start in range(0, len(files), size):
        yield list(files[start : start + size])


def _local_chunks(
    files: Sequence[InputFile], *, workers: int, pool: Pool, chunk_size: int, settings: Settings
) -> Generator[list[dict[str, Any]], None, None]:
    from facegender.pipeline import FaceGender

    if not files:
        return
    overrides = _worker_overrides(settings, workers)
    if workers == 1:
        fg = FaceGender(settings=Settings(**overrides))
        for chunk in _chunked(files, chunk_size):
            yield predict_records(fg, chunk)
        return
    executor: Executor
    if pool == "threads":
        # onnxruntime and OpenCV release the GIL, so the threads share one loaded model.
        shared = FaceGender(settings=Settings(**overrides))
        executor = ThreadPoolExecutor(workers, thread_name_prefix="facegender-batch")

        def submit(chunk: list[InputFile]) -> Future[list[dict[str, Any]]]:
            return executor.submit(predict_records, shared, chunk)

    else:
        # spawn: a forked child would inherit the parent's threads (tqdm's, onnxruntime's) in unknown states.
        context = multiprocessing.get_context("spawn")
        executor = ProcessPoolExecutor(workers, mp_context=context, initializer=_start_worker, initargs=(overrides,))

        def submit(chunk: list[InputFile]) -> Future[list[dict[str, Any]]]:
            return executor.submit(_worker_predict, chunk)

    try:
        yield from _in_order(submit, _chunked(files, chunk_size), window=2 * workers)
    finally:
        executor.shutdown(wait=True, cancel_futures=True)


def _in_order(
    submit: Callable[[list[InputFile]], Future[list[dict[str, Any]]]],
    chunks: Iterable[list[InputFile]],
    *,
    window: int,
) -> Iterator[list[dict[str, Any]]]:
    """Results in input order, with at most ``window`` chunks in flight so memory stays flat."""
    in_flight: deque[Future[list[dict[str, Any]]]] = deque()
    for chunk in chunks:
        in_flight.append(submit(chunk))
        if len(in_flight) >= window:
            yield in_flight.popleft().result()
    while in_flight:
        yield in_flight.popleft().result()


_worker_model: FaceGender | None = None


def _start_worker(overrides: dict[str, Any]) -> None:
    """Load the models once per worker process."""
    from facegender.pipeline import FaceGender

    global _worker_model
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle: it stops the pool
    _worker_model = FaceGender(settings=Settings(**overrides))


def _worker_predict(files: list[InputFile]) -> list[dict[str, Any]]:
    if _worker_model is None:
        raise RuntimeError("worker process started without its model")
    return predict_records(_worker_model, files)


# ---------------------------------------------------------------------------------------------- Ray


def _import_ray() -> ModuleType:
    try:
        import ray
        import ray.data
    except ImportError:
        raise MissingExtraError('--engine ray needs Ray: pip install "facegender[ray]"') from None
    return ray


class _RayPredictor:
    """A Ray Data ``map_batches`` callable class: loads the models once per actor, one record per file.

    Rows carry ``file``: the JSON of ``[path, size, mtime]``; the output column ``record`` the JSON record.
    """

    def __init__(self, overrides: dict[str, Any]) -> None:
        from facegender.pipeline import FaceGender

        self.fg = FaceGender(settings=Settings(**overrides))

    def __call__(self, batch: dict[str, Any]) -> dict[str, list[str]]:
        files = [InputFile(*json.loads(str(text))) for text in batch["file"]]
        return {"record": [json.dumps(record) for record in predict_records(self.fg, files)]}


def _ray_chunks(
    files: Sequence[InputFile], *, workers: int | None, chunk_size: int, settings: Settings, address: str | None
) -> Generator[list[dict[str, Any]], None, None]:
    if not files:
        return
    ray = _import_ray()
    started_here = not ray.is_initialized()
    if started_here:
        ray.init(
            address=address,
            num_cpus=None if address else workers or _cpu_count(),
            include_dashboard=False,
            log_to_driver=False,
            logging_level=logging.ERROR,
        )
    # The caller draws the progress; Ray Data's own bars and status lines would interleave with it (its
    # log files under /tmp/ray keep everything).
    data_logger = logging.getLogger("ray.data")
    data_level = data_logger.level
    data_logger.setLevel(logging.ERROR)
    try:
        ray.data.DataContext.get_current().enable_progress_bars = False
        actors = workers or max(1, int(ray.cluster_resources().get("CPU", 1)))
        # Rows name the files and the actors read them, so an unreadable file gets its error record
        # instead of failing the read stage, and no read task waits for a CPU that the actors hold.
        rows = [{"file": json.dumps(item.key)} for item in files]
        dataset = ray.data.from_items(rows).map_batches(
            _RayPredictor,
            fn_constructor_kwargs={"overrides": _worker_overrides(settings, actors)},
            batch_size=chunk_size,
            compute=ray.data.ActorPoolStrategy(size=actors),
            num_cpus=1,
        )
        for batch in dataset.iter_batches(batch_size=chunk_size, batch_format="numpy"):
            yield [json.loads(str(text)) for text in batch["record"]]
    finally:
        data_logger.setLevel(data_level)
        if started_here:
            ray.shutdown()


# ---------------------------------------------------------------------------------------------- writers


class _Closing:
    """Context manager support for the writers."""

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()


def _open_writer(out: Path, output_format: OutputFormat) -> _JsonlWriter | _CsvWriter | _ParquetWriter:
    if output_format == "parquet":
        return _ParquetWriter(out)
    if out.is_dir():
        raise BatchInputError(f"--out {out} is a folder; {output_format} output is one file")
    out.parent.mkdir(parents=True, exist_ok=True)
    return _JsonlWriter(out) if output_format == "jsonl" else _CsvWriter(out)


def _drop_partial_line(path: Path) -> None:
    """Cut a last line that a kill left without its newline, so that only whole records remain."""
    with path.open("rb+") as handle:
        size = handle.seek(0, os.SEEK_END)
        end = size
        while end > 0:
            start = max(0, end - 65536)
            handle.seek(start)
            newline = handle.read(end - start).rfind(b"\n")
            if newline >= 0:
                end = start + newline + 1
                break
            end = start
        if end < size:
            handle.truncate(end)


def _key(path: Any, size: Any, mtime: Any) -> Key:
    def number(value: Any, kind: type[int] | type[float]) -> Any:
        return None if value in (None, "") else kind(value)

    return (str(path), number(size, int), number(mtime, float))


class _JsonlWriter(_Closing):
    """One JSON record a line; each chunk is written and flushed as whole lines."""

    def __init__(self, path: Path) -> None:
        self.done: set[Key] = set()
        if path.exists():
            _drop_partial_line(path)
            with path.open(encoding="utf-8") as handle:
                for number, line in enumerate(handle, start=1):
                    try:
                        record = json.loads(line)
                        self.done.add(_key(record["file"], record.get("size"), record.get("mtime")))
                    except (ValueError, KeyError, TypeError):
                        raise BatchInputError(f"--out {path} line {number} is not a batch record") from None
        self._handle = path.open("a", encoding="utf-8")

    def write(self, records: list[dict[str, Any]]) -> None:
        self._handle.write("".join(json.dumps(record) + "\n" for record in records))
        self._handle.flush()

    def close(self) -> None:
        self._handle.close()


class _CsvWriter(_Closing):
    """Flat rows (:data:`FLAT_COLUMNS`) under one header; each chunk is written and flushed as whole rows."""

    def __init__(self, path: Path) -> None:
        self.done: set[Key] = set()
        fresh = not path.exists() or path.stat().st_size == 0
        if not fresh:
            _drop_partial_line(path)
            with path.open(newline="", encoding="utf-8") as handle:
                reader = csv.reader(handle)
                header = next(reader, None)
                if header is not None and tuple(header) != FLAT_COLUMNS:
                    raise BatchInputError(f"--out {path} has other columns than a batch CSV")
                fresh = header is None
                self.done = {_key(*row[:3]) for row in reader if len(row) == len(FLAT_COLUMNS)}
        self._handle = path.open("a", newline="", encoding="utf-8")
        self._csv = csv.DictWriter(self._handle, fieldnames=FLAT_COLUMNS, lineterminator="\n")
        if fresh:
            self._csv.writeheader()
            self._handle.flush()

    def write(self, records: list[dict[str, Any]]) -> None:
        # csv writes a float with repr(), so an mtime reads back equal and resume finds its record.
        self._csv.writerows(flat_row(record) for record in records)
        self._handle.flush()

    def close(self) -> None:
        self._handle.close()


def _import_pyarrow() -> tuple[ModuleType, ModuleType]:
    try:
        import pyarrow
        import pyarrow.parquet
    except ImportError:
        raise MissingExtraError('--format parquet needs pyarrow: pip install "facegender[parquet]"') from None
    return pyarrow, pyarrow.parquet


class _ParquetWriter(_Closing):
    """A folder of Parquet part files, a dataset that pyarrow, pandas, Spark and Ray read as one table.

    A Parquet file cannot be appended to and is unreadable until its footer is written, so each part is
    written under a temporary name and renamed when complete; a resumed run adds parts.
    """

    def __init__(self, folder: Path) -> None:
        self.pa, self.pq = _import_pyarrow()
        if folder.exists() and not folder.is_dir():
            raise BatchInputError(f"--out {folder} is a file; Parquet output is a folder of part files")
        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder
        self.done: set[Key] = set()
        for leftover in folder.glob("*.parquet.tmp"):
            leftover.unlink()  # a part whose writing was cut short
        for part in sorted(folder.glob("part-*.parquet")):
            table = self.pq.read_table(part, columns=["file", "size", "mtime"]).to_pydict()
            self.done.update(map(_key, table["file"], table["size"], table["mtime"]))
        pa = self.pa
        types = {"size": pa.int64(), "mtime": pa.float64(), "faces": pa.int32(), "label": pa.int8()}
        types |= dict.fromkeys(("probability", "detection_score"), pa.float64())
        types |= dict.fromkeys(("box_left", "box_top", "box_width", "box_height"), pa.int32())
        self.schema = pa.schema([(name, types.get(name, pa.string())) for name in FLAT_COLUMNS])
        self._rows: list[dict[str, Any]] = []

    def write(self, records: list[dict[str, Any]]) -> None:
        self._rows.extend(flat_row(record) for record in records)
        if len(self._rows) >= PARQUET_PART_ROWS:
            self._flush()

    def _flush(self) -> None:
        if not self._rows:
            return
        table = self.pa.Table.from_pylist(self._rows, schema=self.schema)
        name = f"part-{time.time_ns():020d}-{uuid.uuid4().hex[:8]}.parquet"
        temporary = self.folder / f"{name}.tmp"
        self.pq.write_table(table, temporary)
        temporary.replace(self.folder / name)
        self._rows = []

    def close(self) -> None:
        self._flush()
