"""The process that runs uvicorn for ``facegender serve``: it starts and watches the workers.

``facegender serve`` checks the models and settings, then replaces itself with this file run by path
(``python supervisor.py HOST PORT WORKERS``). Run that way it imports uvicorn and nothing of facegender, so
the supervisor of several workers stays a few tens of MiB instead of holding its own copy of the libraries
and models that every worker loads anyway. Each worker builds the app from the ``FACEGENDER_*`` environment.
"""

from __future__ import annotations

import signal
import sys
from types import FrameType
from typing import Final

import uvicorn

__all__ = ["APP_FACTORY", "run"]

APP_FACTORY: Final = "facegender.server.app:app_from_env"


def _exit_ok(__: int, ___: FrameType | None) -> None:
    raise SystemExit(0)


def run(*, host: str, port: int, workers: int) -> None:
    """Serve :data:`APP_FACTORY` until stopped.

    SIGTERM stops the server gracefully: it takes no new connections, answers the requests already received,
    and the process then exits with status 0. (Uvicorn re-raises the signal once it has shut down, which would
    otherwise kill the process with it; the handler set here turns that into a normal exit.)
    """
    previous = signal.signal(signal.SIGTERM, _exit_ok)
    try:
        uvicorn.run(APP_FACTORY, factory=True, host=host, port=port, workers=workers)
    finally:
        signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    # Run by path, Python puts this file's folder first on sys.path, where app.py, web.py and the rest
    # would shadow any top-level modules of those names in the workers.
    del sys.path[0]
    run(host=sys.argv[1], port=int(sys.argv[2]), workers=int(sys.argv[3]))
