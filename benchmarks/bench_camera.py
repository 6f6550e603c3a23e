"""Tower-camera detector speed: one 1080p JPEG from bytes to detections, against Pillow's decode.

Run: ``python benchmarks/bench_camera.py`` (a synthetic 1080p sequence), or point it at a real
preset with ``--sequence DIR --calibration CALIBRATION.json``. The acceptance target is a per-frame
cost at most 2× Pillow's full decode of the same JPEG, measured in the same run: reported
against the decode to a NumPy array and, stricter, against the decode alone.
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage

from detection.camera import CameraParams, CameraState, analyse_snapshot_bytes
from detection.geolocate import Calibration, calibration_from_mapping

SIZE = (1920, 1080)


def synthetic_sequence(count: int) -> tuple[list[bytes], Calibration]:
    """Textured 1080p JPEGs (parcels, grain, noise, jitter) and a ground calibration."""
    rng = np.random.default_rng(0)
    parcels = rng.uniform(60, 190, size=(12, 20, 3))
    base = np.kron(parcels, np.ones((90, 96, 1)))[: SIZE[1], : SIZE[0]]
    base += ndimage.gaussian_filter(rng.normal(0, 25, (SIZE[1], SIZE[0], 1)), 1.5)
    frames = []
    for index in range(count):
        shifted = np.roll(base, (index % 3, -(index % 4)), axis=(0, 1))
        noisy = shifted + rng.normal(0, 3, shifted.shape)
        buffer = io.BytesIO()
        Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8)).save(
            buffer, format="JPEG", quality=88
        )
        frames.append(buffer.getvalue())
    # A camera looking down a field: the top of the frame is further away than the bottom.
    corners = [((0, 200), (120.095, 30.210)), ((1920, 200), (120.105, 30.210))]
    corners += [((1920, 1080), (120.1003, 30.2002)), ((0, 1080), (120.0997, 30.2002))]
    mapping = {
        "camera_id": "bench",
        "image_size": list(SIZE),
        "control_points": [
            {"pixel": list(pixel), "lon": lon, "lat": lat} for pixel, (lon, lat) in corners
        ],
    }
    return frames, calibration_from_mapping(mapping)


def real_sequence(folder: Path, calibration: Path) -> tuple[list[bytes], Calibration]:
    frames = [path.read_bytes() for path in sorted(folder.glob("*.jpg"))]
    return frames, calibration_from_mapping(json.loads(calibration.read_text()))


def pillow_decode(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data), formats=["JPEG"]) as image:
        return np.asarray(image.convert("RGB"))


def pillow_decode_only(data: bytes) -> None:
    """The decode into Pillow's own buffer, without handing the pixels over to NumPy (which,
    for a 1080p frame, costs Pillow about as much again)."""
    with Image.open(io.BytesIO(data), formats=["JPEG"]) as image:
        image.load()


def measure(
    frames: list[bytes], calibration: Calibration, repeats: int, reduce: int = 4
) -> dict[str, float]:
    params = CameraParams(reduce=reduce)
    start = datetime(2024, 5, 1, tzinfo=UTC)
    warm = 6
    state: CameraState | None = None
    for index, data in enumerate(frames[:warm]):
        state, _ = analyse_snapshot_bytes(
            state, data, start + timedelta(minutes=index), calibration=calibration, params=params
        )
    decode_ms, decode_only_ms, detect_ms = [], [], []
    moment = start + timedelta(minutes=warm)
    for round_ in range(repeats):
        for data in frames[warm:]:
            # Interleave both measurements so load from other processes hits them alike.
            tick = time.perf_counter()
            pillow_decode(data)
            decode_ms.append((time.perf_counter() - tick) * 1000)
            tick = time.perf_counter()
            pillow_decode_only(data)
            decode_only_ms.append((time.perf_counter() - tick) * 1000)
            moment += timedelta(minutes=1 + round_)
            tick = time.perf_counter()
            state, _ = analyse_snapshot_bytes(
                state, data, moment, calibration=calibration, params=params
            )
            detect_ms.append((time.perf_counter() - tick) * 1000)
    assert state is not None
    blob = state.to_bytes()
    tick = time.perf_counter()
    CameraState.from_bytes(blob)
    load_ms = (time.perf_counter() - tick) * 1000
    decode, detect = statistics.median(decode_ms), statistics.median(detect_ms)
    decode_only = statistics.median(decode_only_ms)
    return {
        "reduce": reduce,
        "frames": len(detect_ms),
        "pillow_full_decode_ms": round(decode, 2),
        "bytes_to_detections_ms": round(detect, 2),
        "ratio": round(detect / decode, 2),
        "pillow_decode_only_ms": round(decode_only, 2),
        "ratio_to_decode_only": round(detect / decode_only, 2),
        "p90_bytes_to_detections_ms": round(float(np.percentile(detect_ms, 90)), 2),
        "state_kb": round(len(blob) / 1024, 1),
        "state_load_ms": round(load_ms, 2),
    }


def _machine() -> str:
    import os
    import platform
    from importlib.metadata import version

    import PIL

    load = os.getloadavg()[0]
    return (
        f"{os.cpu_count()} CPUs, Python {platform.python_version()}, numpy {np.__version__}, "
        f"Pillow {PIL.__version__}, scikit-image {version('scikit-image')}; "
        f"load average {load:.2f} at the start (the machine is shared)"
    )


_HEADER = (
    "| resolution | frames | Pillow decode to array ms | decode alone ms | bytes → detections ms"
    " | p90 ms | ratio | ratio to decode alone | state KiB |\n|---|---|---|---|---|---|---|---|---|"
)


def append_results(results: list[dict[str, float]], command: str, machine: str) -> None:
    """Append one section to benchmarks/RESULTS.md, as the other benchmarks do."""
    rows = "\n".join(
        f"| 1/{r['reduce']} | {r['frames']} | {r['pillow_full_decode_ms']} | "
        f"{r['pillow_decode_only_ms']} | {r['bytes_to_detections_ms']} | "
        f"{r['p90_bytes_to_detections_ms']} | **{r['ratio']}** | {r['ratio_to_decode_only']} | "
        f"{r['state_kb']} |"
        for r in results
    )
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    section = f"""
## Tower camera: one 1080p JPEG from bytes to detections, against Pillow's full decode

