"""What the camera detector returns per snapshot, and the per-preset state between snapshots."""

from __future__ import annotations

import io
import json
import struct
import zipfile
import zlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from functools import cached_property
from typing import TYPE_CHECKING, Any

import numpy as np
import xxhash
import zstandard
from numpy.typing import NDArray

from detection.camera_grid import shift_image
from detection.camera_reference import NOISE_UNITS, ReferenceModel

if TYPE_CHECKING:  # only named in annotations: loading the state needs no geometry library
    from shapely.geometry.base import BaseGeometry

# Format 2 added each background's residual noise and each streak's colour; format 1 states
# still load, their noise estimated from the background's spread, their streaks of unknown
# colour, and their single day background serves every time-of-day bucket until the bucket
# has its own. Formats 1 and 2 were ``.npz`` archives; format 3 holds the same arrays as raw
# buffers in chunks of its own container (see `encode_state`), deflated; format 4 is format 3
# with Zstandard chunks; format 5 adds `open_quiet` (older states load with none counted yet);
# format 6 drops each background's median and spread, computed again from its frames when
# read (`ReferenceModel.from_frames`): they changed with every snapshot, so they were half of
# what each write compressed; format 7 adds whether each background has been placed in the
# calibration's grid, its snapshots' registration shifts until it is and the border its move
# left (older states load unplaced, with none seen yet).
_STATE_FORMAT = 7
_READABLE_FORMATS = (1, 2, 3, 4, 5, 6, 7)
_NPZ_MAGIC = b"PK"
_MAGIC = b"TXCAMST\x00"
# A state's header alone, its chunks kept apart by content key (`EncodedState.manifest`).
_MANIFEST_MAGIC = b"TXCAMMF\x00"
_HEADER = struct.Struct("<I")  # byte length of the JSON header that follows the magic
# The state's changed chunks are written after every analysed batch of a preset, and the state
# is read whenever the worker that takes the preset's next batch does not hold it already, so
# both directions are paid per job. Images are differenced from their left neighbour (small
# numbers that code short); the masks and streaks are mostly zeros. On the ~2 MB state of a
# 1080p preset (format 3) Zstandard at level 1 compressed 3.6 times and decompressed 7 times
# faster than deflate's Huffman coding, to about the same size.
_ZSTD_LEVEL = 1


@dataclass(frozen=True)
class HealthEvent:
    """Something about the camera rather than the ground: moved, obstructed, night_ir, no_signal."""

    kind: str
    captured_at: datetime
    detail: str


@dataclass(frozen=True)
class CameraDetection:
    """A persistent change.

    Attributes
    ----------
    detection_id : int
        Sequence number within the preset's state.
    onset, confirmed_at : datetime
        Capture time of the first snapshot showing it, and of the snapshot confirming it (UTC).
    type : str
        A guess: building_or_hardening, soil_works, machinery_or_object or land_change.
    confidence : float
        Fraction in (0, 1).
    area_m2 : float
        Ground area of ``ground``, square metres.
    outline : shapely Polygon or MultiPolygon
        In full-resolution image coordinates (col, row).
    ground : shapely Polygon or MultiPolygon
        On the map, lon/lat degrees (EPSG:4326).
    """

    detection_id: int
    onset: datetime
    confirmed_at: datetime
    type: str
    confidence: float
    area_m2: float
    outline: BaseGeometry
    ground: BaseGeometry


@dataclass(frozen=True)
class SnapshotResult:
    """What one snapshot produced. ``rejection`` is set (and nothing else) for unusable input."""

    captured_at: datetime
    detections: tuple[CameraDetection, ...] = ()
    health: tuple[HealthEvent, ...] = ()
    rejection: str | None = None
    message: str = ""
    registration: str = ""
    shift_px: tuple[float, float] = (0.0, 0.0)
    candidates: NDArray[np.bool_] | None = None


@dataclass(frozen=True)
class _StoredReference:
    """A background as stored: its arrays' header entries and compressed chunks."""

    count: int
    added: int
    entries: Mapping[str, Mapping[str, Any]]  # by array name ("day_frames", ...)
    parts: Mapping[str, bytes]  # compressed chunk by key
    state_format: int
    placed: bool = False
    shifts: tuple[tuple[float, float], ...] = ()
    border: tuple[int, int, int] = (0, 0, 0)

    def decode(self, mode: str) -> ReferenceModel:
        arrays = {
            name: _joined(
                [self.parts[key] for key in entry["keys"]],
                np.dtype(entry["dtype"]),
                tuple(entry["shape"]),
                state_format=self.state_format,
            )
            for name, entry in self.entries.items()
        }
        return _references(
            {"format": self.state_format, "references": {mode: _reference_header(self)}},
            arrays.__getitem__,
            lambda name: arrays[f"{name}_noise"],
        )[mode]


