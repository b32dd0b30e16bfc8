"""Which flare neighbourhood agrees with the ground truth: image-space or heliographic?

On simulated magnetograms the true flaring region is known (``regions.csv`` of
``flarelens simulate``), so every explanation has a ground-truth score: the share of its
positive attribution inside the true region (``gt_mass``). A localisation score computed
from the catalog's flare position alone should track it; this benchmark measures how well
each of explain's two neighbourhoods does, separately for central (|lon| <= 70 deg) and
near-limb flares:

* ``image``: the on-disk pixels within 0.17 solar radii of the flare's pixel at the image
  time (``--neighbourhood image``);
* ``heliographic``: the on-disk pixels within 10 great-circle degrees of the flare's
  position at the image time (``--neighbourhood heliographic``).

Steps, all through the ``flarelens`` command line: simulate ``--start``..``--end`` every
``--cadence`` at 128², label it, train ``simplecnn`` for ``--epochs`` on the quarters other
than ``--fold``, predict that fold, and explain every X/M-class instance of it with the three
methods. Then, over the instances whose source is visible and whose true region is known,
per method and position: the mean of each neighbourhood's mass beside ``gt_mass``, the mean
absolute difference from ``gt_mass``, Spearman's rank correlation with ``gt_mass``, and the
neighbourhood's mean area (share of the disk). Run by hand (a few minutes of CPU)::

    python benchmarks/explain_neighbourhoods.py --out /tmp/flarelens_neighbourhoods
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd


def run_pipeline(args) -> Path:
    """simulate -> label -> train -> predict -> explain; returns the explain directory (steps resume)."""
    from flarelens.cli import main

    out = Path(args.out)
    images, run, explain_dir = out / "sim", out / f"fold{args.fold}", out / "explain"
    steps = [
        ["simulate", "--start", args.start, "--end", args.end, "--cadence", args.cadence, "--size", "128",
         "--out", str(images), "--seed", str(args.seed)],
        ["label", "--start", args.start, "--end", args.end, "--cadence", args.cadence, "--images", str(images),
         "--out", str(out / "labels.csv")],
    ]
    if not (run / "best.pt").is_file():
        steps.append(["train", "--labels", str(out / "labels.csv"), "--images", str(images), "--fold", str(args.fold),
                      "--model", "simplecnn", "--image-size", "128", "--epochs", str(args.epochs), "--batch-size", "32",
                      "--lr", "2e-3", "--optimizer", "adamw", "--schedule", "none", "--seed", str(args.seed),
                      "--out", str(run)])
    steps += [
        ["predict", "--checkpoint", str(run / "best.pt"), "--labels", str(out / "labels.csv"), "--images", str(images),
         "--fold", str(args.fold), "--out", str(run / "predictions.csv")],
        ["explain", "--checkpoint", str(run / "best.pt"), "--predictions", str(run / "predictions.csv"),
         "--images", str(images), "--labels", str(out / "labels.csv"), "--class", "X,M", "--no-overlays",
         "--comparison-rows", "0", "--out", str(explain_dir), "--seed", str(args.seed)],
    ]
    for argv in steps:
        t0 = time.time()
        if main(["--quiet", *argv]) != 0:
            raise SystemExit(f"flarelens {argv[0]} failed")
        print(f"{argv[0]}: {time.time() - t0:.0f} s", flush=True)
    return explain_dir


def spearman(a, b) -> float:
    """Spearman's rank correlation (NaN with fewer than 3 pairs or a constant side)."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    if len(a) < 3:
        return float("nan")
    ra, rb = pd.Series(a).rank().to_numpy(), pd.Series(b).rank().to_numpy()
    if ra.std() == 0 or rb.std() == 0:
        return float("nan")
    return float(np.corrcoef(ra, rb)[0, 1])


def agreement(scores: pd.DataFrame) -> pd.DataFrame:
    """Per method and position: each neighbourhood's agreement with the ground-truth score."""
    usable = scores[(scores["visible"] == 1) & np.isfinite(scores["gt_mass"])]
    rows = []
    for (method, position), g in usable.groupby(["method", "position"], sort=True):
        row = {"method": method, "position": position, "n": len(g), "gt_mass": g["gt_mass"].mean(),
               "gt_area": g["gt_area"].mean()}
        for name, prefix in (("image", "image_"), ("heliographic", "helio_")):
            mass = g[f"{prefix}mass"]
            row[f"{name}_mass"] = mass.mean()
            row[f"{name}_abs_diff"] = (mass - g["gt_mass"]).abs().mean()
            row[f"{name}_spearman"] = spearman(mass, g["gt_mass"])
            row[f"{name}_area"] = g[f"{prefix}area"].mean()
        row["closer"] = "image" if row["image_abs_diff"] < row["heliographic_abs_diff"] else "heliographic"
        rows.append(row)
    return pd.DataFrame(rows)


def markdown(table: pd.DataFrame) -> str:
    head = ("| method | position | n | gt mass | image mass | helio mass | abs diff image | abs diff helio | "
            "Spearman image | Spearman helio | area image | area helio | area true region |")
    lines = [head, "|" + "---|" * 13]
    for _, r in table.iterrows():
        lines.append(
            f"| {r['method']} | {r['position']} | {r['n']} | {r['gt_mass']:.3f} | {r['image_mass']:.3f} | "
            f"{r['heliographic_mass']:.3f} | {r['image_abs_diff']:.3f} | {r['heliographic_abs_diff']:.3f} | "
            f"{r['image_spearman']:.2f} | {r['heliographic_spearman']:.2f} | {r['image_area']:.4f} | "
            f"{r['heliographic_area']:.4f} | {r['gt_area']:.4f} |"
        )
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="/tmp/flarelens_neighbourhoods", help="work directory (steps resume)")
    p.add_argument("--start", default="2011-07-01")
    p.add_argument("--end", default="2011-12-31T20:00")
    p.add_argument("--cadence", default="4h")
    p.add_argument("--fold", type=int, default=3, help="held-out quarter explained (default: 3, July-September)")
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)

    t0 = time.time()
    explain_dir = run_pipeline(args)
    scores = pd.read_csv(explain_dir / "scores.csv")
    table = agreement(scores)
    summary = json.loads((explain_dir / "summary.json").read_text())
    hidden = int(summary.get("hidden", 0))
    print(markdown(table))
    print(f"{scores['timestamp'].nunique()} X/M instances explained, {hidden} with the source hidden at the image "
          f"time; total {time.time() - t0:.0f} s")
    (Path(args.out) / "neighbourhoods.json").write_text(json.dumps(
        {"rows": table.to_dict(orient="records"), "hidden": hidden, "seconds": time.time() - t0}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
