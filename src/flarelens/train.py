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
import logging
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, DistributedSampler

from flarelens import distributed
from flarelens.checkpoint import json_safe, load_checkpoint, rng_state, save_checkpoint, set_rng_state
from flarelens.data import AUGMENT_SCHEMES, CLASS_WEIGHT_SCHEMES, MagnetogramDataset, class_weights, to_unit
from flarelens.errors import FlareLensError
from flarelens.fileio import write_csv
from flarelens.labels import read_labels, train_val
from flarelens.metrics import THRESHOLD, Confusion
from flarelens.models import DEFAULT_INIT, INITS, build_model, model_names
from flarelens.progress import bar
from flarelens.rundir import RunDir, disk_errors

logger = logging.getLogger(__name__)

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


def make_config(config: TrainConfig | dict | None = None, overrides: dict | None = None) -> TrainConfig:
    """A checked :class:`TrainConfig` from a config, a dict of its fields and/or overrides.

    Every setting is validated here, before any work: a bad one raises one
    :class:`FlareLensError` line.
    """
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
    check_config(config)
    return config


def check_config(c: TrainConfig) -> None:
    """Raise one :class:`FlareLensError` line for the first invalid setting of ``c``."""
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


# --------------------------------------------------------------------------- one epoch


class EpochCounts:
    """Summable counts of one pass over a set: confusion counts, loss sum, weight sum, instances.

    Every process adds its own batches; :meth:`all_reduce` sums them over the processes,
    after which the loss (class-weighted mean) and the scores cover the whole set, each
    instance counted once.
    """

    FIELDS = ("tp", "fp", "tn", "fn", "loss_sum", "weight_sum", "n")

    def __init__(self, device: torch.device | str = "cpu"):
        self.values = torch.zeros(len(self.FIELDS), dtype=torch.float64, device=device)

    def add(self, weighted: torch.Tensor, weight: torch.Tensor, prob: torch.Tensor, target: torch.Tensor,
            threshold: float) -> None:
        """Add a batch: per-instance weighted losses and weights, flare probabilities, targets (0/1)."""
        forecast = prob >= threshold
        positive = target == 1
        self.values[:4] += torch.stack([
            (forecast & positive).sum(), (forecast & ~positive).sum(),
            (~forecast & ~positive).sum(), (~forecast & positive).sum(),
        ]).double()
        self.values[4] += weighted.detach().sum().double()
        self.values[5] += weight.detach().sum().double()
        self.values[6] += len(target)

    def all_reduce(self, procs: distributed.Processes) -> "EpochCounts":
        """Sum over the processes (in place)."""
        distributed.all_reduce(self.values, procs)
        return self

    def __getitem__(self, name: str) -> float:
        return float(self.values[self.FIELDS.index(name)])

    @property
    def loss(self) -> float:
        """Class-weighted mean cross-entropy (nan for an empty set)."""
        return self["loss_sum"] / self["weight_sum"] if self["weight_sum"] > 0 else float("nan")

    @property
    def confusion(self) -> Confusion:
        tp, fp, tn, fn = (int(round(self[k])) for k in ("tp", "fp", "tn", "fn"))
        return Confusion(tp=tp, fp=fp, tn=tn, fn=fn)

    @property
    def positives(self) -> int:
        return int(round(self["tp"] + self["fn"]))

    @property
    def tss(self) -> float:
        return self.confusion.tss

    @property
    def hss(self) -> float:
        return self.confusion.hss


class BatchStep:
    """Moving a batch to the device and computing the class-weighted loss (training and validation)."""

    def __init__(self, model, device: torch.device, amp: str, channels_last: bool, weights: torch.Tensor):
        self.model = model
        self.device = device
        self.channels_last = channels_last
        self.weights = weights.to(device)
        dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(amp)
        self.autocast = (
            (lambda: torch.autocast(device_type=device.type, dtype=dtype)) if dtype is not None else contextlib.nullcontext
        )

    def __call__(self, x: torch.Tensor, y: torch.Tensor, mixed: bool = True):
        """(per-instance weighted loss, per-instance weight, flare probability, target) of a batch."""
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


def train_one_epoch(net, loader, step: BatchStep, optimizer, scaler, procs: distributed.Processes,
                    threshold: float = THRESHOLD, progress: bool = False, desc: str = "") -> tuple[EpochCounts, float]:
    """One pass of optimisation over ``loader``; the epoch's counts (summed over processes) and seconds."""
    net.train()
    t0 = time.perf_counter()
    counts = EpochCounts(step.device)
    for x, y in bar(loader, progress=progress and procs.main, desc=desc, unit="batch", leave=False):
        weighted, w, prob, y = step(x, y)
        # Normalise by the whole (global) batch's weight so that DDP's gradient average
        # over N processes equals one process's class-weighted mean loss.
        batch_weight = distributed.all_reduce(w.sum().detach().double(), procs)
        loss = weighted.sum() / batch_weight.float() * procs.world
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        counts.add(weighted, w, prob, y, threshold)
    counts.all_reduce(procs)
    return counts, time.perf_counter() - t0