class References(Mapping[str, ReferenceModel]):
    """A state's backgrounds by mode; those read from storage are decoded when first used.

    A preset keeps one background per illumination mode and time of day, and a snapshot uses
    one of them: a state read from storage decodes only that one, and writes the others back
    as the chunks they were read from.
    """

    def __init__(
        self,
        models: Mapping[str, ReferenceModel] | None = None,
        stored: Mapping[str, _StoredReference] | None = None,
    ) -> None:
        self._models = dict(models or {})
        self._stored = {m: s for m, s in (stored or {}).items() if m not in self._models}
        self._order = [*(stored or {}), *(m for m in self._models if m not in (stored or {}))]

    def __getitem__(self, mode: str) -> ReferenceModel:
        model = self._models.get(mode)
        if model is None:
            model = self._stored[mode].decode(mode)  # KeyError for an unknown mode
            self._models[mode] = model
            del self._stored[mode]
        return model

    def __iter__(self) -> Iterator[str]:
        return iter(self._order)

    def __len__(self) -> int:
        return len(self._order)

    def __or__(self, other: Mapping[str, ReferenceModel]) -> References:
        """These backgrounds with `other`'s added or replacing them, none decoded meanwhile."""
        merged = References({**self._models, **other}, self._stored)
        merged._order = [*self._order, *(m for m in other if m not in self._order)]
        return merged

    def headers(self) -> dict[str, list[Any]]:
        """What a state's header says of every background, decoded or not: count, added and
        placement (placed, the shifts seen until then, the border it left)."""
        return {
            mode: _reference_header(
                self._models[mode] if mode in self._models else self._stored[mode]
            )
            for mode in self._order
        }

    def decoded(self) -> dict[str, ReferenceModel]:
        return {mode: self._models[mode] for mode in self._order if mode in self._models}

    def undecoded(self) -> dict[str, _StoredReference]:
        return {mode: self._stored[mode] for mode in self._order if mode in self._stored}


@dataclass(frozen=True)
class CameraState:
    """Everything the detector remembers about one preset between snapshots.

    Attributes
    ----------
    shape : tuple of int
        Working resolution (rows, cols).
    references : References
        Mapping of str to ReferenceModel (a plain mapping given is wrapped).
        Background per illumination mode ("day", "ir"), or with time-of-day buckets per
        bucket of daylight ("day_morning", "day_midday", "day_evening").
    streak : ndarray of shape (rows, cols), uint8
        Consecutive analysed snapshots in which each pixel was a change candidate.
    streak_start : ndarray of shape (rows, cols), int64
        Capture time (POSIX seconds) of the first snapshot of each pixel's streak.
    streak_colour : ndarray of shape (rows, cols, 3), int8
        Each streak's local colour difference from the background at its first snapshot, in
        steps of two grey levels; zero where unknown (no streak, or a format 1 state).
    open_mask : ndarray of shape (rows, cols), bool
        Pixels of changes already reported; never absorbed into the background.
    open_quiet : ndarray of shape (rows, cols), uint8
        For each reported change (a connected part of ``open_mask``), the consecutive snapshots
        in which it no longer differed from the background; at a threshold it is released.
    last_captured_at : datetime or None
        Capture time of the last snapshot accepted in order.
    last_mode : str
        Background (illumination mode and time of day) of the last analysed snapshot.
    accepted : int
        Snapshots analysed so far (drives the background update cadence).
    next_detection_id : int
        The id the next detection gets.
    failures : int
        Consecutive snapshots that could not be registered (a moved camera after a while).
    """

    shape: tuple[int, int]
    references: References
    streak: NDArray[np.uint8]
    streak_start: NDArray[np.int64]
    streak_colour: NDArray[np.int8]
    open_mask: NDArray[np.bool_]
    open_quiet: NDArray[np.uint8]
    last_captured_at: datetime | None = None
    last_mode: str = "day"
    accepted: int = 0
    next_detection_id: int = 1
    failures: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.references, References):
            object.__setattr__(self, "references", References(self.references))

    @classmethod
    def empty(cls, shape: tuple[int, int]) -> CameraState:
        """A state with no background yet for working resolution (rows, cols)."""
        return cls(
            shape=shape,
            references=References(),
            streak=np.zeros(shape, dtype=np.uint8),
            streak_start=np.zeros(shape, dtype=np.int64),
            streak_colour=np.zeros((*shape, 3), dtype=np.int8),
            open_mask=np.zeros(shape, dtype=bool),
            open_quiet=np.zeros(shape, dtype=np.uint8),
        )

    def moved_by(self, move: tuple[int, int]) -> CameraState:
        """The streaks and reported changes moved by whole pixels (rows, cols), as their
        background was; what moves out of the frame is dropped, and none start in the border."""
        return replace(
            self,
            streak=shift_image(self.streak, move, fill=0),
            streak_start=shift_image(self.streak_start, move, fill=0),
            streak_colour=shift_image(self.streak_colour, move, fill=0),
            open_mask=shift_image(self.open_mask, move, fill=False),
            open_quiet=shift_image(self.open_quiet, move, fill=0),
        )

    def to_bytes(self) -> bytes:
        """Serialise for storage between snapshots (format 7, no pickles)."""
        return encode_state(self).data

    @classmethod
    def from_bytes(cls, data: bytes) -> CameraState:
        """Inverse of :meth:`to_bytes`; states of formats 1 to 6 load too."""
        return decode_state(data).state


