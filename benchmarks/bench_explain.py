"""Attribution throughput: flarelens' batched maps against a per-image loop like the study's notebook.

Both make the same three maps of the flare class for the same images with the same model
and settings: Guided Grad-CAM on the backbone's last convolution, Deep SHAP against K
background images, Integrated Gradients with ``--steps`` steps against the flat 0.5 gray
baseline (the study's; the physical baseline costs the same).

* per-image loop (the study's notebook): for each image, PIL ``Image.open`` + torchvision
  ``ToTensor`` + ``unsqueeze(0)``, then new captum objects and one ``attribute`` call per
  method on that single image (IG's steps in one batch, as captum does without
  ``internal_batch_size``);
* flarelens: ``flarelens.explain.Attributor`` on ``--batch-size`` images per call
  (decoded once with ``flarelens.data``), Deep SHAP and IG chunked to
  ``--internal-batch-size`` samples per forward pass, the prepared model copy (exact
  DeepLift rules, no parameter gradients) reused across calls.

Reported: attributions (maps) per second per method, best of ``--repeat`` timed passes
after one warm-up pass, and the ratio. Examples::

    python benchmarks/bench_explain.py --model alexnet --image-size 128 --n 16
    python benchmarks/bench_explain.py --model vgg16 --image-size 512 --n 64 --device cuda
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch


def make_images(root: Path, n: int, size: int, seed: int = 0) -> list[Path]:
    """``n`` full-disk-like 8-bit JPEG magnetograms (gray disk, bipoles, off-disk 0)."""
    import pandas as pd
    from PIL import Image

    from flarelens.images import image_relpath

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    c, r = (size - 1) / 2, 0.45 * size
    disk = (xx - c) ** 2 + (yy - c) ** 2 <= r**2
    paths = []
    for i in range(n):
        field = rng.normal(0, 20, (size, size))
        for strength in (900, 150, 150):
            a, d = rng.uniform(0, 2 * np.pi), rng.uniform(0, 0.7 * r)
            x0, y0, s = c + d * np.cos(a), c + d * np.sin(a), size / 40
            for sign, dx in ((1, -s), (-1, s)):
                field += sign * strength * np.exp(-((xx - x0 - dx) ** 2 + (yy - y0) ** 2) / (2 * s**2))
        pixels = np.where(disk, np.clip(field, -250, 250) / 250 * 127.5 + 127.5, 0).round().astype(np.uint8)
        path = root / image_relpath(pd.Timestamp("2012-01-01", tz="UTC") + pd.Timedelta(hours=i), ".jpg")
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels).save(path, quality=95)
        paths.append(path)
    return paths


def study_loop(model, layer, paths, background, methods, steps, device):
    """One image at a time, as the notebook did; returns seconds per method."""
    from captum.attr import DeepLiftShap, GuidedGradCam, IntegratedGradients
    from PIL import Image
    from torchvision import transforms

    to_tensor = transforms.ToTensor()
    spent = dict.fromkeys(methods, 0.0)
    for path in paths:
        t0 = time.perf_counter()
        x = to_tensor(Image.open(path).convert("L")).unsqueeze(0).to(device)
        load = time.perf_counter() - t0
        for method in methods:
            t0 = time.perf_counter()
            if method == "guided-gradcam":
                GuidedGradCam(model, layer).attribute(x, target=1)
            elif method == "deepshap":
                DeepLiftShap(model).attribute(x, baselines=background, target=1)
            else:
                IntegratedGradients(model).attribute(x, baselines=torch.full_like(x, 0.5), target=1, n_steps=steps)
            _sync(device)
            spent[method] += time.perf_counter() - t0 + load / len(methods)
    return spent


def batched(attributor_factory, paths, image_size, methods, batch_size, device):
    """flarelens: decode with flarelens.data, one Attributor per method, batches of images."""
    from flarelens.data import read_image, resize_image

    spent = dict.fromkeys(methods, 0.0)
    attributors = {m: attributor_factory(m) for m in methods}
    for i in range(0, len(paths), batch_size):
        t0 = time.perf_counter()
        x = torch.stack([resize_image(read_image(p), image_size) for p in paths[i:i + batch_size]]).float().div_(255)
        load = time.perf_counter() - t0
        for method in methods:
            t0 = time.perf_counter()
            attributors[method].attribute(x)
            _sync(device)
            spent[method] += time.perf_counter() - t0 + load / len(methods)
    return spent


def _sync(device):
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def main(argv=None) -> int:
    from flarelens.explain.attributions import Attributor
    from flarelens.explain.methods import METHODS
    from flarelens.explain.prepare import module_name
    from flarelens.models import build_model, gradcam_layer

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="alexnet")
    p.add_argument("--image-size", type=int, default=128)
    p.add_argument("--n", type=int, default=16, help="images per timed pass")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--internal-batch-size", type=int, default=128)
    p.add_argument("--background", type=int, default=8, help="Deep SHAP background images K")
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--methods", default=",".join(METHODS))
    p.add_argument("--repeat", type=int, default=2, help="timed passes (best kept)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's)")
    p.add_argument("--json", help="also write the results here")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]

    torch.manual_seed(0)
    model = build_model(args.model, image_size=args.image_size).to(args.device).eval()
    layer_name = module_name(model, gradcam_layer(model))
    with tempfile.TemporaryDirectory() as tmp:
        paths = make_images(Path(tmp), args.n + args.background, args.image_size)
        background_paths, paths = paths[:args.background], paths[args.background:]
        from flarelens.data import read_image

        background = torch.stack([read_image(q) for q in background_paths]).float().div_(255).to(args.device)

        def factory(method):
            return Attributor(model, [method], layer=layer_name, background=background, ig_baseline="gray",
                              n_steps=args.steps, internal_batch_size=args.internal_batch_size, device=args.device)

        runs = {
            "study loop": lambda images: study_loop(model, gradcam_layer(model), images, background, methods,
                                                    args.steps, args.device),
            "flarelens": lambda images: batched(factory, images, args.image_size, methods, args.batch_size,
                                                args.device),
        }
        for fn in runs.values():  # warm-up: allocator, kernel choice, page cache
            fn(paths[:args.batch_size])
        best = {name: dict.fromkeys(methods, float("inf")) for name in runs}
        for _ in range(args.repeat):
            for name, fn in runs.items():  # interleaved, so background load hits both alike
                for m, sec in fn(paths).items():
                    best[name][m] = min(best[name][m], sec)

    rate = {name: {m: args.n / best[name][m] for m in methods} for name in runs}
    machine = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, " \
              f"{torch.get_num_threads()} threads, device {args.device}"
    print(f"{args.model} at {args.image_size} px, {args.n} images, batch {args.batch_size}, K={args.background}, "
          f"IG {args.steps} steps; {machine}")
    print("| method | study loop (maps/s) | flarelens (maps/s) | speed-up |")
    print("|---|---|---|---|")
    for m in methods:
        print(f"| {m} | {rate['study loop'][m]:.3f} | {rate['flarelens'][m]:.3f} | "
              f"{rate['flarelens'][m] / rate['study loop'][m]:.2f}x |")
    total = {name: args.n / sum(best[name].values()) for name in runs}
    print(f"| all three | {total['study loop']:.3f} | {total['flarelens']:.3f} | "
          f"{total['flarelens'] / total['study loop']:.2f}x |")
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "machine": machine, "maps_per_s": rate,
                                               "all_three": total}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
