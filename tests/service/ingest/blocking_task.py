"""A queue task for the worker tests: it announces its start, then waits for a release file.

The worker imports it through TIANXUN_TASK_MODULES. Its database effect (a counter in the
scene's STAC item) shows how many times the job's transaction committed.
"""

from __future__ import annotations

import os
import time

from sqlalchemy.orm import Session

from models.scene import Scene
from service.queue import ClaimedJob
from service.settings import Settings
from service.tasks import register

BLOCK_TASK = "test-block"
COMPLETIONS = "test:completions"


def block_until_released(session: Session, job: ClaimedJob, settings: Settings) -> None:
    scene = session.get(Scene, job.scene_id)  # the job's transaction is open from here on
    assert scene is not None
    control = settings.data_dir / "control"
    (control / f"started-{job.attempt}-{os.getpid()}").touch()
    while not (control / "release").exists():
        time.sleep(0.02)  # another process creates the file; there is no event to await
    item = dict(scene.stac_item or {})
    item[COMPLETIONS] = item.get(COMPLETIONS, 0) + 1
    scene.stac_item = item
    session.flush()


register(BLOCK_TASK, block_until_released)
