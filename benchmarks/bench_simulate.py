"""Throughput of ``flarelens simulate``, and the README's picture of a simulated image.

Times one image (render + JPEG) at several sizes in this process, then a whole run with the
worker pool (what ``flarelens simulate`` and the demo do). Run by hand, not in CI::

    python benchmarks/bench_simulate.py [--sizes 128 512] [--images 400] [--workers 2]
    python benchmarks/bench_simulate.py --picture docs/img/simulated.png

The picture is one 512² image (2011-02-14 12:00, AR 11158 the day before its X2.2 flare)
with the ground truth of regions.csv drawn on it: red circles for regions with a flare
>= M1.0 in the next 24 h, orange for smaller flares, cyan for flare-quiet regions.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from flarelens import geometry, images
from flarelens import simulate as sim
from flarelens.catalog import read_catalog


def time_single(sizes, repeat: int = 20) -> None:
    cat = read_catalog()
    times = pd.date_range("2014-02-20", periods=repeat, freq="7h", tz="UTC")  # a busy stretch
    model = sim.build_regions(cat, times[0], times[-1])
    eph = geometry.ephemeris(times)
    for size in sizes:
        layouts: dict = {}
        sim.render_field(times[0].value, eph.at(0), size, model, layouts)
        render = encode = 0.0
        for k, t in enumerate(times):
            t0 = time.perf_counter()
            field = sim.render_field(t.value, eph.at(k), size, model, layouts)
            t1 = time.perf_counter()
            sim.encode_jpeg(images.byte_scale(field), np.isnan(field))
            encode += time.perf_counter() - t1
            render += t1 - t0
        print(f"{size:>5} px: render {1000 * render / repeat:6.1f} ms, JPEG {1000 * encode / repeat:6.1f} ms per image (one process)")


def time_run(size: int, images: int, workers: int | None) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        start = pd.Timestamp("2014-01-01", tz="UTC")
        end = start + pd.Timedelta(hours=images - 1)
        t0 = time.perf_counter()
        summary = sim.simulate(start, end, "1h", size, tmp, workers=workers, progress=False)
        dt = time.perf_counter() - t0
        print(f"{size:>5} px: {summary.written} images in {dt:.1f} s with {workers or 'all'} workers "
              f"({summary.written / dt:.1f} images/s, set-up included)")


def picture(path: Path, time_="2011-02-14T12:00", size: int = 512) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pixels, truth = sim.simulate_image(time_, size)
    fig = plt.figure(figsize=(6, 6), dpi=size / 6)
    ax = fig.add_axes([0, 0, 1, 1])
    ax.imshow(pixels, cmap="gray", vmin=0, vmax=255, interpolation="nearest")
    ax.set_axis_off()
    for _, r in truth.iterrows():
        colour = "red" if r["max_flux_24h"] >= 1e-5 else ("orange" if r["max_flux_24h"] > 0 else "cyan")
        ax.add_patch(plt.Circle((r["x"], r["y"]), r["radius_px"], fill=False, color=colour, lw=1.2))
        label = r["region_id"] + (f" {r['max_class_24h']}" if r["max_class_24h"] else "")
        ax.text(r["x"], r["y"] - r["radius_px"] - 3, label, color=colour, fontsize=6.5, ha="center", va="bottom")
    ax.text(6, 10, f"simulated HMI magnetogram {pd.Timestamp(time_):%Y-%m-%d %H:%M} UTC (±250 G)", color="white", fontsize=7, va="top")
    ax.text(6, size - 8, "red: >= M1.0 in next 24 h   orange: C flare   cyan: flare-quiet", color="white", fontsize=6.5)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=size / 6)
    plt.close(fig)
    print(f"wrote {path} ({path.stat().st_size // 1024} KB)")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[128, 512])
    p.add_argument("--images", type=int, default=400, help="images per pooled run (default 400)")
    p.add_argument("--workers", type=int, default=None)
    p.add_argument("--picture", type=Path, help="only write the README picture to this PNG")
    args = p.parse_args(argv)
    if args.picture:
        picture(args.picture)
        return 0
    time_single(args.sizes)
    for size in args.sizes:
        time_run(size, args.images if size <= 256 else max(20, args.images // 10), args.workers)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
