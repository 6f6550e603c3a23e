"""The stored camera state: format 7 round trips, reuses unchanged chunks, reads formats 1–6."""

from __future__ import annotations

import hashlib
import json
import struct
import zlib
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pytest
import zstandard
from hypothesis import given
from hypothesis import strategies as st
from numpy.typing import NDArray

from detection.camera_reference import ReferenceModel
from detection.camera_state import (
    CameraState,
    _arrays,
    _chunk_key,
    _compress,
    _npz,
    _split,
    _sum_along_rows,
    decode_state,
    encode_state,
)

SHAPE = (60, 80)


def reference(seed: int, *, count: int) -> ReferenceModel:
    rng = np.random.default_rng(seed)
    frames = np.zeros((5, *SHAPE, 3), dtype=np.uint8)
    frames[:count] = rng.integers(0, 256, (count, *SHAPE, 3), dtype=np.uint8)
    noise = rng.integers(0, 60, SHAPE, dtype=np.uint8)
    return ReferenceModel.from_frames(frames, count=count, added=count + 3, noise=noise)


def a_state() -> CameraState:
    rng = np.random.default_rng(7)
    streak = np.zeros(SHAPE, dtype=np.uint8)
    streak[10:14, 20:30] = 2
    return CameraState(
        shape=SHAPE,
        references={
            "day": replace(reference(1, count=5), placed=True, border=(-1, 2, 4)),
            "ir": replace(reference(2, count=2), shifts=((1.5, -2.25), (0.0, 3.0))),
        },
        streak=streak,
        streak_start=np.where(streak > 0, 1_750_000_000, 0).astype(np.int64),
        streak_colour=rng.integers(-20, 20, (*SHAPE, 3), dtype=np.int8),
        open_mask=streak > 1,
        open_quiet=np.where(streak > 1, 3, 0).astype(np.uint8),
        last_captured_at=datetime(2025, 5, 1, 3, 0, tzinfo=UTC),
        last_mode="ir",
        accepted=17,
        next_detection_id=4,
        failures=1,
    )


def assert_same(actual: CameraState, expected: CameraState) -> None:
    for name in ("shape", "last_captured_at", "last_mode", "accepted", "next_detection_id"):
        assert getattr(actual, name) == getattr(expected, name), name
    assert actual.failures == expected.failures
    for name in ("streak", "streak_start", "streak_colour", "open_mask", "open_quiet"):
        left, right = getattr(actual, name), getattr(expected, name)
        assert left.dtype == right.dtype, name
        np.testing.assert_array_equal(left, right, err_msg=name)
    assert set(actual.references) == set(expected.references)
    for mode, ref in expected.references.items():
        got = actual.references[mode]
        assert (got.count, got.added) == (ref.count, ref.added)
        assert (got.placed, got.shifts, got.border) == (ref.placed, ref.shifts, ref.border)
        for name in ("frames", "median", "spread", "noise"):
            assert getattr(got, name).dtype == getattr(ref, name).dtype
            np.testing.assert_array_equal(getattr(got, name), getattr(ref, name), err_msg=name)


def test_a_state_round_trips_exactly() -> None:
    state = a_state()
    assert_same(CameraState.from_bytes(state.to_bytes()), state)


@given(
    rows=st.integers(1, 4),
    cols=st.integers(1, 600),
    seed=st.integers(0, 2**32 - 1),
)
def test_row_sums_undo_the_horizontal_differences_at_any_width(
    rows: int, cols: int, seed: int
) -> None:
    image = np.random.default_rng(seed).integers(0, 256, (rows, cols, 3), dtype=np.uint8)
    differences = image.copy()
    differences[:, 1:] -= image[:, :-1]
    _sum_along_rows(differences)
    np.testing.assert_array_equal(differences, image)


def test_decoded_arrays_can_be_written_like_the_ones_the_detector_makes() -> None:
    restored = CameraState.from_bytes(a_state().to_bytes())
    restored.streak[0, 0] = 1
    restored.references["day"].frames[0, 0, 0] = 1


