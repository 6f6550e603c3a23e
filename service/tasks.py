"""The queue's task registry: task name → handler(session, job, settings).

A handler runs inside the transaction that also marks its job done, so its database effects
happen exactly once. It raises to ask for a retry, or `PermanentTaskError` to give up at once.
Later steps (the analysis) register here, or from a module named in TIANXUN_TASK_MODULES.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable

from sqlalchemy.orm import Session

from service.ingest.scenes import VALIDATE_TASK
from service.ingest.validate import validate_scene
from service.queue import ClaimedJob
from service.settings import Settings

Handler = Callable[[Session, ClaimedJob, Settings], None]

_HANDLERS: dict[str, Handler] = {}


class PermanentTaskError(Exception):
    """Retrying cannot help (e.g. the job refers to something that is gone): dead-letter now."""


def register(name: str, handler: Handler) -> None:
    if _HANDLERS.get(name, handler) is not handler:
        raise ValueError(f"task {name!r} is already registered to another handler")
    _HANDLERS[name] = handler


def task(name: str) -> Callable[[Handler], Handler]:
    """Decorator form of `register`."""

    def decorate(handler: Handler) -> Handler:
        register(name, handler)
        return handler

    return decorate


def get_handler(name: str) -> Handler | None:
    return _HANDLERS.get(name)


def registered_tasks() -> list[str]:
    return sorted(_HANDLERS)


def load_task_modules(modules: Iterable[str]) -> None:
    """Import modules that register tasks; a wrong name stops the worker with a clear message."""
    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError as error:
            raise ValueError(
                f"task module {module!r} cannot be imported ({error}); check "
                "TIANXUN_TASK_MODULES and PYTHONPATH"
            ) from error


register(VALIDATE_TASK, validate_scene)
