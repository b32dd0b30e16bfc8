"""Training a full-disk flare model on one fold: CPU, one GPU, or DDP under torchrun.

``train(config) -> history`` trains ``config.model`` on the training rows of fold
``config.fold`` (the other quarters) and validates on the fold's own rows after every
epoch. Into ``config.out`` (RUN_DIR) it writes, on rank 0 only:

* ``history.csv`` — one row per epoch: epoch, lr, train/val loss, TSS, HSS, times;
* ``train.log`` — the configuration and the same per-epoch lines, human-readable;
* ``best.pt`` — the checkpoint of the epoch with the highest validation TSS;
* ``last.pt`` — the checkpoint of the last completed epoch (``resume=True`` continues
  from it and ends with the same weights as a run that was never interrupted).

Checkpoint layout: :mod:`flarelens.checkpoint`.

Defaults follow the original study: plain SGD (lr 1e-4, weight decay 1e-3), batch size
64, the learning rate halved every 5 epochs, the augmentation scheme and class weights of
:mod:`flarelens.data`, the loss the class-weighted mean cross-entropy (the study's
weighted NLL of log-softmax).

Speed: on CUDA, mixed precision (bf16 where the GPU supports it, else fp16 with a gradient
scaler), channels-last tensors, pinned memory and DataLoader workers; on a CPU with native
bf16 instructions (AVX512-BF16/AMX), bf16 autocast and channels-last. Fused optimizer
steps everywhere. Small datasets are decoded once into memory (see
:class:`flarelens.data.MagnetogramDataset`). ``compile=True`` adds ``torch.compile``;
``threads`` sets the CPU threads (on a CPU shared with other jobs, 1 thread avoids the
OpenMP spin-waiting that can make 2 threads many times slower).

Distributed: launched by ``torchrun --nproc_per_node N -m flarelens train ...`` (or on
several nodes, see examples/slurm_train.sbatch), every process trains on its shard of each
epoch (a DistributedSampler over the augmented index) and gradients are averaged by DDP
(NCCL on GPUs, gloo on CPUs). ``batch_size`` is the global batch, split over the
processes; the loss is normalised by the global sum of class weights of the batch, so N
processes take the same steps as one. Validation is sharded without padding and its loss
and confusion counts are summed over processes: TSS and HSS are over the whole validation
set, each instance counted once.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.utils.data import DataLoader, DistributedSampler

from flarelens.checkpoint import json_safe, load_checkpoint, rng_state, save_checkpoint, set_rng_state
from flarelens.data import AUGMENT_SCHEMES, CLASS_WEIGHT_SCHEMES, MagnetogramDataset, class_weights, to_unit
from flarelens.errors import FlareLensError
from flarelens.fileio import write_csv
from flarelens.labels import read_labels, train_val
from flarelens.metrics import THRESHOLD, Confusion
from flarelens.models import DEFAULT_INIT, INITS, build_model, model_names

OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("step", "plateau", "none")
AMP_MODES = ("auto", "bf16", "fp16", "off")

HISTORY_COLUMNS = [
    "epoch", "lr", "train_loss", "train_tss", "train_hss", "val_loss", "val_tss", "val_hss",
    "train_time_s", "val_time_s", "train_images_per_s",
]

#: Settings that may change between a run and its resumption (the rest must match).
RESUMABLE_CHANGES = {"epochs", "labels", "images", "out", "resume", "device", "workers", "threads", "cache", "compile", "progress"}


@dataclass
class TrainConfig:
    """Everything a training run depends on (stored in its checkpoints).

    Units: ``image_size`` px (square), ``lr`` per step, ``weight_decay`` L2 factor,
    ``step_size`` and ``patience`` in epochs.
    """

    labels: str = "labels.csv"
    images: str = "images"
    fold: int = 1
    model: str = "vgg16"
    image_size: int = 512
    epochs: int = 50
    batch_size: int = 64
    lr: float = 1e-4
    weight_decay: float = 1e-3
    optimizer: str = "sgd"
    momentum: float = 0.0
    schedule: str = "step"
    step_size: int = 5
    factor: float = 0.5
    patience: int = 4
    augment: str = "study"
    class_weight: str = "study"
    init: str = DEFAULT_INIT
    pretrained: bool = False
    weights: str | None = None
    gap: str | None = None
    threshold: float = THRESHOLD
    seed: int = 0
    out: str = "run"
    resume: bool = False
    device: str = "auto"
    amp: str = "auto"
    channels_last: str = "auto"
    compile: bool = False
    workers: int | None = None
    threads: int | None = None
    cache: str = "auto"
    progress: bool = True

    def to_dict(self) -> dict:
        return json_safe(dataclasses.asdict(self))


@dataclass
class _Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    initialized_here: bool = False

    @property
    def main(self) -> bool:
        return self.rank == 0


def _make_config(config, overrides) -> TrainConfig:
    if config is None:
        config = TrainConfig()
    elif isinstance(config, dict):
        known = {f.name for f in dataclasses.fields(TrainConfig)}
        unknown = set(config) - known
        if unknown:
            raise FlareLensError(f"unknown training setting(s): {', '.join(sorted(unknown))}")
        config = TrainConfig(**config)
    if overrides:
        config = dataclasses.replace(config, **overrides)
    _check_config(config)
    return config


def _check_config(c: TrainConfig) -> None:
    def choice(name, value, options):
        if value not in options:
            raise FlareLensError(f"--{name.replace('_', '-')} must be one of {', '.join(map(str, options))}, got {value!r}")

    choice("model", c.model, model_names())
    choice("optimizer", c.optimizer, OPTIMIZERS)
    choice("schedule", c.schedule, SCHEDULES)
    choice("augment", c.augment, AUGMENT_SCHEMES)
    choice("class_weight", c.class_weight, CLASS_WEIGHT_SCHEMES)
    choice("init", c.init, INITS)
    choice("amp", c.amp, AMP_MODES)
    choice("channels_last", c.channels_last, ("auto", "on", "off"))
    choice("cache", c.cache, ("auto", "on", "off"))
    choice("fold", c.fold, (1, 2, 3, 4))
    if c.threads is not None and c.threads < 1:
        raise FlareLensError(f"--threads must be at least 1, got {c.threads}")
    for name in ("epochs", "batch_size", "image_size", "step_size"):
        if int(getattr(c, name)) < 1:
            raise FlareLensError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(c, name)}")
    if not c.lr > 0:
        raise FlareLensError(f"--lr must be positive, got {c.lr}")
    if not 0 < c.factor < 1:
        raise FlareLensError(f"--factor must lie in (0, 1), got {c.factor}")
    if c.pretrained and c.weights:
        raise FlareLensError("give either --pretrained or --weights FILE, not both")


# --------------------------------------------------------------------------- set-up


def _setup_distributed(device_pref: str) -> _Dist:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return _Dist()
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if dist.is_initialized():
        return _Dist(dist.get_rank(), dist.get_world_size(), local_rank, False)
    use_cuda = device_pref.startswith("cuda") or (device_pref == "auto" and torch.cuda.is_available())
    if use_cuda:
        torch.cuda.set_device(local_rank)
    dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return _Dist(dist.get_rank(), dist.get_world_size(), local_rank, True)


def _resolve_device(pref: str, d: _Dist) -> torch.device:
    if pref == "auto":
        pref = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(pref)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise FlareLensError("--device cuda: no CUDA GPU is visible (use --device cpu)")
        if d.world > 1 or device.index is None:
            device = torch.device("cuda", d.local_rank if d.world > 1 else torch.cuda.current_device())
    return device


def cpu_has_bf16() -> bool:
    """Whether this CPU computes bf16 natively (AVX512-BF16 or AMX), making bf16 autocast pay."""
    try:
        caps = torch.cpu.get_capabilities()
        return bool(caps.get("avx512_bf16") or caps.get("amx_bf16"))
    except Exception:  # noqa: BLE001 - older torch, unusual platforms
        return False


def resolve_amp(mode: str, device: torch.device) -> str:
    """The mixed precision actually used: ``"bf16"``, ``"fp16"`` or ``"off"``."""
    if mode != "auto":
        if mode == "fp16" and device.type == "cpu":
            raise FlareLensError("--amp fp16 needs a GPU; on a CPU use --amp bf16 or off")
        return mode
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if device.type == "cpu" and cpu_has_bf16():
        return "bf16"
    return "off"


def _default_workers(device: torch.device, cached: bool, world: int) -> int:
    cpus = max(1, (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1) // world)
    if device.type == "cuda":
        return min(8, max(1, cpus - 1))
    # On a CPU the model needs every core; decoding in the main process only when it is cheap.
    return 0 if cached or cpus <= 2 else min(4, cpus // 2)


def _make_optimizer(c: TrainConfig, params, device: torch.device):
    cls, kwargs = {
        "sgd": (torch.optim.SGD, dict(momentum=c.momentum)),
        "adam": (torch.optim.Adam, {}),
        "adamw": (torch.optim.AdamW, {}),
    }[c.optimizer]
    params = list(params)
    try:
        # One fused kernel over all parameters: 1.2x (SGD) to 4x (Adam) faster steps on a
        # CPU for the 57M-134M parameters of AlexNet/VGG16, and standard on GPUs.
        return cls(params, lr=c.lr, weight_decay=c.weight_decay, fused=True, **kwargs)
    except (RuntimeError, TypeError, ValueError):
        return cls(params, lr=c.lr, weight_decay=c.weight_decay, **kwargs)


def _make_scheduler(c: TrainConfig, optimizer):
    if c.schedule == "step":
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=c.step_size, gamma=c.factor)
    if c.schedule == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="min", factor=c.factor, patience=c.patience)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda epoch: 1.0)


# --------------------------------------------------------------------------- run directory


class _RunWriter:
    """history.csv, train.log and checkpoints of a run directory (rank 0 only)."""

    def __init__(self, out: Path, enabled: bool):
        self.out = out
        self.enabled = enabled
        if enabled:
            out.mkdir(parents=True, exist_ok=True)

    def log(self, line: str, echo: bool = True) -> None:
        if not self.enabled:
            return
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        with open(self.out / "train.log", "a", encoding="utf-8") as fh:
            fh.write(f"{stamp} {line}\n")
        if echo:
            from tqdm.auto import tqdm

            tqdm.write(line)

    def history(self, rows: list[dict]) -> None:
        if self.enabled:
            write_csv(pd.DataFrame(rows, columns=HISTORY_COLUMNS), self.out / "history.csv")


def _format_row(row: dict, epochs: int) -> str:
    return (
        f"epoch {row['epoch']}/{epochs}  lr {row['lr']:.3g}  "
        f"train loss {row['train_loss']:.4f} TSS {row['train_tss']:.3f} HSS {row['train_hss']:.3f}  |  "
        f"val loss {row['val_loss']:.4f} TSS {row['val_tss']:.3f} HSS {row['val_hss']:.3f}  "
        f"({row['train_time_s']:.1f}+{row['val_time_s']:.1f} s, {row['train_images_per_s']:.1f} img/s)"
    )


# --------------------------------------------------------------------------- the loop


def _all_reduce(values: torch.Tensor, d: _Dist) -> torch.Tensor:
    if d.world > 1:
        dist.all_reduce(values)
    return values


def _confusion_counts(prob: torch.Tensor, target: torch.Tensor, threshold: float) -> torch.Tensor:
    forecast = prob >= threshold
    positive = target == 1
    return torch.stack([
        (forecast & positive).sum(), (forecast & ~positive).sum(),
        (~forecast & ~positive).sum(), (~forecast & positive).sum(),
    ]).double()


def _scores(counts: torch.Tensor) -> tuple[float, float]:
    tp, fp, tn, fn = (int(round(float(v))) for v in counts.tolist())
    c = Confusion(tp=tp, fp=fp, tn=tn, fn=fn)
    return c.tss, c.hss


class _Step:
    """Moving a batch to the device and computing the weighted loss, shared by train and validation."""

    def __init__(self, model, device, amp: str, channels_last: bool, weights: torch.Tensor):
        self.model = model
        self.device = device
        self.channels_last = channels_last
        self.weights = weights.to(device)
        dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(amp)
        self.autocast = (
            (lambda: torch.autocast(device_type=device.type, dtype=dtype)) if dtype is not None else contextlib.nullcontext
        )

    def __call__(self, x: torch.Tensor, y: torch.Tensor, mixed: bool = True):
        x = to_unit(x.to(self.device, non_blocking=True))
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        y = y.to(self.device, non_blocking=True)
        with self.autocast() if mixed else contextlib.nullcontext():
            logits = self.model(x)
        logits = logits.float()
        w = self.weights[y]
        weighted = w * F.cross_entropy(logits, y, reduction="none")
        prob = torch.softmax(logits.detach(), dim=1)[:, 1]
        return weighted, w, prob, y


def train(config: TrainConfig | dict | None = None, **overrides) -> pd.DataFrame:
    """Train a model on one fold; return the per-epoch history (the rows of history.csv).

    ``config`` is a :class:`TrainConfig` (or a dict of its fields); keyword arguments
    override single fields, e.g. ``train(labels="labels.csv", images="img", fold=2,
    model="alexnet", image_size=128, epochs=5, out="runs/f2")``. Under ``torchrun`` each
    process calls this and only rank 0 writes.
    """
    cfg = _make_config(config, overrides)
    threads = torch.get_num_threads()
    if cfg.threads is not None:
        torch.set_num_threads(cfg.threads)
    d = _setup_distributed(cfg.device)
    try:
        return _train(cfg, d)
    finally:
        if d.initialized_here and dist.is_initialized():
            dist.destroy_process_group()
        torch.set_num_threads(threads)


def _train(cfg: TrainConfig, d: _Dist) -> pd.DataFrame:
    from tqdm.auto import tqdm

    out = Path(cfg.out)
    writer = _RunWriter(out, d.main)
    last_path, best_path = out / "last.pt", out / "best.pt"
    resume_state = None
    if cfg.resume and last_path.is_file():
        resume_state = load_checkpoint(last_path)
        _check_resumable(resume_state["config"], cfg.to_dict(), last_path)
    elif not cfg.resume and last_path.is_file():
        raise FlareLensError(f"{out} already holds a training run ({last_path}); pass --resume to continue it or choose another --out")

    device = _resolve_device(cfg.device, d)
    if cfg.batch_size % d.world:
        raise FlareLensError(f"--batch-size {cfg.batch_size} must be a multiple of the number of processes ({d.world})")
    local_batch = cfg.batch_size // d.world
    amp = resolve_amp(cfg.amp, device)
    channels_last = cfg.channels_last == "on" or (cfg.channels_last == "auto" and (device.type == "cuda" or amp == "bf16"))
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True

    # Data: the training rows are the other quarters, augmented; validation is fold k as is.
    labels = read_labels(cfg.labels)
    train_rows, val_rows = train_val(labels, cfg.fold, gap=cfg.gap)
    for what, rows in (("training", train_rows), ("validation", val_rows)):
        if len(rows) == 0:
            raise FlareLensError(f"{cfg.labels}: no {what} rows for fold {cfg.fold} (fold {cfg.fold} validates on its quarter, trains on the others)")
    cache = {"on": True, "off": False}.get(cfg.cache, "auto")
    train_set = MagnetogramDataset(train_rows, cfg.images, cfg.image_size, augment=cfg.augment, seed=cfg.seed,
                                   cache=cache, as_uint8=True, progress=d.main and cfg.progress, device=device)
    val_set = MagnetogramDataset(val_rows, cfg.images, cfg.image_size, augment="none", seed=cfg.seed,
                                 cache=cache, as_uint8=True, progress=d.main and cfg.progress, device=device)
    weights = class_weights(train_rows["target"], cfg.class_weight, cfg.augment)

    workers = cfg.workers if cfg.workers is not None else _default_workers(device, train_set.cached, d.world)
    # Workers are not persistent: each epoch's workers must see that epoch's augmentation
    # choices (set_epoch on the dataset), and forking them again costs little.
    loader_args = dict(num_workers=workers, pin_memory=device.type == "cuda")
    train_sampler = DistributedSampler(train_set, num_replicas=d.world, rank=d.rank, shuffle=True, seed=cfg.seed)
    train_loader = DataLoader(train_set, batch_size=local_batch, sampler=train_sampler, **loader_args)
    # Validation: every world-th instance per process, no padding, so each counts once.
    val_loader = DataLoader(val_set, batch_size=local_batch, sampler=list(range(d.rank, len(val_set), d.world)), **loader_args)

    # Model, optimizer, schedule. The same seed on every rank gives the same initial weights.
    torch.manual_seed(cfg.seed)
    model = build_model(cfg.model, image_size=cfg.image_size, init=cfg.init, weights=cfg.weights, pretrained=cfg.pretrained)
    model.to(device)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    optimizer = _make_optimizer(cfg, model.parameters(), device)
    scheduler = _make_scheduler(cfg, optimizer)
    scaler = torch.amp.GradScaler(device.type, enabled=amp == "fp16")
    history: list[dict] = []
    best = {"epoch": 0, "val_tss": -math.inf}
    start_epoch = 0
    if d.world > 1:
        torch.manual_seed(cfg.seed + d.rank)  # distinct dropout masks per process
    if resume_state is not None:
        model.load_state_dict(resume_state["model"])
        optimizer.load_state_dict(resume_state["optimizer"])
        scheduler.load_state_dict(resume_state["scheduler"])
        if resume_state.get("scaler"):
            scaler.load_state_dict(resume_state["scaler"])
        history = [dict(r) for r in resume_state["history"]]
        best = dict(resume_state["best"]) or best
        start_epoch = int(resume_state["epoch"])
        ranks = resume_state.get("rng_ranks") or []
        set_rng_state(ranks[d.rank] if len(ranks) == d.world else resume_state["rng"])
        writer.history(history)

    net = model
    if d.world > 1:
        net = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    if cfg.compile:
        net = torch.compile(net)
    step = _Step(net, device, amp, channels_last, weights)

    if resume_state is not None:
        writer.log(f"resumed from {last_path} after epoch {start_epoch}")
    else:
        writer.log(f"flarelens train: {cfg.to_dict()}", echo=False)
    writer.log(
        f"fold {cfg.fold}: {len(train_rows)} training rows ({int(train_rows['target'].sum())} flaring) -> "
        f"{len(train_set)} augmented instances per epoch; {len(val_rows)} validation rows "
        f"({int(val_rows['target'].sum())} flaring); class weights NF {weights[0]:.3f} FL {weights[1]:.3f}; "
        f"{cfg.model} at {cfg.image_size} px on {device} x{d.world}, amp {amp}, workers {workers}",
        echo=d.main and cfg.progress,
    )

    for epoch in range(start_epoch, cfg.epochs):
        train_set.set_epoch(epoch)
        train_sampler.set_epoch(epoch)
        lr = optimizer.param_groups[0]["lr"]

        net.train()
        t0 = time.perf_counter()
        sums = torch.zeros(2, dtype=torch.float64, device=device)  # weighted loss, weight
        counts = torch.zeros(4, dtype=torch.float64, device=device)
        images = 0
        bar = tqdm(train_loader, desc=f"epoch {epoch + 1}/{cfg.epochs}", unit="batch", leave=False,
                   disable=not (d.main and cfg.progress))
        for batch in bar:
            x, y = train_set.finish_batch(batch)  # on CUDA: gathered and augmented on the GPU
            weighted, w, prob, y = step(x, y)
            # Normalise by the whole (global) batch's weight so that DDP's gradient average
            # over N processes equals one process's class-weighted mean loss.
            batch_weight = _all_reduce(w.sum().detach().double(), d)
            loss = weighted.sum() / batch_weight.float() * d.world
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            sums += torch.stack([weighted.detach().sum().double(), w.sum().double()])
            counts += _confusion_counts(prob, y, cfg.threshold)
            images += len(y)
        _all_reduce(sums, d)
        _all_reduce(counts, d)
        train_time = time.perf_counter() - t0
        train_loss = float(sums[0] / sums[1])
        train_tss, train_hss = _scores(counts)
        total_images = int(_all_reduce(torch.tensor([images], dtype=torch.float64, device=device), d).item())

        net.eval()
        t1 = time.perf_counter()
        sums.zero_()
        counts.zero_()
        with torch.no_grad():
            for batch in val_loader:
                x, y = val_set.finish_batch(batch)
                # Full precision, as `flarelens predict` computes: history.csv's validation
                # scores are those of the predictions of the saved weights.
                weighted, w, prob, y = step(x, y, mixed=False)
                sums += torch.stack([weighted.sum().double(), w.sum().double()])
                counts += _confusion_counts(prob, y, cfg.threshold)
        _all_reduce(sums, d)
        _all_reduce(counts, d)
        val_time = time.perf_counter() - t1
        val_loss = float(sums[0] / sums[1]) if float(sums[1]) > 0 else float("nan")
        val_tss, val_hss = _scores(counts)

        if cfg.schedule == "plateau":
            scheduler.step(val_loss)
        else:
            scheduler.step()

        row = {
            "epoch": epoch + 1, "lr": lr,
            "train_loss": train_loss, "train_tss": train_tss, "train_hss": train_hss,
            "val_loss": val_loss, "val_tss": val_tss, "val_hss": val_hss,
            "train_time_s": train_time, "val_time_s": val_time,
            "train_images_per_s": total_images / train_time if train_time > 0 else float("nan"),
        }
        history.append(row)
        improved = val_tss > best["val_tss"]
        if improved:
            best = {"epoch": epoch + 1, "val_tss": val_tss}
        rng = rng_state()
        rng_ranks = _gather_rng(rng, d)
        if d.main:
            writer.history(history)
            writer.log(_format_row(row, cfg.epochs) + ("  * best" if improved else ""), echo=cfg.progress)
            ckpt = dict(model=model, optimizer=optimizer, scheduler=scheduler, scaler=scaler, epoch=epoch + 1,
                        config=cfg.to_dict(), history=history, best=best, rng=rng, rng_ranks=rng_ranks)
            if improved:
                save_checkpoint(best_path, **ckpt)
            save_checkpoint(last_path, **ckpt)
    if d.world > 1:
        dist.barrier()
    return pd.DataFrame(history, columns=HISTORY_COLUMNS)


def _gather_rng(rng: dict, d: _Dist):
    """Every process's generator states on rank 0 (DDP), so a resume restores each exactly."""
    if d.world <= 1:
        return None
    gathered = [None] * d.world if d.main else None
    dist.gather_object(rng, gathered, dst=0)
    return gathered


def _check_resumable(saved: dict, now: dict, path: Path) -> None:
    diffs = [
        f"--{k.replace('_', '-')} {saved.get(k)!r} (now {now.get(k)!r})"
        for k in sorted(set(saved) | set(now))
        if k not in RESUMABLE_CHANGES and saved.get(k) != now.get(k)
    ]
    if diffs:
        raise FlareLensError(
            f"{path} was trained with different settings: {'; '.join(diffs)}. "
            "Resume with the same settings or choose another --out"
        )