def test_reused_chunks_give_the_bytes_a_fresh_encoding_gives() -> None:
    first = encode_state(a_state())
    day = first.state.references["day"]
    # The oldest frame of the ring replaced, as each snapshot does.
    changed = replace(
        first.state,
        references={**first.state.references, "day": day.with_frame(255 - day.frames[2])},
    )
    reused = encode_state(changed, reuse=first.chunks)
    assert reused.data == encode_state(changed).data
    assert_same(decode_state(reused.data).state, changed)


def test_a_chunk_changed_in_place_is_written_as_it_is_now() -> None:
    state = a_state()
    first = encode_state(state)
    state.references["day"].noise[:10] = 0  # same array object, other content
    state.streak[:] = 3
    again = encode_state(state, reuse=first.chunks)
    assert_same(CameraState.from_bytes(again.data), state)


def test_the_chunks_of_a_decoded_state_serve_its_next_encoding() -> None:
    stored = encode_state(a_state())
    decoded = decode_state(stored.data)
    assert decoded.chunks == stored.chunks
    assert encode_state(decoded.state, reuse=decoded.chunks).data == stored.data


def test_a_manifest_and_its_chunks_give_back_the_state() -> None:
    stored = encode_state(a_state())
    decoded = decode_state(stored.manifest, chunks=dict(stored.chunks))
    assert_same(decoded.state, stored.state)
    assert decoded.data == stored.data
    assert len(stored.manifest) < len(stored.data) // 10


def test_a_manifest_needs_only_the_distinct_chunks() -> None:
    stored = encode_state(a_state())
    assert len(set(stored.keys)) < len(stored.keys)  # the ring's empty frames are alike
    assert set(decode_state(stored.manifest, chunks=stored.chunks).chunks) == set(stored.keys)


def test_a_manifest_missing_a_chunk_is_refused() -> None:
    stored = encode_state(a_state())
    kept = dict(stored.chunks)
    kept.pop(stored.keys[0])
    with pytest.raises(ValueError, match=r"1 of the camera state's .* chunks are missing"):
        decode_state(stored.manifest, chunks=kept)


def test_a_background_read_is_decoded_only_when_used() -> None:
    stored = encode_state(a_state())
    decoded = decode_state(stored.data)
    assert set(decoded.state.references.undecoded()) == {"day", "ir"}
    assert encode_state(decoded.state, reuse=decoded.chunks).data == stored.data
    assert set(decoded.state.references.undecoded()) == {"day", "ir"}  # written as read
    day = decoded.state.references["day"]
    assert set(decoded.state.references.undecoded()) == {"ir"}
    next_state = replace(
        decoded.state, references=decoded.state.references | {"day": day.with_frame(day.median)}
    )
    assert set(next_state.references.undecoded()) == {"ir"}
    again = decode_state(encode_state(next_state, reuse=decoded.chunks).data).state
    assert_same(
        again,
        replace(
            stored.state,
            references=next_state.references.decoded() | {"ir": stored.state.references["ir"]},
        ),
    )


def test_a_background_of_an_older_format_is_written_anew_in_this_one() -> None:
    state = a_state()
    older = decode_state(as_format_5(state.to_bytes()))
    assert set(older.state.references.undecoded()) == {"day", "ir"}
    again = encode_state(older.state, reuse=older.chunks)
    assert again.data == state.to_bytes()  # no median or spread: both computed again
    assert_same(decode_state(again.data).state, state)


