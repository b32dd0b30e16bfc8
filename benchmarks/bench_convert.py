"""Conversion throughput: 4096² Helioviewer-like JP2 -> 512² JPEG, images per second.

Makes a 4096² 8-bit JPEG 2000 by upscaling sunpy's real Helioviewer JP2 (512²) with
Pillow and saving it lossy (about Helioviewer's file size), copies it under the naming
convention N times, then times ``flarelens.convert.convert`` with 1 worker and with all
cores, plus the per-image split between JP2 decoding and area averaging.

    python benchmarks/bench_convert.py [--n 16] [--workers 1 2] [--size 512]
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from flarelens import images
from flarelens.convert import area_resize, convert

SUNPY_JP2 = "2023_01_31__03_39_23_200__SDO_HMI_HMI_continuum.jp2"


def make_4096_jp2(path: Path) -> Path:
    from sunpy.data.test import get_test_filepath

    with Image.open(get_test_filepath(SUNPY_JP2)) as im:
        big = np.asarray(im.convert("L").resize((4096, 4096), Image.BICUBIC), dtype=np.float32)
    # Pixel noise like a magnetogram's (an upscaled image alone compresses far too well),
    # then lossy at ~8:1, which gives about the size of Helioviewer's 4096² files.
    noisy = big + np.random.default_rng(0).normal(0, 4, big.shape) * (big > 0)
    Image.fromarray(np.clip(np.rint(noisy), 0, 255).astype(np.uint8)).save(
        path, "JPEG2000", quality_mode="rates", quality_layers=[8], irreversible=True)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=16, help="number of 4096² files to convert (default: 16)")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, os.cpu_count() or 1])
    parser.add_argument("--repeat", type=int, default=3, help="runs per worker count, interleaved (default: 3)")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench_convert_"))
    try:
        t0 = time.perf_counter()
        master = make_4096_jp2(work / "master.jp2")
        print(f"made a 4096² JP2 ({master.stat().st_size / 1e6:.2f} MB) in {time.perf_counter() - t0:.1f} s")
        src = work / "src"
        for t in pd.date_range("2011-02-15", periods=args.n, freq="1h", tz="UTC"):
            dest = src / images.image_relpath(t, ".jp2")
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(master, dest)

        decode, resize = [], []
        for _ in range(3):
            t0 = time.perf_counter()
            pixels = images.load(master)
            t1 = time.perf_counter()
            area_resize(pixels, args.size)
            t2 = time.perf_counter()
            decode.append(t1 - t0)
            resize.append(t2 - t1)
        print(f"one image: JP2 decode {np.median(decode):.3f} s, area average 4096²->{args.size}² "
              f"{np.median(resize) * 1000:.0f} ms (median of 3)")

        print(f"load average before: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores (other work skews timings)")
        times: dict[int, list[float]] = {w: [] for w in args.workers}
        for rep in range(args.repeat):  # interleaved, so a burst of outside load hits all settings
            for workers in args.workers:
                dst = work / f"dst_{workers}_{rep}"
                t0 = time.perf_counter()
                summary = convert(src, dst, size=args.size, fmt="jpg", workers=workers, progress=False)
                times[workers].append(time.perf_counter() - t0)
                assert summary.converted == args.n and not summary.failed, summary.format()
                shutil.rmtree(dst)
        print(f"{'workers':>7} {'images':>6} {'best s':>7} {'median s':>8} {'images/s (best)':>15}")
        for workers, runs in times.items():
            best = min(runs)
            print(f"{workers:>7} {args.n:>6} {best:>7.2f} {np.median(runs):>8.2f} {args.n / best:>15.2f}")
        print(f"load average after: {os.getloadavg()[0]:.1f}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
