"""Training throughput: flarelens against a straightforward re-implementation of the study's loop.

Both train the same model at the same image size on the same JPEG files with the same
augmentation scheme (flaring x4: original, h-flip, v-flip, rotation within +-5 deg;
non-flaring x2) and class weights; the number reported is training images per second
(augmented instances, forward + backward + optimizer step) over the last of ``--epochs``
epochs, so one-time warm-up (kernel selection, the first epoch's page cache) is left out;
with ``--repeat N`` the two paths run N times, interleaved, and the best of each counts.

* study loop: one PIL ``Image.open`` + torchvision ``ToTensor`` per item, the six datasets
  concatenated, a shuffling DataLoader, float32 throughout, log-softmax + weighted NLL loss,
  SGD - as the original code does it;
* flarelens: ``flarelens.train.train`` as a user runs it (its defaults: images decoded once
  into memory when they fit, uint8 batches, bf16/fp16 autocast where the hardware has it,
  channels-last, pinned memory and workers on GPU; ``--compile`` optional).

Examples::

    python benchmarks/bench_train.py --model alexnet --image-size 128            # CPU
    python benchmarks/bench_train.py --model vgg16 --image-size 512 --device cuda --n-images 2048 --workers 8

Prints one markdown table row per path and their ratio; ``--json FILE`` also saves them.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch


def make_dataset(root: Path, n: int, size: int, seed: int = 0) -> Path:
    """``n`` synthetic full-disk JPEG magnetograms of ``size`` px and their labels.csv (1 in 3 flaring)."""
    from PIL import Image

    from flarelens.images import image_relpath
    from flarelens.labels import fold_of

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    c, r = (size - 1) / 2, 0.45 * size
    disk = (xx - c) ** 2 + (yy - c) ** 2 <= r**2
    # Distinct random hours over four years: every quarter (fold) gets rows.
    hours = np.sort(rng.choice(4 * 365 * 24, size=n, replace=False))
    times = pd.Timestamp("2011-01-01", tz="UTC") + pd.to_timedelta(hours, unit="h")
    rows = []
    for i, t in enumerate(times):
        field = rng.normal(0, 20, (size, size))
        target = int(i % 3 == 0)
        for strength in ([900] if target else []) + [150, 150]:
            a, d = rng.uniform(0, 2 * np.pi), rng.uniform(0, 0.7 * r)
            x0, y0, s = c + d * np.cos(a), c + d * np.sin(a), size / 40
            for sign, dx in ((1, -s), (-1, s)):
                field += sign * strength * np.exp(-((xx - x0 - dx) ** 2 + (yy - y0) ** 2) / (2 * s**2))
        pixels = np.where(disk, np.clip(field, -250, 250) / 250 * 127.5 + 127.5, 0)
        rel = image_relpath(t, ".jpg")
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.round(pixels).astype(np.uint8)).save(root / rel, quality=90)
        rows.append({"timestamp": t.strftime("%Y-%m-%dT%H:%M:%SZ"), "file": rel, "target": target})
    labels = pd.DataFrame(rows)
    labels["fold"] = fold_of(labels["timestamp"])
    path = root / "labels.csv"
    labels.to_csv(path, index=False)
    return path


# ----------------------------------------------------------------------------- the study's loop


def study_loop(labels_path: Path, root: Path, model_name: str, size: int, batch_size: int, epochs: int,
               device: str, workers: int, lr: float, weight_decay: float) -> float:
    """Images/s of the last epoch of a plain re-implementation of the study's training loop."""
    import torch.nn as nn
    import torchvision.transforms as T
    from PIL import Image
    from torch.utils.data import ConcatDataset, DataLoader, Dataset

    from flarelens.labels import train_val
    from flarelens.models import build_model

    class Files(Dataset):
        def __init__(self, frame, transform):
            self.frame = frame.reset_index(drop=True)
            self.transform = transform

        def __len__(self):
            return len(self.frame)

        def __getitem__(self, i):
            image = Image.open(root / self.frame["file"][i])
            return self.transform(image), int(self.frame["target"][i])

    train_rows, _ = train_val(pd.read_csv(labels_path), 1)
    fl, nf = train_rows[train_rows["target"] == 1], train_rows[train_rows["target"] == 0]
    plain = T.Compose([T.ToTensor()])
    sets = [
        Files(fl, plain),
        Files(fl, T.Compose([T.RandomHorizontalFlip(p=1.0), T.ToTensor()])),
        Files(fl, T.Compose([T.RandomVerticalFlip(p=1.0), T.ToTensor()])),
        Files(fl, T.Compose([T.RandomRotation(degrees=(-5, 5)), T.ToTensor()])),
        Files(nf, plain),
        Files(nf, T.Compose([T.RandomChoice([T.RandomHorizontalFlip(p=1.0), T.RandomVerticalFlip(p=1.0),
                                             T.RandomRotation(degrees=(-5, 5))]), T.ToTensor()])),
    ]
    loader = DataLoader(ConcatDataset(sets), batch_size=batch_size, shuffle=True, num_workers=workers,
                        pin_memory=device.startswith("cuda"))
    torch.manual_seed(0)
    model = build_model(model_name, image_size=size).to(device)
    ratio = (2 * len(nf)) / (4 * len(fl))
    criterion = nn.NLLLoss(weight=torch.tensor([1.0, ratio])).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, weight_decay=weight_decay)
    rate = float("nan")
    for _ in range(epochs):
        model.train()
        start = time.perf_counter()
        seen, total_loss, predictions = 0, 0.0, []
        for data, targets in loader:
            data, targets = data.to(device), targets.to(device)
            scores = torch.log_softmax(model(data), dim=1)
            loss = criterion(scores, targets)
            predictions.append(torch.max(scores, 1)[1])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total_loss += loss.item()
            seen += len(targets)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        rate = seen / (time.perf_counter() - start)
    return rate


