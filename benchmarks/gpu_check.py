"""One command that proves flarelens' GPU paths: about 6-9 minutes on one GPU, no network.

    python benchmarks/gpu_check.py [--work /tmp/gpu_check] [--n 384] [--budget 540]

(``--device cpu --size 32 --models simplecnn --n 96`` runs the same paths on a CPU in a
minute or two, gloo for NCCL and without fp16 and --compile: a check of the script itself.)

On synthetic 512² magnetograms (JPEG folder and its pack, every third image flaring) it
runs, each through the ``flarelens`` command line in this process:

* ``train`` VGG16 and AlexNet at 512² (2 epochs, batch 64, from the pack: rows in GPU
  memory, flips and rotations on the GPU) with bf16, fp16 and fp32 (``--amp off``),
  channels-last on and off, and ``--compile``; VGG16 bf16 once more from the JPEG folder
  (CPU decoding in loader workers) to compare the data paths;
* ``torchrun --nproc_per_node 1`` with the NCCL backend: all-reduce, all-gather and
  barrier on the GPU, then ``train`` under the launcher;
* ``predict`` and ``explain`` (Guided Grad-CAM, Deep SHAP, Integrated Gradients) on CUDA.

It prints one table: per path, images/s (training: the second epoch's, warm-up excluded;
predict/explain: end to end), peak GPU memory, and pass or fail (with the error's first
line). Paths that would start after ``--budget`` seconds are reported as skipped. Without
a CUDA GPU it says so and exits 0. Exit status 1 when any path failed.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import math
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def gpu_or_none():
    try:
        import torch
    except ImportError:
        return None
    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else None


class Table:
    def __init__(self, budget: float, cuda: bool):
        self.rows: list[tuple[str, str, str, str]] = []
        self.began = time.monotonic()
        self.budget = budget
        self.cuda = cuda

    def run(self, name: str, fn) -> None:
        import torch

        if time.monotonic() - self.began > self.budget:
            self.rows.append((name, "", "", "skipped (time budget)"))
            return
        if self.cuda:
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        t0 = time.monotonic()
        try:
            rate = fn()
            result = "pass"
        except BaseException as exc:  # noqa: BLE001 - a failing path is a row of the table, not the end
            if isinstance(exc, KeyboardInterrupt):
                raise
            rate, result = None, f"FAIL: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:120]
        peak = f"{torch.cuda.max_memory_allocated() / 1024**3:.1f}" if self.cuda else "-"
        rate_text = ""
        if isinstance(rate, (int, float)) and math.isfinite(rate):
            rate_text = f"{rate:.0f}" if rate >= 10 else f"{rate:.2g}"
        self.rows.append((name, rate_text, peak, result))
        print(f"  {name}: {result} ({time.monotonic() - t0:.0f} s)", flush=True)

    def print(self, device: str) -> None:
        widths = [max(len(r[i]) for r in self.rows + [("path", "images/s", "peak GiB", "result")]) for i in range(4)]
        print(f"\nflarelens GPU check on {device} ({time.monotonic() - self.began:.0f} s)")
        for row in [("path", "images/s", "peak GiB", "result")] + self.rows:
            cells = (cell.ljust(w) if i in (0, 3) else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths)))
            print("  ".join(cells))


def cli(*argv: str) -> str:
    """Run ``flarelens ARGV`` in this process; its standard output, or an error with its message."""
    from flarelens.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(["--quiet", *argv])
    if rc != 0:
        line = (err.getvalue().strip().splitlines() or [f"exit status {rc}"])[-1]
        raise RuntimeError(line.split(" error: ", 1)[-1])
    return out.getvalue()


def second_epoch_rate(run_dir: Path) -> float:
    import pandas as pd

    history = pd.read_csv(run_dir / "history.csv")
    if not history[["train_loss", "val_loss"]].notna().all().all() or not len(history):
        raise RuntimeError(f"{run_dir}/history.csv has non-finite losses")
    return float(history["train_images_per_s"].iloc[-1])


NCCL_PROBE = textwrap.dedent('''
    import os, sys, torch, torch.distributed as dist
    device = os.environ["GPU_CHECK_DEVICE"]
    if device == "cuda":
        torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
    dist.init_process_group("nccl" if device == "cuda" else "gloo")
    x = torch.full((1024,), float(dist.get_rank() + 1), device=device)
    dist.all_reduce(x)
    gathered = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, {"rank": dist.get_rank()})
    dist.barrier()
    assert float(x[0]) == sum(range(1, dist.get_world_size() + 1)) and gathered[0] == {"rank": 0}
    dist.destroy_process_group()
    from flarelens.cli import main
    sys.exit(main(sys.argv[1:]))
''')


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, help="working directory (default: a temporary one, removed after)")
    parser.add_argument("--n", type=int, default=384, help="synthetic 512² images (default: 384)")
    parser.add_argument("--budget", type=float, default=540, help="start no new path after this many seconds")
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda", help=argparse.SUPPRESS)
    parser.add_argument("--size", type=int, default=512, help=argparse.SUPPRESS)
    parser.add_argument("--models", default="vgg16,alexnet", help=argparse.SUPPRESS)
    args = parser.parse_args()

    cuda = args.device == "cuda"
    device = gpu_or_none() if cuda else "CPU (script check only)"
    if device is None:
        print("gpu_check: no CUDA GPU is visible here: nothing to check (run it on a machine with one GPU)")
        return 0
    import torch

    work = args.work or Path(tempfile.mkdtemp(prefix="gpu_check_"))
    work.mkdir(parents=True, exist_ok=True)
    sys.path.insert(0, str(HERE))
    import bench_data

    table = Table(args.budget, cuda)
    if not (work / "images-512.npy.json").is_file():
        t0 = time.monotonic()
        with contextlib.redirect_stdout(io.StringIO()):
            bench_data.prepare(work, args.n)
        print(f"synthetic data: {args.n} images of 512² and their pack in {time.monotonic() - t0:.0f} s", flush=True)
    labels, folder = str(work / "labels.csv"), str(work / "images")
    pack = str(work / "images-512.npy")
    if args.size != 512:
        pack = str(work / f"images-{args.size}.npy")
        cli("pack", "--labels", labels, "--images", folder, "--size", str(args.size), "--out", pack)
    # The GPU paths are checked here, not epoch selection: keep the last epoch (no inner block).
    common = ["--labels", labels, "--fold", "1", "--image-size", str(args.size), "--epochs", "2", "--batch-size", "64",
              "--device", args.device, "--inner", "0", "--select", "last", "--no-progress"]

    def train(name, model, amp, channels_last, images=pack, compile_=False):
        out = work / "runs" / name.replace(" ", "_").replace(",", "")

        def go():
            cli("train", *common, "--images", images, "--model", model, "--amp", amp, "--channels-last", channels_last,
                "--out", str(out), *(["--compile"] if compile_ else []))
            return second_epoch_rate(out)
        table.run(name, go)
        return out

    print(f"device: {device}; torch {torch.__version__}, CUDA {torch.version.cuda}", flush=True)
    models = args.models.split(",")
    reference = None
    for model in models:
        for amp in ("bf16", "fp16", "off") if cuda else ("off",):
            label = {"off": "fp32"}.get(amp, amp)
            out = train(f"train {model} {label}, channels-last", model, amp, "on")
            reference = reference or out
        if cuda:
            train(f"train {model} bf16, channels-last off", model, "bf16", "off")
            train(f"train {model} bf16, --compile", model, "bf16", "on", compile_=True)
    amp = "bf16" if cuda else "off"
    train(f"train {models[0]} {'bf16' if cuda else 'fp32'}, from the JPEG folder", models[0], amp, "on", images=folder)

    def torchrun():
        out = work / "runs" / "torchrun"
        probe = work / "nccl_probe.py"
        probe.write_text(NCCL_PROBE)
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "1", str(probe),
               "--quiet", "train", *common, "--images", pack, "--model", models[-1], "--amp", amp, "--out", str(out)]
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path), GPU_CHECK_DEVICE=args.device)
        done = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if done.returncode != 0:
            lines = (done.stderr or done.stdout).strip().splitlines()
            ours = [ln.split(" error: ", 1)[-1] for ln in lines if "flarelens" in ln and " error: " in ln]
            raise RuntimeError((ours or [ln for ln in lines if "Error" in ln] or lines or ["failed"])[-1])
        return second_epoch_rate(out)
    table.run(f"torchrun 1 process, {'NCCL' if cuda else 'gloo'} + train {models[-1]} {'bf16' if cuda else 'fp32'}",
              torchrun)

    checkpoint = str((reference or work / "runs" / "missing") / "best.pt")
    predictions = str(work / "predictions.csv")

    def predict():
        t0 = time.monotonic()
        cli("predict", "--checkpoint", checkpoint, "--labels", labels, "--images", pack, "--fold", "1",
            "--device", args.device, "--out", predictions)
        import pandas as pd

        return len(pd.read_csv(predictions)) / (time.monotonic() - t0)
    table.run(f"predict {models[0]} (fold 1, from the pack)", predict)

    def explain():
        t0 = time.monotonic()
        cli("explain", "--checkpoint", checkpoint, "--predictions", predictions, "--images", pack, "--labels", labels,
            "--limit", "16", "--background", "8", "--device", args.device, "--no-overlays",
            "--out", str(work / "explain"))
        return 16 / (time.monotonic() - t0)
    table.run(f"explain {models[0]}, 3 methods (16 images, from the pack)", explain)

    table.print(device)
    if args.work is None:
        import shutil

        shutil.rmtree(work, ignore_errors=True)
    return 1 if any(r[3].startswith("FAIL") for r in table.rows) else 0


if __name__ == "__main__":
    sys.exit(main())