@dataclass(frozen=True)
class EncodedState:
    """A serialised state, and its chunks by content for reuse by the next `encode_state`.

    It is stored either whole (`data`) or as a `manifest` with the chunks kept apart by key,
    so that storage holding the previous state writes only the chunks that changed.

    Attributes
    ----------
    state : CameraState
        What the encoding holds.
    header : bytes
        JSON: the state's scalars and, per array, its dtype, shape and chunks (keys, lengths).
    keys : tuple of str
        The chunks in the order the whole form holds them (a key may repeat).
    chunks : mapping of str to bytes
        Compressed chunk by content key (dtype, shape and digest of the raw chunk).
    """

    state: CameraState
    header: bytes
    keys: tuple[str, ...]
    chunks: Mapping[str, bytes]

    @cached_property
    def data(self) -> bytes:
        """The whole stored form: header, then every chunk."""
        chunks = (self.chunks[key] for key in self.keys)
        return b"".join([_MAGIC, _HEADER.pack(len(self.header)), self.header, *chunks])

    @property
    def manifest(self) -> bytes:
        """The stored form without its chunks; `decode_state` reads it back given `chunks`."""
        return b"".join([_MANIFEST_MAGIC, _HEADER.pack(len(self.header)), self.header])


def encode_state(state: CameraState, reuse: Mapping[str, bytes] | None = None) -> EncodedState:
    """Serialise `state` as format 7; chunks found in `reuse` are not compressed again.

    From one snapshot to the next most of a state stays the same (one frame of a ring is
    replaced), so passing the previous `EncodedState.chunks` as `reuse` leaves only the changed
    chunks to compress. A chunk is reused by the digest of its content, never by identity, so
    an array changed in place is still written as it is now. Backgrounds read in this format
    and not used since are written as they were read, without decoding them.
    """
    reuse = reuse or {}
    as_read = _as_read(state.references)
    arrays = _arrays(state)
    meta = _meta(state)
    entries: dict[str, dict[str, object]] = {}
    order: list[str] = []
    chunks: dict[str, bytes] = {}
    for name in _array_names(state):
        stored = as_read.get(name)
        if stored is not None:
            entry = stored.entries[name]
            chunks |= {key: stored.parts[key] for key in entry["keys"]}
            entries[name] = dict(entry)
            order += entry["keys"]
            continue
        array = arrays[name]
        keys, lengths = [], []
        for chunk in _split(array):
            key = _chunk_key(chunk)
            compressed = reuse.get(key) or chunks.get(key) or _compress(chunk)
            chunks[key] = compressed
            keys.append(key)
            lengths.append(len(compressed))
        order += keys
        entries[name] = {
            "dtype": array.dtype.str,
            "shape": list(array.shape),
            "chunks": lengths,
            "keys": keys,
        }
    header = json.dumps(meta | {"arrays": entries}).encode()
    return EncodedState(state, header, tuple(order), chunks)