def evaluate_epoch(net, loader, step: BatchStep, procs: distributed.Processes,
                   threshold: float = THRESHOLD) -> tuple[EpochCounts, float]:
    """Loss and confusion counts of the model on ``loader`` (summed over processes) and seconds.

    Full precision, as `flarelens predict` computes: history.csv's validation scores are
    those of the predictions of the saved weights.
    """
    net.eval()
    t0 = time.perf_counter()
    counts = EpochCounts(step.device)
    with torch.no_grad():
        for x, y in loader:
            weighted, w, prob, y = step(x, y, mixed=False)
            counts.add(weighted, w, prob, y, threshold)
    counts.all_reduce(procs)
    return counts, time.perf_counter() - t0


def _format_row(row: dict, epochs: int) -> str:
    return (
        f"epoch {row['epoch']}/{epochs}  lr {row['lr']:.3g}  "
        f"train loss {row['train_loss']:.4f} TSS {row['train_tss']:.3f} HSS {row['train_hss']:.3f}  |  "
        f"val loss {row['val_loss']:.4f} TSS {row['val_tss']:.3f} HSS {row['val_hss']:.3f}  "
        f"({row['train_time_s']:.1f}+{row['val_time_s']:.1f} s, {row['train_images_per_s']:.1f} img/s)"
    )


# --------------------------------------------------------------------------- the run


def train(config: TrainConfig | dict | None = None, **overrides) -> pd.DataFrame:
    """Train a model on one fold; return the per-epoch history (the rows of history.csv).

    ``config`` is a :class:`TrainConfig` (or a dict of its fields); keyword arguments
    override single fields, e.g. ``train(labels="labels.csv", images="img", fold=2,
    model="alexnet", image_size=128, epochs=5, out="runs/f2")``. Under ``torchrun`` each
    process calls this and only rank 0 writes.
    """
    cfg = make_config(config, overrides)
    threads = torch.get_num_threads()
    if cfg.threads is not None:
        torch.set_num_threads(cfg.threads)
    try:
        with distributed.process_group(cfg.device) as procs:
            return _run(cfg, procs)
    finally:
        torch.set_num_threads(threads)


@contextlib.contextmanager
def _log_file(path: Path, enabled: bool):
    """Log the ``flarelens`` messages of the run into ``path`` (train.log).

    The file gets INFO lines even when the terminal is quieter (``--quiet``, or a notebook
    where logging is not configured): the logger passes INFO for the run's duration and the
    handlers already there keep their previous threshold.
    """
    if not enabled:
        yield
        return
    from flarelens import log

    root = logging.getLogger(log.ROOT)
    previous = root.level
    effective = root.getEffectiveLevel()
    raised = []
    if effective > logging.INFO:
        for handler in root.handlers:
            if handler.level < effective:
                raised.append((handler, handler.level))
                handler.setLevel(effective)
        root.setLevel(logging.INFO)
    handler = log.add_file(path)
    try:
        yield
    finally:
        root.removeHandler(handler)
        handler.close()
        root.setLevel(previous)
        for h, level in raised:
            h.setLevel(level)


def _run(cfg: TrainConfig, procs: distributed.Processes) -> pd.DataFrame:
    run = RunDir(cfg.out)
    resume_state = None
    if cfg.resume and run.last.is_file():
        resume_state = load_checkpoint(run.last)
        _check_resumable(resume_state["config"], cfg.to_dict(), run.last)
    elif not cfg.resume and run.last.is_file():
        raise FlareLensError(f"{run.path} already holds a training run ({run.last}); pass --resume to continue it or choose another --out")
    if procs.main:
        run.create()
    with _log_file(run.log, procs.main):
        return _train(cfg, procs, run, resume_state)


