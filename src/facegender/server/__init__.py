"""The HTTP service: ``create_app`` for ASGI servers, ``serve`` to run it with uvicorn."""

from facegender.server.app import app_from_env, create_app, prepare_workers, serve

__all__ = ["app_from_env", "create_app", "prepare_workers", "serve"]
