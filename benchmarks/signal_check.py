"""Is the flare signal in simulated magnetograms real, and not trivial?

Simulates a stretch of the catalog (default 2011-2012, every 6 h, 128 px), labels it with
``flarelens.labels`` (>= M1.0 in the next 24 h), and for each held-out quarter (fold)
compares on the validation rows:

* a small CNN (plain torch, a few conv layers, trained on the other three quarters);
* a trivial baseline: the total unsigned flux of the image (sum of |pixel - 128| on the
  disk) with the threshold that maximises TSS on the training rows;
* the same with the area of strong field (pixels beyond +-100 G).

The simulated images are cached in ``--out`` (a resumed ``flarelens simulate`` run), so a
second call only trains. Run by hand, not in CI::

    python benchmarks/signal_check.py --out /tmp/signal_sim [--folds 1 2 3 4] [--epochs 12]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from flarelens.geometry import disk_mask
from flarelens.images import load
from flarelens.labels import make_labels
from flarelens.simulate import simulate


def tss(pred: np.ndarray, target: np.ndarray) -> float:
    """TP/(TP+FN) - FP/(FP+TN); 0 when a class is absent."""
    tp = np.sum(pred & target)
    fn = np.sum(~pred & target)
    fp = np.sum(pred & ~target)
    tn = np.sum(~pred & ~target)
    if tp + fn == 0 or fp + tn == 0:
        return 0.0
    return float(tp / (tp + fn) - fp / (fp + tn))


def best_threshold(score: np.ndarray, target: np.ndarray) -> float:
    """The threshold on ``score`` (predict flare when above) that maximises TSS."""
    cands = np.unique(np.quantile(score, np.linspace(0, 1, 401)))
    values = [tss(score > c, target) for c in cands]
    return float(cands[int(np.argmax(values))])


class SmallCNN(nn.Module):
    """A strided 5x5 stem, three conv blocks and global max + mean pooling (~50 MMAC at 128²)."""

    def __init__(self, width: int = 16):
        super().__init__()
        layers = [nn.Conv2d(1, width, 5, stride=2, padding=2), nn.BatchNorm2d(width), nn.ReLU(inplace=True)]
        c_in = width
        for c_out in (2 * width, 4 * width, 4 * width):
            layers += [nn.Conv2d(c_in, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True), nn.MaxPool2d(2)]
            c_in = c_out
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.Dropout(0.3), nn.Linear(2 * c_in, 2))

    def forward(self, x):
        f = self.features(x)
        return self.head(torch.cat([f.amax(dim=(2, 3)), f.mean(dim=(2, 3))], dim=1))


def train_cnn(x_tr, y_tr, x_va, epochs: int, seed: int, batch: int = 32) -> np.ndarray:
    """Train on (x_tr, y_tr); return the validation flare probabilities."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = SmallCNN()
    pos = max(1, int(y_tr.sum()))
    weight = torch.tensor([len(y_tr) / (2.0 * (len(y_tr) - pos)), len(y_tr) / (2.0 * pos)], dtype=torch.float32)
    loss_fn = nn.CrossEntropyLoss(weight=weight)
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=2e-3, total_steps=epochs * ((len(y_tr) + batch - 1) // batch))
    xt = torch.from_numpy(x_tr)
    yt = torch.from_numpy(y_tr.astype(np.int64))
    for epoch in range(epochs):
        model.train()
        order = rng.permutation(len(y_tr))
        total = 0.0
        for k in range(0, len(order), batch):
            idx = order[k:k + batch]
            xb = xt[idx].float().div_(255.0).unsqueeze(1)
            # Random up-down flips: the hemispheres swap, the flare signal does not change.
            if rng.random() < 0.5:
                xb = xb.flip(2)
            loss = loss_fn(model(xb), yt[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(idx)
        print(f"    epoch {epoch + 1}/{epochs} loss {total / len(y_tr):.3f}", flush=True)
    model.eval()
    with torch.no_grad():
        xv = torch.from_numpy(x_va)
        probs = torch.cat([torch.softmax(model(xv[k:k + 128].float().div(255.0).unsqueeze(1)), 1)[:, 1]
                           for k in range(0, len(xv), 128)])
    return probs.numpy()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="/tmp/flarelens_signal_sim", help="simulated image directory (cache)")
    p.add_argument("--start", default="2011-01-01")
    p.add_argument("--end", default="2012-12-31 18:00")
    p.add_argument("--cadence", default="6h")
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--epochs", type=int, default=12)
    p.add_argument("--folds", type=int, nargs="+", default=[1, 2, 3, 4])
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)

    t0 = time.time()
    summary = simulate(args.start, args.end, args.cadence, args.size, args.out, seed=args.seed)
    print(summary.format())
    print(f"simulated in {time.time() - t0:.0f} s")
    labels, lsum = make_labels(start=args.start, end=args.end, cadence=args.cadence, images=args.out)
    print(lsum.format())
    root = Path(args.out)
    x = np.stack([load(root / f) for f in labels["file"]])
    y = labels["target"].to_numpy().astype(bool)
    folds = labels["fold"].to_numpy()
    # The disk of each image from the geometry: saturated negative field is 0 too.
    on = np.stack([disk_mask(t, args.size) for t in labels["timestamp"]])
    dev = np.where(on, np.abs(x.astype(np.int16) - 128), 0)
    flux = dev.sum(axis=(1, 2)).astype(float)
    strong = (dev > 51).sum(axis=(1, 2)).astype(float)  # beyond ~100 G

    rows = []
    for k in args.folds:
        tr, va = folds != k, folds == k
        print(f"fold {k}: train {tr.sum()} ({y[tr].sum()} flaring), validate {va.sum()} ({y[va].sum()} flaring)", flush=True)
        scores = {}
        for name, feat in (("flux", flux), ("strong-area", strong)):
            thr = best_threshold(feat[tr], y[tr])
            scores[name] = (tss(feat[tr] > thr, y[tr]), tss(feat[va] > thr, y[va]))
        t1 = time.time()
        prob = train_cnn(x[tr], y[tr], x[va], args.epochs, args.seed)
        scores["cnn"] = (float("nan"), tss(prob >= 0.5, y[va]))
        print(f"  fold {k}: TSS validation  cnn {scores['cnn'][1]:.3f}  flux {scores['flux'][1]:.3f} "
              f"(train {scores['flux'][0]:.3f})  strong-area {scores['strong-area'][1]:.3f}  [{time.time() - t1:.0f} s]", flush=True)
        rows.append((k, scores))
    print("\nfold  cnn    flux   strong-area   (validation TSS)")
    for k, s in rows:
        print(f"{k:>4}  {s['cnn'][1]:.3f}  {s['flux'][1]:.3f}  {s['strong-area'][1]:.3f}")
    mean = {n: np.mean([s[n][1] for _, s in rows]) for n in ("cnn", "flux", "strong-area")}
    print(f"mean  {mean['cnn']:.3f}  {mean['flux']:.3f}  {mean['strong-area']:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