# ----------------------------------------------------------------------------- flarelens


def flarelens_loop(labels_path: Path, root: Path, model_name: str, size: int, batch_size: int, epochs: int,
                   device: str, workers: int | None, amp: str, compile_: bool, lr: float, weight_decay: float,
                   out: Path) -> tuple[float, str]:
    from flarelens.train import resolve_amp, train

    history = train(labels=str(labels_path), images=str(root), fold=1, model=model_name, image_size=size,
                    epochs=epochs, batch_size=batch_size, lr=lr, weight_decay=weight_decay, optimizer="sgd",
                    device=device, amp=amp, compile=compile_, workers=workers, out=str(out), progress=False,
                    inner=0, select="last")  # every training row, as the study loop
    return float(history["train_images_per_s"].iloc[-1]), resolve_amp(amp, torch.device(device))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="alexnet")
    p.add_argument("--image-size", type=int, default=128)
    p.add_argument("--n-images", type=int, default=256, help="synthetic images to make (ignored with --labels)")
    p.add_argument("--labels", help="use this labels.csv and --images instead of synthetic data (fold 1 training rows)")
    p.add_argument("--images")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--epochs", type=int, default=2, help="epochs per path; the last one is timed")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--amp", default="auto", help="flarelens mixed precision: auto, bf16, fp16, off")
    p.add_argument("--compile", action="store_true", help="flarelens with torch.compile")
    p.add_argument("--workers", type=int, default=None, help="flarelens DataLoader workers (default: its automatic choice)")
    p.add_argument("--study-workers", type=int, default=None,
                   help="study loop DataLoader workers (default: 2 on CPU, 8 on GPU: the better choice measured here)")
    p.add_argument("--only", choices=("study", "flarelens"), help="run one path only")
    p.add_argument("--repeat", type=int, default=1, help="interleaved runs of each path; the best is reported")
    p.add_argument("--json", help="append the results as one JSON line to this file")
    args = p.parse_args(argv)

    study_workers = args.study_workers if args.study_workers is not None else (8 if args.device.startswith("cuda") else 2)
    with tempfile.TemporaryDirectory(prefix="flarelens-bench-") as tmp:
        tmp = Path(tmp)
        if args.labels:
            labels_path, root = Path(args.labels), Path(args.images)
        else:
            root = tmp / "images"
            labels_path = make_dataset(root, args.n_images, args.image_size)
        common = dict(model_name=args.model, size=args.image_size, batch_size=args.batch_size, epochs=args.epochs,
                      device=args.device, lr=1e-4, weight_decay=1e-3)
        result = {
            "model": args.model, "image_size": args.image_size, "batch_size": args.batch_size,
            "device": torch.cuda.get_device_name() if args.device.startswith("cuda") else f"CPU x{os.cpu_count()} ({platform.processor() or platform.machine()})",
            "torch": torch.__version__, "threads": torch.get_num_threads(), "repeat": args.repeat,
            "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        }
        study_rates, flarelens_rates = [], []
        # Interleaved repeats: on a shared machine the best of N is the least disturbed run.
        for r in range(args.repeat):
            if args.only != "flarelens":
                study_rates.append(study_loop(labels_path, root, workers=study_workers, **common))
            if args.only != "study":
                rate, amp = flarelens_loop(labels_path, root, workers=args.workers, amp=args.amp,
                                           compile_=args.compile, out=tmp / f"run{r}", **common)
                flarelens_rates.append(rate)
                result["flarelens_amp"] = amp
        if study_rates:
            result["study_images_per_s"] = max(study_rates)
            result["study_runs"] = study_rates
            result["study_workers"] = study_workers
        if flarelens_rates:
            result["flarelens_images_per_s"] = max(flarelens_rates)
            result["flarelens_runs"] = flarelens_rates
    if "study_images_per_s" in result and "flarelens_images_per_s" in result:
        result["ratio"] = result["flarelens_images_per_s"] / result["study_images_per_s"]
    print(json.dumps(result))
    row = (f"| {result['device']} | {args.model} | {args.image_size} | {args.batch_size} "
           f"| {result.get('study_images_per_s', float('nan')):.1f} | {result.get('flarelens_images_per_s', float('nan')):.1f} "
           f"({result.get('flarelens_amp', '-')}{', compile' if args.compile else ''}) | {result.get('ratio', float('nan')):.2f}x |")
    print("| device | model | size | batch | study loop img/s | flarelens img/s | ratio |")
    print("|---|---|---|---|---|---|---|")
    print(row)
    if args.json:
        with open(args.json, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
