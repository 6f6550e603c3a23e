"""Where a preset's camera detector state is stored: a manifest in its row, chunks by key apart.

From one snapshot to the next a state changes in a few chunks (one frame of a background's
ring and its noise estimate), so writing only the chunks that changed, and deleting the ones
no longer used, writes about a fifth of the state. Chunks and manifest change in the caller's
transaction, with the detections the state led to.
"""

from __future__ import annotations

from collections.abc import Set

from sqlalchemy import bindparam, delete, insert, select
from sqlalchemy.orm import Session

from detection.camera_state import CameraState, EncodedState, decode_state
from models.base import table_of
from models.camera import CameraPreset, CameraStateChunk


def stored_chunks(preset_id: int, *, session: Session) -> dict[str, bytes]:
    """The preset's stored chunks by key (none for a state stored whole, or none at all)."""
    rows = session.execute(
        select(CameraStateChunk.key, CameraStateChunk.data).where(
            CameraStateChunk.preset_id == preset_id
        )
    )
    return {key: data for key, data in rows}


def load_state(preset: CameraPreset, *, session: Session) -> CameraState | None:
    """The preset's stored state, decoded; None when it has none."""
    if preset.detector_state is None:
        return None
    return decode_state(preset.detector_state, stored_chunks(preset.id, session=session)).state


def store_state(preset: CameraPreset, state: EncodedState | None, *, session: Session) -> None:
    """Make `state` the preset's stored state (None forgets it), writing only new chunks."""
    store_chunks(preset.id, state, session=session)
    preset.detector_state = state.manifest if state is not None else None


def store_chunks(
    preset_id: int,
    state: EncodedState | None,
    *,
    session: Session,
    present: Set[str] | None = None,
) -> None:
    """Keep exactly the chunks `state` names (none for None), writing only the new ones; the
    caller stores its manifest. `present` are the keys the preset holds now, when the caller
    knows them for sure (they are looked up otherwise)."""
    if present is None:
        present = set(session.scalars(_KEYS, {"preset_id": preset_id}))
    wanted = state.chunks if state is not None else {}
    unused = present - wanted.keys()
    if unused:
        session.execute(_DELETE, {"preset_id": preset_id, "keys": sorted(unused)})
    new = [
        {"preset_id": preset_id, "key": key, "data": data}
        for key, data in wanted.items()
        if key not in present
    ]
    if new:
        session.execute(_INSERT, new)


# Every camera job runs these: built once, as building a statement costs several times what
# executing it does. On the table, not the mapped class: the ORM has no objects to keep in step.
_chunks = table_of(CameraStateChunk)
_KEYS = select(_chunks.c.key).where(_chunks.c.preset_id == bindparam("preset_id"))
_DELETE = delete(_chunks).where(
    _chunks.c.preset_id == bindparam("preset_id"),
    _chunks.c.key.in_(bindparam("keys", expanding=True)),
)
_INSERT = insert(_chunks)