def test_a_format_2_state_still_loads() -> None:
    state = a_state()
    meta = {
        "format": 2,
        "shape": list(state.shape),
        "last_captured_at": state.last_captured_at.isoformat() if state.last_captured_at else None,
        "last_mode": state.last_mode,
        "accepted": state.accepted,
        "next_detection_id": state.next_detection_id,
        "failures": state.failures,
        "references": {m: [r.count, r.added] for m, r in state.references.items()},
    }
    arrays = {
        "meta": np.array(json.dumps(meta)),
        "streak": state.streak,
        "streak_start": state.streak_start,
        "streak_colour": state.streak_colour,
        "open_mask": state.open_mask,
    }
    for mode, ref in state.references.items():
        arrays |= {
            f"{mode}_frames": ref.frames,
            f"{mode}_median": ref.median,
            f"{mode}_spread": ref.spread,
            f"{mode}_noise": ref.noise,
        }
    decoded = decode_state(_npz(arrays, level=1))
    expected = replace(unplaced(state), open_quiet=np.zeros(SHAPE, dtype=np.uint8))
    assert_same(decoded.state, expected)
    # It comes back encoded as the current format, whose chunks serve the next encoding.
    assert decoded.data == decoded.state.to_bytes()
    assert encode_state(decoded.state, reuse=decoded.chunks).data == decoded.data


def test_a_format_6_state_loads_with_its_backgrounds_not_yet_placed() -> None:
    state = a_state()
    data = state.to_bytes()
    start = 8 + 4
    (length,) = struct.unpack_from("<I", data, 8)
    header = json.loads(data[start : start + length])
    header["references"] = {m: [r.count, r.added] for m, r in state.references.items()}
    text = json.dumps(header | {"format": 6}).encode()
    older = data[:8] + struct.pack("<I", len(text)) + text + data[start + length :]
    assert_same(decode_state(older).state, unplaced(state))


def unplaced(state: CameraState) -> CameraState:
    """`state` as formats before 7 hold it: no background placed, no shifts seen."""
    references = {
        m: replace(r, placed=False, shifts=(), border=(0, 0, 0))
        for m, r in state.references.items()
    }
    return replace(state, references=references)


def test_an_unknown_format_header_is_refused() -> None:
    data = a_state().to_bytes()
    start = 8 + 4
    (length,) = struct.unpack_from("<I", data, 8)
    header = json.loads(data[start : start + length]) | {"format": 99}
    text = json.dumps(header).encode()
    forged = data[:8] + struct.pack("<I", len(text)) + text + data[start + length :]
    with pytest.raises(ValueError, match="format 99"):
        CameraState.from_bytes(forged)


def test_bytes_that_are_no_state_are_refused() -> None:
    with pytest.raises(ValueError, match="not a camera state"):
        CameraState.from_bytes(b"\x00" * 64)


def statistics_of(state: CameraState) -> dict[str, NDArray[Any]]:
    """Each background's median and spread, by their names in formats 1 to 5."""
    arrays: dict[str, NDArray[Any]] = {}
    for mode, ref in state.references.items():
        arrays |= {f"{mode}_median": ref.median, f"{mode}_spread": ref.spread}
    return arrays


def as_format_5(data: bytes, statistics: dict[str, NDArray[Any]] | None = None) -> bytes:
    """A format 6 state as format 5 stored it: with each background's median and spread (by
    default its own)."""
    start = 8 + 4
    (length,) = struct.unpack_from("<I", data, 8)
    header = json.loads(data[start : start + length])
    payload = [data[start + length :]]
    if statistics is None:
        statistics = statistics_of(decode_state(data).state)
    for name, array in statistics.items():
        packed = _compress(array)
        header["arrays"][name] = {
            "dtype": array.dtype.str,
            "shape": list(array.shape),
            "chunks": [len(packed)],
            "keys": [_chunk_key(array)],
        }
        payload.append(packed)
    text = json.dumps(header | {"format": 5}).encode()
    return data[:8] + struct.pack("<I", len(text)) + text + b"".join(payload)