def _train(cfg: TrainConfig, procs: distributed.Processes, run: RunDir, resume_state: dict | None) -> pd.DataFrame:
    device = distributed.resolve_device(cfg.device, procs)
    if cfg.batch_size % procs.world:
        raise FlareLensError(f"--batch-size {cfg.batch_size} must be a multiple of the number of processes ({procs.world})")
    local_batch = cfg.batch_size // procs.world
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
    show = procs.main and cfg.progress
    train_set = MagnetogramDataset(train_rows, cfg.images, cfg.image_size, augment=cfg.augment, seed=cfg.seed,
                                   cache=cache, as_uint8=True, progress=show)
    val_set = MagnetogramDataset(val_rows, cfg.images, cfg.image_size, augment="none", seed=cfg.seed,
                                 cache=cache, as_uint8=True, progress=show)
    weights = class_weights(train_rows["target"], cfg.class_weight, cfg.augment)

    workers = cfg.workers if cfg.workers is not None else _default_workers(device, train_set._cache is not None, procs.world)
    # Workers are not persistent: each epoch's workers must see that epoch's augmentation
    # choices (set_epoch on the dataset), and forking them again costs little.
    loader_args = dict(num_workers=workers, pin_memory=device.type == "cuda")
    train_sampler = DistributedSampler(train_set, num_replicas=procs.world, rank=procs.rank, shuffle=True, seed=cfg.seed)
    train_loader = DataLoader(train_set, batch_size=local_batch, sampler=train_sampler, **loader_args)
    # Validation: every world-th instance per process, no padding, so each counts once.
    val_loader = DataLoader(val_set, batch_size=local_batch, sampler=list(range(procs.rank, len(val_set), procs.world)),
                            **loader_args)

    # Model, optimizer, schedule. The same seed on every rank gives the same initial weights.
    model = initial_model(cfg)
    model.to(device)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    optimizer = _make_optimizer(cfg, model.parameters(), device)
    scheduler = _make_scheduler(cfg, optimizer)
    scaler = torch.amp.GradScaler(device.type, enabled=amp == "fp16")
    history: list[dict] = []
    best = {"epoch": 0, "val_tss": -math.inf}
    start_epoch = 0
    if procs.world > 1:
        torch.manual_seed(cfg.seed + procs.rank)  # distinct dropout masks per process
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
        set_rng_state(ranks[procs.rank] if len(ranks) == procs.world else resume_state["rng"])
        if procs.main:
            _write_history(run, history)

    net = model
    if procs.world > 1:
        net = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    if cfg.compile:
        net = torch.compile(net)
    step = BatchStep(net, device, amp, channels_last, weights)

    if procs.main:
        run.write_config(cfg.to_dict())
        if resume_state is not None:
            logger.info("resumed from %s after epoch %d", run.last, start_epoch)
        logger.info(
            f"fold {cfg.fold}: {len(train_rows)} training rows ({int(train_rows['target'].sum())} flaring) -> "
            f"{len(train_set)} augmented instances per epoch; {len(val_rows)} validation rows "
            f"({int(val_rows['target'].sum())} flaring); class weights NF {weights[0]:.3f} FL {weights[1]:.3f}; "
            f"{cfg.model} at {cfg.image_size} px on {device} x{procs.world}, amp {amp}, workers {workers}"
        )

    for epoch in range(start_epoch, cfg.epochs):
        train_set.set_epoch(epoch)
        train_sampler.set_epoch(epoch)
        lr = optimizer.param_groups[0]["lr"]
        trained, train_time = train_one_epoch(net, train_loader, step, optimizer, scaler, procs, cfg.threshold,
                                              progress=cfg.progress, desc=f"epoch {epoch + 1}/{cfg.epochs}")
        validated, val_time = evaluate_epoch(net, val_loader, step, procs, cfg.threshold)

        if cfg.schedule == "plateau":
            scheduler.step(validated.loss)
        else:
            scheduler.step()

        row = {
            "epoch": epoch + 1, "lr": lr,
            "train_loss": trained.loss, "train_tss": trained.tss, "train_hss": trained.hss,
            "val_loss": validated.loss, "val_tss": validated.tss, "val_hss": validated.hss,
            "train_time_s": train_time, "val_time_s": val_time,
            "train_images_per_s": trained["n"] / train_time if train_time > 0 else float("nan"),
        }
        history.append(row)
        improved = row["val_tss"] > best["val_tss"]
        if improved:
            best = {"epoch": epoch + 1, "val_tss": row["val_tss"]}
        rng = rng_state()
        rng_ranks = distributed.gather_object(rng, procs)
        if procs.main:
            _write_history(run, history)
            logger.info(_format_row(row, cfg.epochs) + ("  * best" if improved else ""))
            ckpt = dict(model=model, optimizer=optimizer, scheduler=scheduler, scaler=scaler, epoch=epoch + 1,
                        config=cfg.to_dict(), history=history, best=best, rng=rng, rng_ranks=rng_ranks)
            if improved:
                _save_checkpoint(run.best, **ckpt)
            _save_checkpoint(run.last, **ckpt)
    distributed.barrier(procs)
    return pd.DataFrame(history, columns=HISTORY_COLUMNS)


def initial_model(cfg: TrainConfig):
    """The model a run with ``cfg`` starts from (seeded with ``cfg.seed``, backbone weights loaded)."""
    torch.manual_seed(cfg.seed)
    return build_model(cfg.model, image_size=cfg.image_size, init=cfg.init, weights=cfg.weights, pretrained=cfg.pretrained)


def _write_history(run: RunDir, history: list[dict]) -> None:
    with disk_errors(run.history):
        write_csv(pd.DataFrame(history, columns=HISTORY_COLUMNS), run.history)


def _save_checkpoint(path: Path, **state) -> None:
    with disk_errors(path):
        save_checkpoint(path, **state)


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
