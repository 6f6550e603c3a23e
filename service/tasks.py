"""The queue's task registry: task name → handler(session, job, settings), or a phased task.

A handler runs inside the transaction that also marks its job done, so its database effects
happen exactly once. It raises to ask for a retry, or `PermanentTaskError` to give up at once.
A `PhasedTask` splits heavy work in three: `read` in a read-only transaction, `compute` with
no transaction open (so SQLite's single write lock is not held for seconds of detection), and
`write` in a short transaction that also marks the job done, then `committed` once that
transaction has committed. Tasks register here, or from a module named in TIANXUN_TASK_MODULES.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from service.analysis.camera import (
    analyse_camera_snapshots,
    keep_camera_state,
    prepare_camera_detector,
    read_camera_inputs,
    write_camera_outcome,
)
from service.analysis.tiles import TILE_TASK, analyse_tile, read_tile_inputs, write_tile_outcome
from service.ingest.scenes import CAMERA_TASK, VALIDATE_TASK
from service.ingest.validate import validate_scene
from service.queue import ClaimedJob
from service.settings import Settings

Handler = Callable[[Session, ClaimedJob, Settings], None]


@dataclass(frozen=True)
class PhasedTask:
    """A task whose compute runs outside any database transaction.

    `write` gets what `compute` returned; it must re-check anything `read` saw that another
    job could have changed meanwhile (and raise to retry), because the inputs may be stale.
    `committed`, if given, gets the same result after the write has committed (never after a
    rollback), e.g. to keep in memory what the database now holds. `prepare`, if given, runs
    once as a worker starts, before it claims a job (e.g. loading compiled code).
    """

    read: Callable[[Session, ClaimedJob, Settings], Any]
    compute: Callable[[Any, Settings], Any]
    write: Callable[[Session, ClaimedJob, Settings, Any], None]
    committed: Callable[[Any], None] | None = None
    prepare: Callable[[], None] | None = None


Task = Handler | PhasedTask

_HANDLERS: dict[str, Task] = {}


class PermanentTaskError(Exception):
    """Retrying cannot help (e.g. the job refers to something that is gone): dead-letter now."""


def register(name: str, handler: Task) -> None:
    if _HANDLERS.get(name, handler) is not handler:
        raise ValueError(f"task {name!r} is already registered to another handler")
    _HANDLERS[name] = handler


def task(name: str) -> Callable[[Handler], Handler]:
    """Decorator form of `register`."""

    def decorate(handler: Handler) -> Handler:
        register(name, handler)
        return handler

    return decorate


def get_handler(name: str) -> Task | None:
    return _HANDLERS.get(name)


def registered_tasks() -> list[str]:
    return sorted(_HANDLERS)


def prepare_tasks() -> None:
    """Run the `prepare` step of every registered phased task (once, as a worker starts)."""
    for handler in _HANDLERS.values():
        if isinstance(handler, PhasedTask) and handler.prepare is not None:
            handler.prepare()


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
register(
    CAMERA_TASK,
    PhasedTask(
        read_camera_inputs,
        analyse_camera_snapshots,
        write_camera_outcome,
        keep_camera_state,
        prepare=prepare_camera_detector,
    ),
)
register(TILE_TASK, PhasedTask(read_tile_inputs, analyse_tile, write_tile_outcome))