- Command: `{command}`
- Date: {when}
- Machine: {machine}
- Per frame, medians over interleaved runs (Pillow decode, then detector, same bytes), after
  6 warm-up snapshots; the detector includes hardened decoding at reduced resolution, registration,
  lighting match, change scoring, persistence and the background update. Target: ratio ≤ 2.
  Pillow's decode is to a NumPy array (`convert("RGB")`, then `np.asarray`); the decode alone
  (`load()`, the pixels left in Pillow's buffer) is the stricter yardstick of the last ratio.

{_HEADER}
{rows}
"""
    path = Path(__file__).with_name("RESULTS.md")
    with path.open("a", encoding="utf-8") as handle:
        handle.write(section)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sequence", type=Path, help="folder of one preset's 1080p JPEGs")
    parser.add_argument("--calibration", type=Path, help="its CALIBRATION.json")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--reduce", type=int, nargs="+", default=[4, 8], choices=[2, 4, 8])
    parser.add_argument("--append-results", action="store_true", help="add a RESULTS.md section")
    args = parser.parse_args()
    if args.sequence:
        frames, calibration = real_sequence(args.sequence, args.calibration)
    else:
        frames, calibration = synthetic_sequence(16)
    machine = _machine()
    results = [measure(frames, calibration, args.repeats, reduce) for reduce in args.reduce]
    print(json.dumps(results, indent=1))
    if args.append_results:
        command = ".venv/bin/python -m benchmarks.bench_camera " + " ".join(sys.argv[1:])
        append_results(results, command.strip(), machine)


if __name__ == "__main__":
    main()
