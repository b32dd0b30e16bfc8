"""Data path: images per second delivered to the model (no model) at 512² with the study's augmentation.

Two sources of the same labelled images, read the way ``flarelens train`` reads them (a
DistributedSampler over the augmented index, batches of 64, non-persistent workers):

* ``jpeg``: the image folder (512² JPEGs), decoded and augmented per item in the loader's
  worker processes (the CPU path);
* ``pack``: the packed array (``flarelens pack``), sliced per batch in the workers; the
  flips and rotations are left to :meth:`MagnetogramDataset.finish_batch` on the device, as
  on CUDA. ``--augment-here`` also runs them here on the CPU (what a GPU does instead).

It prints wall-clock images/s and the CPU time spent per image by this process and its
worker processes together (``getrusage``: self + reaped children, so the figure holds on a
machine shared with other jobs), and from it images per core-second.

    python benchmarks/bench_data.py prepare --work /tmp/bench_data [--n 256]
    python benchmarks/bench_data.py run --work /tmp/bench_data --source jpeg --workers 2 [--epochs 2]
    python benchmarks/bench_data.py run --work /tmp/bench_data --source pack --workers 2 [--epochs 2]
"""

from __future__ import annotations

import argparse
import os
import resource
import time
from pathlib import Path

import numpy as np
import pandas as pd

SIZE = 512


def prepare(work: Path, n: int) -> None:
    """``n`` 512² JPEG magnetogram-like images (disk, noise, bipoles; every third flaring), labels, pack."""
    from PIL import Image

    from flarelens.images import image_relpath
    from flarelens.labels import fold_of
    from flarelens.pack import build_pack

    rng = np.random.default_rng(0)
    root = work / "images"
    yy, xx = np.mgrid[0:SIZE, 0:SIZE]
    c, r = (SIZE - 1) / 2, 0.45 * SIZE
    on_disk = (xx - c) ** 2 + (yy - c) ** 2 <= r**2
    rows = []
    step = max(1, int(365 * 24 / n))  # spread over a year: every fold gets rows
    for i, t in enumerate(pd.date_range("2011-01-01", periods=n, freq=f"{step}h", tz="UTC")):
        field = rng.normal(0, 15, (SIZE, SIZE))
        for _ in range(3):
            x0, y0, s = rng.uniform(c - 0.6 * r, c + 0.6 * r), rng.uniform(c - 0.6 * r, c + 0.6 * r), SIZE / 40
            field += 600 * np.exp(-((xx - x0 + s) ** 2 + (yy - y0) ** 2) / (2 * s * s))
            field -= 600 * np.exp(-((xx - x0 - s) ** 2 + (yy - y0) ** 2) / (2 * s * s))
        pixels = np.where(on_disk, np.clip(field, -250, 250) / 250 * 127.5 + 127.5, 0)
        rel = image_relpath(t, ".jpg")
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.round(pixels).astype(np.uint8)).save(root / rel, quality=95)
        rows.append({"timestamp": t.strftime("%Y-%m-%dT%H:%M:%SZ"), "file": rel, "target": int(i % 3 == 0)})
    labels = pd.DataFrame(rows)
    labels["fold"] = fold_of(labels["timestamp"])
    labels.to_csv(work / "labels.csv", index=False)
    summary = build_pack(work / "labels.csv", root, work / "images-512.npy", size=SIZE, progress=False)
    print(summary.format())


def cpu_seconds() -> float:
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def run(work: Path, source: str, workers: int, epochs: int, batch_size: int, augment_here: bool) -> None:
    import torch
    from torch.utils.data import DataLoader, DistributedSampler

    from flarelens.data import MagnetogramDataset

    torch.set_num_threads(1)  # the model's threads are not this benchmark's: count the data path alone
    labels = pd.read_csv(work / "labels.csv")
    if source == "jpeg":
        ds = MagnetogramDataset(labels, work / "images", SIZE, augment="study", cache=False, as_uint8=True)
    else:
        ds = MagnetogramDataset(labels, work / "images-512.npy", SIZE, augment="study", as_uint8=True,
                                batch_augment=True)
    sampler = DistributedSampler(ds, num_replicas=1, rank=0, shuffle=True, seed=0)
    loader = DataLoader(ds, batch_size=batch_size, sampler=sampler, num_workers=workers)
    timings = []
    for epoch in range(epochs + 1):  # the first epoch warms the page cache and the imports up
        ds.set_epoch(epoch)
        sampler.set_epoch(epoch)
        t0, c0 = time.perf_counter(), cpu_seconds()
        n = 0
        for batch in loader:
            if source == "pack" and augment_here:
                x, _ = ds.finish_batch(batch)
            else:
                x = batch[0]
            n += len(x)
        timings.append((time.perf_counter() - t0, cpu_seconds() - c0, n))
    wall = sum(t for t, _, _ in timings[1:])
    cpu = sum(c for _, c, _ in timings[1:])
    n = sum(k for _, _, k in timings[1:])
    what = f"{source}{' + augmentation on this CPU' if source == 'pack' and augment_here else ''}"
    print(f"{what:<34} workers {workers}: {n / wall:8.1f} images/s wall, {cpu / n * 1000:6.2f} ms CPU per image "
          f"= {n / cpu:7.1f} images per core-second ({n} images, {epochs} epochs, load {os.getloadavg()[0]:.1f})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="step", required=True)
    p = sub.add_parser("prepare")
    p.add_argument("--work", type=Path, required=True)
    p.add_argument("--n", type=int, default=256, help="labelled 512² images (default 256)")
    r = sub.add_parser("run")
    r.add_argument("--work", type=Path, required=True)
    r.add_argument("--source", choices=("jpeg", "pack"), required=True)
    r.add_argument("--workers", type=int, default=2)
    r.add_argument("--epochs", type=int, default=2, help="timed epochs after one warm-up epoch (default 2)")
    r.add_argument("--batch-size", type=int, default=64)
    r.add_argument("--augment-here", action="store_true", help="pack: also flip and rotate the batches on this CPU")
    args = parser.parse_args()
    if args.step == "prepare":
        args.work.mkdir(parents=True, exist_ok=True)
        prepare(args.work, args.n)
    else:
        run(args.work, args.source, args.workers, args.epochs, args.batch_size, args.augment_here)


if __name__ == "__main__":
    main()
