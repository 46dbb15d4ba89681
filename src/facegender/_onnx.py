"""Shared onnxruntime session set-up, so every model class loads and fails the same way."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Final

import onnxruntime as ort

from facegender.errors import ModelError

__all__ = ["create_session", "model_metadata"]

_PROVIDERS: Final = ["CPUExecutionProvider"]


def create_session(path: Path, *, threads: int, compact: bool = False) -> ort.InferenceSession:
    """Open an ONNX model for CPU inference; ``threads`` of 0 lets onnxruntime choose.

    ``compact=True`` makes a smaller session, for a float model that runs on a few photos only:
    - no memory arena: each run's buffers are freed at once instead of kept for the next run (measured: 2
      workers peaked ~25 MiB lower, no slower). For a model that runs on every photo, the arena is worth its
      memory (the detector without it: a fifth fewer requests/s);
    - onnxruntime optimises the graph into a temporary file, and the session loads that, so that it holds the
      optimised weights alone: the float gender model's session took 12 instead of 28 MiB, as fast. (Not for
      every model: the int8 one took 2 MiB more that way.) Where no temporary file can be written, the model
      is loaded as it is.
    """
    if not path.is_file():
        raise ModelError(f"model file not found: {path}")
    options = _options(threads=threads, memory_arena=not compact)
    try:
        if compact:
            return _load_optimised(path, options)
        return ort.InferenceSession(str(path), sess_options=options, providers=_PROVIDERS)
    except Exception as exc:  # onnxruntime raises its own untyped errors for bad files
        raise ModelError(f"cannot load model {path.name}: {exc}") from None


def model_metadata(session: ort.InferenceSession, path: Path, *names: str) -> dict[str, str]:
    """The facegender metadata of ``session``'s model (loaded from ``path``): each of ``names`` must be there,
    and ``input_size`` a whole number."""
    metadata = dict(session.get_modelmeta().custom_metadata_map)
    if any(name not in metadata for name in names) or not metadata.get("input_size", "0").isdigit():
        raise ModelError(f"{path.name} lacks facegender metadata ({', '.join(names)})")
    return metadata


def _load_optimised(path: Path, options: ort.SessionOptions) -> ort.InferenceSession:
    """Optimise ``path`` with ``options`` into a temporary file and load that with optimisation off; the model
    as it is where no temporary folder can be made."""
    try:
        folder = tempfile.TemporaryDirectory(prefix="facegender-")
    except OSError:
        return ort.InferenceSession(str(path), sess_options=options, providers=_PROVIDERS)
    with folder:
        optimised = Path(folder.name) / path.name
        options.optimized_model_filepath = str(optimised)
        ort.InferenceSession(str(path), sess_options=options, providers=_PROVIDERS)
        options.optimized_model_filepath = ""
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        return ort.InferenceSession(str(optimised), sess_options=options, providers=_PROVIDERS)


def _options(*, threads: int, memory_arena: bool) -> ort.SessionOptions:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # Also hides the warning that a saved optimised graph suits this machine only (it is used here alone).
    options.log_severity_level = 3
    options.enable_cpu_mem_arena = memory_arena
    # A memory pattern plans one block for all of a run's tensors per input shape and keeps it: the detector's
    # finer passes come in many shapes. Without one, a process held about 10 MiB less after 400 photos, at the
    # same CPU time per photo.
    options.enable_mem_pattern = False
    # Idle onnxruntime threads spin before sleeping, to start the next run sooner. Where cores are shared
    # (server workers, other processes) they burn the cores the others need: with two threads on two busy
    # cores, a photo took three times as long. They sleep at once instead.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options