def _as_read(references: References) -> dict[str, _StoredReference]:
    """The undecoded backgrounds that can be written as read, by array name; backgrounds of
    older formats are decoded here, to be written anew."""
    as_read: dict[str, _StoredReference] = {}
    for mode, stored in references.undecoded().items():
        if stored.state_format == _STATE_FORMAT:
            as_read |= dict.fromkeys(stored.entries, stored)
        else:
            references[mode]  # decodes it
    return as_read


def decode_state(data: bytes, chunks: Mapping[str, bytes] | None = None) -> EncodedState:
    """Inverse of `encode_state`: from the whole form, or from a manifest and its `chunks` by
    key. Formats 1 to 6 load too (formats 1 and 2 come back encoded in the current format;
    after format 3 the next encoding compresses every chunk anew)."""
    if data.startswith(_NPZ_MAGIC):
        return encode_state(_from_npz(data))
    if data.startswith(_MAGIC):
        header, payload = _header(data, _MAGIC)
        meta = _meta_of(header)
        parts = _inline_chunks(meta, data, offset=len(data) - len(payload))
    elif data.startswith(_MANIFEST_MAGIC):
        header, _ = _header(data, _MANIFEST_MAGIC)
        meta = _meta_of(header)
        parts = _chunks_by_key(meta, chunks or {})
    else:
        raise ValueError("not a camera state: start the preset from an empty state")
    stored = _stored_references(meta, parts)
    of_references = {name for reference in stored.values() for name in reference.entries}
    arrays: dict[str, NDArray[Any]] = {}
    order: list[str] = []
    for name, entry in meta["arrays"].items():
        keys = list(entry["keys"])
        order += keys
        if name in of_references:
            continue
        arrays[name] = _joined(
            [parts[key] for key in keys],
            np.dtype(entry["dtype"]),
            tuple(entry["shape"]),
            state_format=meta["format"],
        )
    state = _with_meta(meta, References(stored=stored), arrays)
    return EncodedState(state, header, tuple(order), parts)


_REFERENCE_ARRAYS = ("frames", "median", "spread", "noise")


def _stored_references(
    meta: Mapping[str, Any], parts: Mapping[str, bytes]
) -> dict[str, _StoredReference]:
    """Each background's arrays in `meta`, to be decoded when first used."""
    stored = {}
    for mode, header in meta["references"].items():
        count, added, placement = _parsed_reference_header(header)
        names = [f"{mode}_{suffix}" for suffix in _REFERENCE_ARRAYS]
        entries = {name: meta["arrays"][name] for name in names if name in meta["arrays"]}
        used = {key for entry in entries.values() for key in entry["keys"]}
        stored[mode] = _StoredReference(
            count, added, entries, {key: parts[key] for key in used}, meta["format"], **placement
        )
    return stored


def _reference_header(reference: ReferenceModel | _StoredReference) -> list[Any]:
    return [
        reference.count,
        reference.added,
        reference.placed,
        [list(shift) for shift in reference.shifts],
        list(reference.border),
    ]


def _parsed_reference_header(header: list[Any]) -> tuple[int, int, dict[str, Any]]:
    """Count, added and the placement fields of a background; before format 7 it had only
    the first two, and was not placed."""
    count, added, *placement = header
    placed, shifts, border = placement if placement else (False, [], [0, 0, 0])
    rows, cols, to_go = border
    return (
        int(count),
        int(added),
        {
            "placed": bool(placed),
            "shifts": tuple((float(r), float(c)) for r, c in shifts),
            "border": (int(rows), int(cols), int(to_go)),
        },
    )


def _header(data: bytes, magic: bytes) -> tuple[bytes, memoryview]:
    """The JSON header after `magic`, and what follows it."""
    offset = len(magic) + _HEADER.size
    (length,) = _HEADER.unpack_from(data, len(magic))
    return data[offset : offset + length], memoryview(data)[offset + length :]


def _meta_of(header: bytes) -> dict[str, Any]:
    meta = json.loads(header)
    _check_format(meta)
    return dict(meta)


def _inline_chunks(meta: Mapping[str, Any], data: bytes, *, offset: int) -> dict[str, bytes]:
    """The chunks of the whole form, laid out after its header in the header's order."""
    view = memoryview(data)
    chunks: dict[str, bytes] = {}
    for entry in meta["arrays"].values():
        for size, key in zip(entry["chunks"], entry["keys"], strict=True):
            chunks[key] = bytes(view[offset : offset + size])
            offset += size
    return chunks


