"""Benchmark of the raster-pair detector against plain decoding of the same files.

    python benchmarks/bench_rs.py --size 8192 --workdir /tmp/bench_rs --append-results

Writes a synthetic 4-band uint16 DEFLATE GeoTIFF pair (tiled 512², predictor 2) under
--workdir, then in one run measures (1) decoding both files whole and (2) the detector
end to end (`tianxun detect`'s code path: read, detect, write mask and objects), and
reports seconds, Mpx/s, the ratio (detector against decoding on the same number of
threads) and the peak resident memory of each step.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from scipy import ndimage

from detection.rs_params import RasterDetectorParams
from scripts.detect import run_detect, usable_cpus

BLOCK = 1024


def write_scene(path: Path, size: int, *, seed: int, with_change: bool) -> None:
    """A textured 4-band scene written block by block (memory stays small)."""
    profile = {
        "driver": "GTiff",
        "width": size,
        "height": size,
        "count": 4,
        "dtype": "uint16",
        "crs": "EPSG:32651",
        "transform": Affine(1.0, 0, 200_000.0, 0, -1.0, 3_350_000.0),
        "tiled": True,
        "blockxsize": 512,
        "blockysize": 512,
        "compress": "deflate",
        "predictor": 2,
    }
    base = np.array([600, 900, 700, 3000], dtype=np.float32)[:, None, None]
    with rasterio.open(path, "w", **profile) as dst:
        for top in range(0, size, BLOCK):
            for left in range(0, size, BLOCK):
                rng = np.random.default_rng([top, left])  # same texture at both dates
                texture = ndimage.gaussian_filter(rng.normal(size=(BLOCK, BLOCK)), 3) * 4
                noise = np.random.default_rng([seed, top, left]).normal(0, 0.02, (4, BLOCK, BLOCK))
                block = base * (1 + 0.15 * texture + noise)
                if with_change and (top // BLOCK + left // BLOCK) % 3 == 0:
                    block[:, 100:140, 200:260] = [[[2600]], [[2700]], [[2800]], [[3000]]]
                window = rasterio.windows.Window(left, top, BLOCK, BLOCK)
                dst.write(np.clip(block, 0, 65535).astype(np.uint16), window=window)


def timed(step: Callable[[], object]) -> tuple[float, object]:
    started = time.perf_counter()
    outcome = step()
    return time.perf_counter() - started, outcome


def decode(paths: list[Path], threads: int = 1) -> int:
    """Decode every file whole, GDAL inflating blocks on `threads` threads."""
    total = 0
    with rasterio.Env(GDAL_NUM_THREADS=str(threads)):
        for path in paths:
            with rasterio.open(path) as src:
                total += int(src.read().size)
    return total


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


COLUMNS = {
    "size": "size",
    "threads": "threads",
    "decode_both_s": "decode both s (1 thread)",
    "decode_threaded_s": "decode both s (threads)",
    "detector_s": "detector s",
    "ratio": "ratio (same threads)",
    "ratio_one_thread_decode": "ratio to 1-thread decode",
    "detector_first_call_s": "detector s, first call",
    "decode_first_call_s": "decode both s (threads), first call",
    "ratio_first_call": "ratio, first call",
    "detector_mpx_per_s": "detector Mpx/s",
    "peak_rss_after_decode_mb": "peak RSS after decode MB",
    "peak_rss_mb": "peak RSS MB",
    "objects": "objects",
}


def append_results(outcome: dict[str, object], command: str) -> None:
    """Append one section to benchmarks/RESULTS.md, as the other benchmarks do."""
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    load = os.getloadavg()[0]
    header = " | ".join(COLUMNS.values())
    row = " | ".join(str(outcome[key]) for key in COLUMNS)
    section = f"""
## Remote-sensing detector against decoding both files (`bench_rs`)

- Command: `{command}`
- Date: {when}; {os.cpu_count()} CPUs shared, load average {load:.2f} at the end
- One run: decode both GeoTIFFs whole on `threads` threads
  (first call), on one thread, on `threads` threads again, then `tianxun detect`'s code path
  (read, detect, write mask and objects) on the same files with `--threads` twice. `ratio`
  takes the second calls, `ratio, first call` the first ones. Targets: ratio ≤ 2, the detector
  against decoding on as many threads as it has (against a one-thread decode, the second
  ratio, it would be credited with its own extra threads); peak memory ≤ 2 GB at 20000².

| {header} |
|{"---|" * len(COLUMNS)}
| {row} |
"""
    with Path(__file__).with_name("RESULTS.md").open("a", encoding="utf-8") as handle:
        handle.write(section)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=8192, help="Edge in pixels (multiple of 1024).")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/bench_rs"))
    parser.add_argument("--append-results", action="store_true", help="add a RESULTS.md section")
    parser.add_argument(
        "--threads", type=int, default=usable_cpus(), help="Threads for decoding and detection."
    )
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    before, after = args.workdir / "before.tif", args.workdir / "after.tif"
    if not before.exists():
        write_scene(before, args.size, seed=1, with_change=False)
        write_scene(after, args.size, seed=2, with_change=True)
    # Each is timed on its second call in this process, as a worker running back to back would
    # run it. This machine hands memory left free for two seconds back to its host, and
    # touching it again costs 1–1.5 s a GB against 0.15 s (RESULTS.md, 2026-11-29): a first
    # call pays that for all it holds, which is more for the detector (both dates at once)
    # than for the decode (one file at a time). The first calls are timed and compared too.
    decode_first_s, _ = timed(lambda: decode([before, after], threads=args.threads))
    decode_s, _ = timed(lambda: decode([before, after]))
    decode_threaded_s, _ = timed(lambda: decode([before, after], threads=args.threads))
    decode_rss = peak_rss_mb()

    def detect() -> dict[str, object]:
        return run_detect(
            before,
            after,
            args.workdir / "out",
            model=None,
            farmland=None,
            before_cloud=None,
            after_cloud=None,
            params=RasterDetectorParams(),
            threads=args.threads,
        )

    detect_first_s, _ = timed(detect)
    detect_s, summary = timed(detect)
    megapixels = args.size**2 / 1e6
    outcome = {
        "size": args.size,
        "threads": args.threads,
        "decode_both_s": round(decode_s, 2),
        "decode_threaded_s": round(decode_threaded_s, 2),
        "detector_s": round(detect_s, 2),
        # The target compares like with like: the detector and the decode on the same threads.
        "ratio": round(detect_s / decode_threaded_s, 2),
        "ratio_one_thread_decode": round(detect_s / decode_s, 2),
        "detector_first_call_s": round(detect_first_s, 2),
        "decode_first_call_s": round(decode_first_s, 2),
        "ratio_first_call": round(detect_first_s / decode_first_s, 2),
        "detector_mpx_per_s": round(megapixels / detect_s, 2),
        "peak_rss_after_decode_mb": round(decode_rss),
        "peak_rss_mb": round(peak_rss_mb()),
        "objects": summary["objects_found"] if isinstance(summary, dict) else None,
    }
    print(json.dumps(outcome))
    if args.append_results:
        append_results(outcome, ".venv/bin/python benchmarks/bench_rs.py " + " ".join(sys.argv[1:]))


if __name__ == "__main__":
    main()