def test_a_format_5_state_loads_with_its_stored_statistics() -> None:
    state = a_state()
    assert_same(decode_state(as_format_5(state.to_bytes())).state, state)
    # The stored arrays are the ones read, not ones computed from the frames.
    stored = {name: array // 2 for name, array in statistics_of(state).items()}
    decoded = decode_state(as_format_5(state.to_bytes(), stored)).state
    np.testing.assert_array_equal(decoded.references["ir"].median, stored["ir_median"])
    np.testing.assert_array_equal(decoded.references["day"].spread, stored["day_spread"])


def as_format_3(data: bytes) -> bytes:
    """A format 4 state rewritten as format 3 stored it: the same container, deflated chunks
    under keys without the codec."""
    start = 8 + 4
    (length,) = struct.unpack_from("<I", data, 8)
    header = json.loads(data[start : start + length])
    offset, payload = start + length, []
    for entry in header["arrays"].values():
        sizes = []
        for size in entry["chunks"]:
            plain = zstandard.ZstdDecompressor().decompress(data[offset : offset + size])
            offset += size
            payload.append(zlib.compress(plain, 1))
            sizes.append(len(payload[-1]))
        entry["chunks"] = sizes
        entry["keys"] = [key.removeprefix("zstd:") for key in entry["keys"]]
    text = json.dumps(header | {"format": 3}).encode()
    return data[:8] + struct.pack("<I", len(text)) + text + b"".join(payload)


def as_format_4(data: bytes) -> bytes:
    """A format 5 state as format 4 stored it: without the reported changes' quiet counts."""
    start = 8 + 4
    (length,) = struct.unpack_from("<I", data, 8)
    header = json.loads(data[start : start + length])
    offset, payload = start + length, []
    for name, entry in header["arrays"].items():
        size = sum(entry["chunks"])
        if name != "open_quiet":
            payload.append(data[offset : offset + size])
        offset += size
    del header["arrays"]["open_quiet"]
    text = json.dumps(header | {"format": 4}).encode()
    return data[:8] + struct.pack("<I", len(text)) + text + b"".join(payload)


def test_a_format_4_state_loads_with_no_quiet_snapshots_counted() -> None:
    state = a_state()
    decoded = CameraState.from_bytes(as_format_4(as_format_5(state.to_bytes())))
    assert not decoded.open_quiet.any() and decoded.open_quiet.shape == SHAPE
    assert_same(decoded, replace(state, open_quiet=np.zeros(SHAPE, dtype=np.uint8)))


def test_a_format_3_state_still_loads_and_its_chunks_are_not_reused_as_format_4() -> None:
    state = a_state()
    decoded = decode_state(as_format_3(as_format_5(state.to_bytes())))
    assert_same(decoded.state, state)
    assert decoded.chunks and not any(key.startswith("zstd:") for key in decoded.chunks)
    again = encode_state(decoded.state, reuse=decoded.chunks)
    assert again.data == encode_state(state).data
    assert_same(CameraState.from_bytes(again.data), state)


def with_sha256_keys(data: bytes) -> bytes:
    """A format 5 state as it was written before its chunks were keyed by XXH3: the same
    chunks under keys of the SHA-256 of their raw content."""
    start = 8 + 4
    (length,) = struct.unpack_from("<I", data, 8)
    header = json.loads(data[start : start + length])
    state = decode_state(data).state
    statistics = statistics_of(state)  # decodes every background
    arrays = _arrays(state) | statistics
    for name, entry in header["arrays"].items():
        entry["keys"] = [
            f"zstd:{chunk.dtype.str}{list(chunk.shape)}:{hashlib.sha256(chunk.data).hexdigest()}"
            for chunk in _split(arrays[name])
        ]
    text = json.dumps(header).encode()
    return data[:8] + struct.pack("<I", len(text)) + text + data[start + length :]


def test_a_state_keyed_by_sha256_loads_and_is_written_anew() -> None:
    state = a_state()
    older = decode_state(with_sha256_keys(as_format_5(state.to_bytes())))
    assert_same(older.state, state)
    assert older.chunks and not set(older.chunks) & set(encode_state(state).chunks)
    again = encode_state(older.state, reuse=older.chunks)
    assert again.data == encode_state(state).data