def _chunks_by_key(meta: Mapping[str, Any], stored: Mapping[str, bytes]) -> dict[str, bytes]:
    keys = {key for entry in meta["arrays"].values() for key in entry["keys"]}
    missing = keys - stored.keys()
    if missing:
        raise ValueError(
            f"{len(missing)} of the camera state's {len(keys)} chunks are missing: start the "
            "preset from an empty state"
        )
    return {key: stored[key] for key in keys}


def _references(
    meta: Mapping[str, Any],
    array: Callable[[str], NDArray[Any]],
    noise: Callable[[str], NDArray[Any]],
) -> dict[str, ReferenceModel]:
    """The backgrounds listed in `meta`, their arrays looked up by name (any format)."""
    stored_statistics = meta["format"] < 6
    models = {}
    for mode, header in meta["references"].items():
        count, added, placement = _parsed_reference_header(header)
        model = (
            ReferenceModel(
                frames=array(f"{mode}_frames"),
                count=count,
                added=added,
                median=array(f"{mode}_median"),
                spread=array(f"{mode}_spread"),
                noise=noise(mode),
            )
            if stored_statistics
            else ReferenceModel.from_frames(
                array(f"{mode}_frames"), count=count, added=added, noise=noise(mode)
            )
        )
        models[mode] = replace(model, **placement)
    return models


def _meta(state: CameraState) -> dict[str, object]:
    return {
        "format": _STATE_FORMAT,
        "shape": list(state.shape),
        "last_captured_at": state.last_captured_at.isoformat() if state.last_captured_at else None,
        "last_mode": state.last_mode,
        "accepted": state.accepted,
        "next_detection_id": state.next_detection_id,
        "failures": state.failures,
        "references": state.references.headers(),
    }


def _check_format(meta: Mapping[str, object]) -> None:
    if meta.get("format") not in _READABLE_FORMATS:
        raise ValueError(
            f"camera state format {meta.get('format')} is not one of "
            f"{_READABLE_FORMATS}: start the preset from an empty state"
        )


def _with_meta(
    meta: Mapping[str, object],
    references: Mapping[str, ReferenceModel],
    arrays: Mapping[str, NDArray[Any]],
) -> CameraState:
    shape = meta["shape"]
    last = meta["last_captured_at"]
    assert isinstance(shape, list) and (last is None or isinstance(last, str))
    rows_cols = (int(shape[0]), int(shape[1]))
    quiet = arrays.get("open_quiet")  # none before format 5
    return CameraState(
        shape=rows_cols,
        references=references if isinstance(references, References) else References(references),
        streak=arrays["streak"],
        streak_start=arrays["streak_start"],
        streak_colour=arrays["streak_colour"],
        open_mask=arrays["open_mask"],
        open_quiet=quiet if quiet is not None else np.zeros(rows_cols, dtype=np.uint8),
        last_captured_at=datetime.fromisoformat(last) if last else None,
        last_mode=str(meta["last_mode"]),
        accepted=int(meta["accepted"]),  # type: ignore[call-overload]
        next_detection_id=int(meta["next_detection_id"]),  # type: ignore[call-overload]
        failures=int(meta["failures"]),  # type: ignore[call-overload]
    )


_STATE_ARRAYS = ("streak", "streak_start", "streak_colour", "open_mask", "open_quiet")


def _array_names(state: CameraState) -> list[str]:
    """Every array a state of this format stores, in the order it stores them."""
    modes = [f"{mode}_{kind}" for mode in state.references for kind in ("frames", "noise")]
    return [*_STATE_ARRAYS, *modes]


def _arrays(state: CameraState) -> dict[str, NDArray[Any]]:
    """The state's arrays by stored name; of its backgrounds, the decoded ones."""
    arrays: dict[str, NDArray[Any]] = {name: getattr(state, name) for name in _STATE_ARRAYS}
    for mode, ref in state.references.decoded().items():
        arrays[f"{mode}_frames"] = ref.frames
        arrays[f"{mode}_noise"] = ref.noise
    return arrays


def _split(array: NDArray[Any]) -> Iterator[NDArray[Any]]:
    """A ring of frames (depth, rows, cols, bands) by frame, as one frame changes at a time."""
    if array.ndim == 4:
        yield from (np.ascontiguousarray(frame) for frame in array)
    else:
        yield np.ascontiguousarray(array)


