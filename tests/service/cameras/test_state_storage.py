"""A preset's detector state in the database: a manifest in its row, chunks by content apart."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace

import pytest
from sqlalchemy import event, func, select
from sqlalchemy.orm import ORMExecuteState, Session

from detection.camera_state import EncodedState, encode_state
from models.camera import Camera, CameraPreset, CameraStateChunk
from service.cameras.registry import register_preset
from service.cameras.state import load_state, store_state, stored_chunks
from tests.detection.test_camera_state_format import a_state, assert_same
from tests.service.cameras.views import HEIGHT, WIDTH, control_points, registered_preset


@pytest.fixture
def preset(db_session: Session) -> CameraPreset:
    return registered_preset(db_session, f"T-{uuid.uuid4().hex[:8]}")


def one_frame_replaced(encoded: EncodedState) -> EncodedState:
    """The next state as a snapshot makes it: the oldest frame of the day ring replaced."""
    day = encoded.state.references["day"]
    state = replace(
        encoded.state,
        references={**encoded.state.references, "day": day.with_frame(255 - day.frames[1])},
    )
    return encode_state(state, reuse=encoded.chunks)


@contextmanager
def inserted_chunks(session: Session) -> Iterator[list[str]]:
    """The keys of the chunk rows the session inserts meanwhile."""
    keys: list[str] = []

    def note(execution: ORMExecuteState) -> None:
        table = getattr(execution.statement, "table", None)
        if execution.is_insert and table is not None and table.name == "camera_state_chunk":
            rows = execution.parameters
            keys.extend(row["key"] for row in (rows if isinstance(rows, list) else [rows]))

    event.listen(session, "do_orm_execute", note)
    try:
        yield keys
    finally:
        event.remove(session, "do_orm_execute", note)


def chunk_keys(session: Session, preset: CameraPreset) -> set[str]:
    return set(stored_chunks(preset.id, session=session))


def test_a_stored_state_loads_back(db_session: Session, preset: CameraPreset) -> None:
    first = encode_state(a_state())
    store_state(preset, first, session=db_session)
    db_session.flush()
    db_session.expire(preset)
    loaded = load_state(preset, session=db_session)
    assert loaded is not None
    assert_same(loaded, first.state)
    assert len(preset.detector_state or b"") < len(first.data) // 10  # the row holds the manifest
    assert chunk_keys(db_session, preset) == set(first.keys)


def test_the_next_state_writes_only_its_new_chunks_and_drops_unused_ones(
    db_session: Session, preset: CameraPreset
) -> None:
    first = encode_state(a_state())
    store_state(preset, first, session=db_session)
    second = one_frame_replaced(first)
    new = set(second.keys) - set(first.keys)
    assert len(new) == 1  # the replaced frame
    with inserted_chunks(db_session) as inserted:
        store_state(preset, second, session=db_session)
        db_session.flush()
    assert inserted == list(new)
    assert chunk_keys(db_session, preset) == set(second.keys)  # the old frame is gone
    loaded = load_state(preset, session=db_session)
    assert loaded is not None
    assert_same(loaded, second.state)


def test_a_state_stored_whole_still_loads_and_its_next_write_splits_it(
    db_session: Session, preset: CameraPreset
) -> None:
    old = encode_state(a_state())
    preset.detector_state = old.data  # as rows held states before the chunk table
    db_session.flush()
    loaded = load_state(preset, session=db_session)
    assert loaded is not None
    assert_same(loaded, old.state)
    store_state(preset, one_frame_replaced(old), session=db_session)
    db_session.flush()
    assert preset.detector_state is not None and not preset.detector_state.startswith(b"TXCAMST")
    assert chunk_keys(db_session, preset) == set(one_frame_replaced(old).keys)


def test_recalibrating_forgets_the_state_and_its_chunks(
    db_session: Session, preset: CameraPreset
) -> None:
    store_state(preset, encode_state(a_state()), session=db_session)
    db_session.flush()
    moved = control_points([(c + 40, r) for r in (700, 850, 1000) for c in (300, 960, 1620)])
    camera = db_session.get(Camera, preset.camera_id)
    assert camera is not None
    register_preset(
        session=db_session,
        camera_code=camera.code,
        preset="P1",
        image_size=(WIDTH, HEIGHT),
        control_points=moved,
    )
    assert preset.detector_state is None
    count = db_session.scalar(
        select(func.count())
        .select_from(CameraStateChunk)
        .where(CameraStateChunk.preset_id == preset.id)
    )
    assert count == 0