def _chunk_key(chunk: NDArray[Any]) -> str:
    """The chunk's content key in this format (a format 3 chunk never matches it).

    Every chunk of the state is keyed on every write, ~7 MB for a 1080p preset: XXH3's 128
    bits take 0.3 ms where SHA-256 took 4.8. A key only picks which compressed bytes of the
    same preset's previous state to reuse, and the content behind it is the detector's own
    arrays (medians and rings of decoded frames), not bytes a sender chooses. Keys of older
    writes (SHA-256) never match, so the first write after them compresses every chunk.
    """
    digest = xxhash.xxh3_128_hexdigest(chunk.data.cast("B"))
    return f"zstd:{chunk.dtype.str}{list(chunk.shape)}:xxh3-{digest}"


def _is_image(chunk: NDArray[Any]) -> bool:
    return chunk.dtype == np.uint8 and chunk.ndim == 3


def _compress(chunk: NDArray[Any]) -> bytes:
    if _is_image(chunk):
        difference = chunk.copy()
        difference[:, 1:] -= chunk[:, :-1]
        chunk = difference
    return zstandard.ZstdCompressor(level=_ZSTD_LEVEL).compress(chunk.data.cast("B"))


def _decompress_into(out: NDArray[Any], compressed: bytes, *, state_format: int) -> None:
    if state_format == 3:
        plain = zlib.decompress(compressed)
    else:
        plain = zstandard.ZstdDecompressor().decompress(compressed, max_output_size=out.nbytes)
    raw = np.frombuffer(plain, dtype=out.dtype).reshape(out.shape)
    out[...] = raw
    if _is_image(raw):
        _sum_along_rows(out)


def _sum_along_rows(image: NDArray[np.uint8]) -> None:
    """Running sums along each row, in place, wrapping at 256 as the differences did.

    The inverse of `_compress`'s horizontal differences as log2(cols) whole-image additions
    (a Hillis-Steele scan): NumPy's uint8 `cumsum` along an axis goes element by element and
    took 2.6 times as long on a 480-column frame, most of a state's decoding.
    """
    step = 1
    while step < image.shape[1]:
        image[:, step:] += image[:, :-step].copy()  # the copy: each sum reads the last pass
        step *= 2


def _joined(
    parts: list[bytes], dtype: np.dtype, shape: tuple[int, ...], *, state_format: int
) -> NDArray[Any]:
    array = np.empty(shape, dtype=dtype)
    frames = array if len(shape) == 4 else array[None]
    for frame, part in zip(frames, parts, strict=True):
        _decompress_into(frame, part, state_format=state_format)
    return array


def _from_npz(data: bytes) -> CameraState:
    """A state of format 1 or 2, as ``.npz`` archives held them."""
    with np.load(io.BytesIO(data), allow_pickle=False) as stored:
        meta = json.loads(str(stored["meta"]))
        _check_format(meta)
        references = _references(meta, stored.__getitem__, lambda mode: _noise(stored, mode))
        arrays = {
            "streak": stored["streak"],
            "streak_start": stored["streak_start"],
            "streak_colour": _streak_colour(stored),
            "open_mask": stored["open_mask"],
        }
        return _with_meta(meta, references, arrays)


def _streak_colour(stored: np.lib.npyio.NpzFile) -> NDArray[np.int8]:
    if "streak_colour" in stored.files:
        return np.asarray(stored["streak_colour"], dtype=np.int8)
    return np.zeros((*stored["streak"].shape, 3), dtype=np.int8)


def _noise(stored: np.lib.npyio.NpzFile, mode: str) -> NDArray[np.uint8]:
    if f"{mode}_noise" in stored.files:
        return np.asarray(stored[f"{mode}_noise"], dtype=np.uint8)
    # Format 1 kept no residual noise: the spread of the background frames is its nearest kin.
    spread = stored[f"{mode}_spread"].astype(np.int32) * NOISE_UNITS
    return np.minimum(spread, 255).astype(np.uint8)


def _npz(arrays: dict[str, NDArray[Any]], *, level: int) -> bytes:
    """An ``.npz`` archive as formats 1 and 2 were stored, deflated at `level` (1 to 9)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED, compresslevel=level) as archive:
        for name, array in arrays.items():
            with archive.open(f"{name}.npy", "w", force_zip64=True) as member:
                np.lib.format.write_array(member, np.asanyarray(array), allow_pickle=False)
    return buffer.getvalue()
