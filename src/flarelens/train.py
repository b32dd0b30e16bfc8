"""Training a full-disk flare model on one fold: CPU, one GPU, or DDP under torchrun.

``train(config) -> history`` trains ``config.model`` for fold ``config.fold``. The rows of
the labels table get the roles of :func:`flarelens.folds.row_roles`: the model learns from
the *train* rows of the other three quarters, chooses its epoch on the *inner* validation
block carved out of them (the last 10 % of every training quarter, purged of training rows
within one label window), and is only *reported* on the held-out quarter k. Into
``config.out`` (a run directory, :mod:`flarelens.rundir`) rank 0 writes:

* ``config.json`` — the settings and the run's facts (class weights, row counts, base rate);
* ``history.csv`` — one row per epoch: epoch, lr, loss/TSS/HSS of the training pass, the
  inner block and the held-out fold (``val_*``), times;
* ``train.log`` — the same per-epoch lines and the set-up, through :mod:`logging`;
* ``best.pt`` — the selected epoch: highest ``inner_tss`` (``select="best"``) or the last
  (``select="last"``, the study's choice);
* ``last.pt`` — the last completed epoch (``resume=True`` continues from it and ends with
  the same weights as a run that was never interrupted).

A lock (``train.lock``) refuses a second training into the same directory while one runs.
A loss that is not finite stops the run with an error, keeping the last good checkpoint.
Checkpoint layout: :mod:`flarelens.checkpoint`.

Defaults follow the original study's optimisation — plain SGD (lr 1e-4, weight decay 1e-3),
batch size 64, epoch e at ``lr * 0.5 ** (e // 5)``, the augmentation scheme of
:mod:`flarelens.data`, the class weights of :mod:`flarelens.weighting`, the loss the
class-weighted mean cross-entropy (its weighted NLL of log-softmax) — but select the epoch
honestly on the inner block. ``recipe="study"`` (:data:`RECIPES`) is the study exactly:
VGG16 from ImageNet weights, fp32, 50 epochs, no inner block, the last epoch kept.

Speed: on CUDA, mixed precision (bf16 where the GPU supports it, else fp16 with a gradient
scaler), channels-last tensors, pinned memory and DataLoader workers; on a CPU with native
bf16 instructions (AVX512-BF16/AMX), bf16 autocast and channels-last. Fused optimizer
steps everywhere. Small datasets are decoded once into memory (see
:class:`flarelens.data.MagnetogramDataset`). ``compile=True`` adds ``torch.compile``;
``threads`` sets the CPU threads (on a CPU shared with other jobs, 1 thread avoids the
OpenMP spin-waiting that can make 2 threads many times slower).

Distributed (:mod:`flarelens.distributed`): launched by ``torchrun --nproc_per_node N -m
flarelens train ...`` (or on several nodes, see examples/slurm_train.sbatch), every process
trains on its shard of each epoch (a DistributedSampler over the augmented index) and
gradients are averaged by DDP (NCCL on GPUs, gloo on CPUs). ``batch_size`` is the global
batch, split over the processes; the loss is normalised by the global sum of class weights
of the batch, so N processes take the same steps as one. Validation is sharded without
padding and its counts (:class:`EpochCounts`) are summed over processes: TSS and HSS are
over the whole set, each instance counted once.
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

from flarelens import __version__, distributed
from flarelens.checkpoint import json_safe, load_checkpoint, rng_state, save_checkpoint, set_rng_state
from flarelens.data import AUGMENT_SCHEMES, MagnetogramDataset, finish_batch, to_unit
from flarelens.errors import FlareLensError
from flarelens.fileio import atomic_path, write_csv
from flarelens.folds import DEFAULT_INNER, DEFAULT_WINDOW, check_inner, role_counts, row_roles
from flarelens.labels import parse_duration, read_labels
from flarelens.metrics import THRESHOLD, Confusion
from flarelens.models import DEFAULT_INIT, INITS, build_model, model_names
from flarelens.pack import is_pack
from flarelens.settings import differing_keys
from flarelens.progress import bar
from flarelens.progress import enabled as progress_enabled
from flarelens.rundir import RunDir, disk_errors
from flarelens.weighting import CLASS_WEIGHT_SCHEMES, FORMULAS, class_weights

logger = logging.getLogger(__name__)

OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("step", "plateau", "none")
AMP_MODES = ("auto", "bf16", "fp16", "off")
SELECTIONS = ("best", "last")

HISTORY_COLUMNS = [
    "epoch", "lr",
    "train_loss", "train_tss", "train_hss",
    "inner_loss", "inner_tss", "inner_hss",
    "val_loss", "val_tss", "val_hss",
    "train_time_s", "inner_time_s", "val_time_s", "train_images_per_s",
]

#: Settings that may change between a run and its resumption (the rest must match).
RESUMABLE_CHANGES = {"epochs", "labels", "images", "out", "resume", "device", "workers", "threads", "cache", "compile", "progress"}

#: Facts of a run stored beside its settings in config.json and the checkpoints (not settings).
RUN_FACTS = ("class_weights", "train_base_rate", "rows", "recipe_overrides", "flarelens_version", "status",
             "diverged_epoch")


@dataclass
class TrainConfig:
    """Everything a training run depends on (stored in config.json and its checkpoints).

    Units: ``image_size`` px (square), ``lr`` per step, ``weight_decay`` L2 factor,
    ``step_size`` and ``patience`` in epochs, ``inner`` a fraction of each training
    quarter, ``window`` and ``gap`` durations (``"24h"``).
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
    inner: float = DEFAULT_INNER
    window: str = DEFAULT_WINDOW
    select: str = "best"
    recipe: str | None = None
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


#: Named sets of settings. ``study``: the original study's training, exactly (its
#: create_models/train.py): VGG16 from ImageNet weights, batch 64, plain SGD lr 1e-4 weight
#: decay 1e-3, epoch e at 1e-4 * 0.5 ** (e // 5), its augmentation and class weights, fp32,
#: 50 epochs on every row of the other three quarters, the epoch-50 model kept.
RECIPES: dict[str, dict] = {
    "study": dict(
        model="vgg16", pretrained=True, image_size=512, batch_size=64, optimizer="sgd", lr=1e-4, momentum=0.0,
        weight_decay=1e-3, schedule="step", step_size=5, factor=0.5, augment="study", class_weight="study",
        init="kaiming-normal", amp="off", epochs=50, inner=0.0, gap=None, select="last",
    ),
}


def recipe_config(name: str, **explicit) -> TrainConfig:
    """The settings of recipe ``name`` with ``explicit`` settings on top (they win).

    A local ``weights`` file replaces the recipe's download of ImageNet weights; a model
    given explicitly that has no ImageNet weights starts from its own initialisation.
    """
    from flarelens.models import MODELS

    if name not in RECIPES:
        raise FlareLensError(f"--recipe must be one of {', '.join(RECIPES)}, got {name!r}")
    values = dict(RECIPES[name])
    entry = MODELS.get(explicit.get("model", values["model"]))
    if explicit.get("weights") or (entry is not None and entry.imagenet_weights is None):
        values["pretrained"] = False
    values.update(explicit)
    values["recipe"] = name
    return TrainConfig(**values)


def recipe_overrides(cfg: TrainConfig) -> list[str]:
    """The settings of ``cfg`` that differ from its recipe's (empty without a recipe)."""
    if not cfg.recipe:
        return []
    recipe = RECIPES[cfg.recipe]
    changed = [k for k, v in recipe.items() if getattr(cfg, k) != v]
    if cfg.weights and "pretrained" in changed:
        changed.remove("pretrained")  # local ImageNet weights are the recipe's weights
        changed.append("weights")
    return sorted(changed)


def make_config(config: TrainConfig | dict | None = None, overrides: dict | None = None) -> TrainConfig:
    """A checked :class:`TrainConfig` from a config, a dict of its fields and/or overrides.

    A dict (or overrides) naming a ``recipe`` starts from that recipe, the other keys
    overriding it. Every setting is validated here, before any work: a bad one raises one
    :class:`FlareLensError` line.
    """
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    overrides = dict(overrides or {})
    for given in (config if isinstance(config, dict) else {}, overrides):
        unknown = set(given) - known
        if unknown:
            raise FlareLensError(f"unknown training setting(s): {', '.join(sorted(unknown))}")
    if isinstance(config, dict) or (config is None and overrides.get("recipe")):
        values = {**(config or {}), **overrides}
        recipe = values.pop("recipe", None)
        config = recipe_config(recipe, **values) if recipe else TrainConfig(**values)
    else:
        config = config if config is not None else TrainConfig()
        if overrides.get("recipe"):
            raise FlareLensError("a recipe applies to settings given one by one (a dict or keywords), not to a TrainConfig")
        config = dataclasses.replace(config, **overrides)
    check_config(config)
    return config


def check_config(c: TrainConfig) -> None:
    """Raise one :class:`FlareLensError` line for the first invalid setting of ``c``."""
    def flag(name):
        return "--" + name.replace("_", "-")

    def choice(name, value, options):
        if value not in options:
            raise FlareLensError(f"{flag(name)} must be one of {', '.join(map(str, options))}, got {value!r}")

    def number(name, low, strict=False, integer=False, high=None):
        value = getattr(c, name)
        ok_type = isinstance(value, int) and not isinstance(value, bool) if integer else isinstance(value, (int, float)) and not isinstance(value, bool)
        if not ok_type or not math.isfinite(value) or value < low or (strict and value == low) or (high is not None and value >= high):
            bound = f"in ({low:g}, {high:g})" if high is not None else (f"above {low:g}" if strict else f"at least {low:g}")
            raise FlareLensError(f"{flag(name)} must be {'an integer ' if integer else 'a number '}{bound}, got {value!r}")

    choice("model", c.model, model_names())
    choice("optimizer", c.optimizer, OPTIMIZERS)
    choice("schedule", c.schedule, SCHEDULES)
    choice("augment", c.augment, AUGMENT_SCHEMES)
    choice("class_weight", c.class_weight, CLASS_WEIGHT_SCHEMES)
    choice("init", c.init, INITS)
    choice("amp", c.amp, AMP_MODES)
    choice("channels_last", c.channels_last, ("auto", "on", "off"))
    choice("cache", c.cache, ("auto", "on", "off"))
    choice("select", c.select, SELECTIONS)
    choice("fold", c.fold, (1, 2, 3, 4))
    if c.recipe is not None:
        choice("recipe", c.recipe, tuple(RECIPES))
    distributed.check_device(c.device)
    for name in ("epochs", "batch_size", "image_size", "step_size"):
        number(name, 1, integer=True)
    number("patience", 0, integer=True)
    number("seed", 0, integer=True)
    if c.threads is not None:
        number("threads", 1, integer=True)
    if c.workers is not None:
        number("workers", 0, integer=True)
    number("lr", 0, strict=True)
    number("momentum", 0)
    number("weight_decay", 0)
    number("factor", 0, strict=True, high=1)
    number("threshold", 0, strict=True, high=1)
    check_inner(c.inner)
    parse_duration(c.window, "--window")
    if c.gap is not None:
        parse_duration(c.gap, "--gap")
    if c.momentum and c.optimizer != "sgd":
        raise FlareLensError(f"--momentum applies to --optimizer sgd only (got --optimizer {c.optimizer})")
    if c.pretrained and c.weights:
        raise FlareLensError("give either --pretrained or --weights FILE, not both")
    if c.select == "best" and c.inner == 0:
        raise FlareLensError(
            "--select best chooses the epoch on the inner validation block, and --inner 0 leaves none: "
            "give --inner > 0 (e.g. 0.1) or --select last"
        )


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
        # The study's schedule: epoch e (1-based) at lr * factor ** (e // step_size), i.e. the
        # rate drops at the start of every epoch whose number is a multiple of step_size.
        # LambdaLR counts epochs from 0 (i = e - 1).
        step_size, factor = c.step_size, c.factor
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda i: factor ** ((i + 1) // step_size))
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
        """TSS; nan when the set holds no flaring instance (TSS is then undefined, not -FPR)."""
        return self.confusion.tss if self.positives > 0 else float("nan")

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
    for batch in bar(loader, progress=progress and procs.main, desc=desc, unit="batch", leave=False):
        x, y = finish_batch(loader.dataset, batch)  # on CUDA: gathered and augmented on the GPU
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
        for batch in loader:
            x, y = finish_batch(loader.dataset, batch)
            weighted, w, prob, y = step(x, y, mixed=False)
            counts.add(weighted, w, prob, y, threshold)
    counts.all_reduce(procs)
    return counts, time.perf_counter() - t0


def _format_row(row: dict, epochs: int) -> str:
    def part(name, what):
        return f"{name} loss {row[what + '_loss']:.4f} TSS {row[what + '_tss']:.3f} HSS {row[what + '_hss']:.3f}"

    inner = f"  |  {part('inner', 'inner')}" if math.isfinite(row["inner_loss"]) else ""
    return (
        f"epoch {row['epoch']}/{epochs}  lr {row['lr']:.3g}  {part('train', 'train')}{inner}  |  "
        f"{part('held-out', 'val')}  "
        f"({row['train_time_s']:.1f}+{row['inner_time_s'] + row['val_time_s']:.1f} s, {row['train_images_per_s']:.1f} img/s)"
    )


def plateau_quantity(row: dict) -> float:
    """What ``--schedule plateau`` watches: the inner block's loss, else the training loss.

    Never the held-out fold's: the schedule is a choice, and choices never see the rows
    they are scored on.
    """
    return row["inner_loss"] if math.isfinite(row["inner_loss"]) else row["train_loss"]


def is_better(row: dict, best: dict) -> bool:
    """Whether epoch ``row`` replaces ``best`` (``{"epoch", "inner_tss"}``) as the selected one.

    The first epoch reaching the highest inner TSS wins; an epoch whose TSS is undefined
    (nan) never does.
    """
    score = row["inner_tss"]
    return math.isfinite(score) and (best.get("epoch", 0) == 0 or score > best["inner_tss"])


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
    with contextlib.ExitStack() as stack:
        # Rank 0 owns the directory: it creates and locks it; every rank stops if it cannot.
        error = None
        if procs.main:
            try:
                stack.enter_context(run.lock())
            except FlareLensError as exc:
                error = exc
        if not distributed.agree(error is None, procs):
            raise error or FlareLensError(f"{run.path}: rank 0 could not take the run directory (see its message)")
        resume_state = None
        if cfg.resume and run.last.is_file():
            resume_state = load_checkpoint(run.last)
            _check_resumable(resume_state["config"], cfg.to_dict(), run.last)
        elif not cfg.resume and run.last.is_file():
            raise FlareLensError(f"{run.path} already holds a training run ({run.last}); pass --resume to continue it or choose another --out")
        stack.enter_context(_log_file(run.log, procs.main))
        return _train(cfg, procs, run, resume_state)


def _split(cfg: TrainConfig) -> tuple[pd.DataFrame, pd.Series]:
    if not Path(cfg.images).is_dir() and not is_pack(cfg.images):
        raise FlareLensError(f"--images {cfg.images}: no such directory (nor a pack file of flarelens pack)")
    labels = read_labels(cfg.labels)
    roles = row_roles(labels, cfg.fold, inner=cfg.inner, gap=cfg.gap, window=cfg.window)
    counts = role_counts(roles)
    if counts["train"] == 0:
        raise FlareLensError(
            f"{cfg.labels}: no training rows for fold {cfg.fold} (fold {cfg.fold} is held out; the model trains on the "
            "other quarters)"
        )
    if counts["heldout"] == 0:
        raise FlareLensError(f"{cfg.labels}: no rows of fold {cfg.fold} (the held-out quarter) to report on")
    if cfg.inner > 0 and counts["inner"] == 0:
        raise FlareLensError(
            f"{cfg.labels}: the inner validation block (the last {cfg.inner:g} of each training quarter) holds no row; "
            "give a larger --inner, or --inner 0 --select last"
        )
    return labels, roles


def _check_positives(cfg: TrainConfig, rows: pd.DataFrame, what: str) -> None:
    if len(rows) == 0 or int(rows["target"].sum()) > 0:
        return
    if what == "inner" and cfg.select == "best":
        raise FlareLensError(
            f"the inner validation block holds {len(rows)} rows but no flaring one, so TSS cannot choose an epoch there: "
            "give a larger --inner, or --select last"
        )
    logger.warning(
        "the %s rows (%d) hold no flaring row: their TSS is undefined and history.csv shows it as nan",
        "inner validation" if what == "inner" else f"held-out fold {cfg.fold}", len(rows),
    )


def _train(cfg: TrainConfig, procs: distributed.Processes, run: RunDir, resume_state: dict | None) -> pd.DataFrame:
    device = distributed.resolve_device(cfg.device, procs)
    if cfg.batch_size % procs.world:
        raise FlareLensError(f"--batch-size {cfg.batch_size} must be a multiple of the number of processes ({procs.world})")
    local_batch = cfg.batch_size // procs.world
    amp = resolve_amp(cfg.amp, device)
    channels_last = cfg.channels_last == "on" or (cfg.channels_last == "auto" and (device.type == "cuda" or amp == "bf16"))
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True

    labels, roles = _split(cfg)
    train_rows, inner_rows, val_rows = (labels[roles == r] for r in ("train", "inner", "heldout"))
    _check_positives(cfg, inner_rows, "inner")
    _check_positives(cfg, val_rows, "heldout")
    weights = class_weights(train_rows["target"], cfg.class_weight, cfg.augment)
    # Before the images are read: a missing network or weights file fails at once. The same
    # seed on every rank gives the same initial weights.
    model = initial_model(cfg)

    data = _Data(cfg, train_rows, inner_rows, val_rows, procs, device, local_batch)

    model.to(device)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    optimizer = _make_optimizer(cfg, model.parameters(), device)
    scheduler = _make_scheduler(cfg, optimizer)
    scaler = torch.amp.GradScaler(device.type, enabled=amp == "fp16")
    history: list[dict] = []
    best: dict = {"epoch": 0}
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

    config = run_config(cfg, weights, roles, labels)
    if procs.main:
        run.write_config(config)
        if resume_state is not None:
            logger.info("resumed from %s after epoch %d", run.last, start_epoch)
        _log_setup(cfg, config, train_rows, inner_rows, val_rows, len(data.train_set), device, procs, amp, data.workers)

    for epoch in range(start_epoch, cfg.epochs):
        data.train_set.set_epoch(epoch)
        data.train_sampler.set_epoch(epoch)
        lr = optimizer.param_groups[0]["lr"]
        trained, train_time = train_one_epoch(net, data.train_loader, step, optimizer, scaler, procs, cfg.threshold,
                                              progress=cfg.progress, desc=f"epoch {epoch + 1}/{cfg.epochs}")
        _stop_if_diverged(trained, model, epoch + 1, run, best, record=procs.main)
        inner, inner_time = evaluate_epoch(net, data.inner_loader, step, procs, cfg.threshold)
        validated, val_time = evaluate_epoch(net, data.val_loader, step, procs, cfg.threshold)

        row = {
            "epoch": epoch + 1, "lr": lr,
            "train_loss": trained.loss, "train_tss": trained.tss, "train_hss": trained.hss,
            "inner_loss": inner.loss, "inner_tss": inner.tss, "inner_hss": inner.hss,
            "val_loss": validated.loss, "val_tss": validated.tss, "val_hss": validated.hss,
            "train_time_s": train_time, "inner_time_s": inner_time, "val_time_s": val_time,
            "train_images_per_s": trained["n"] / train_time if train_time > 0 else float("nan"),
        }
        if cfg.schedule == "plateau":
            scheduler.step(plateau_quantity(row))
        else:
            scheduler.step()
        history.append(row)
        selected = cfg.select == "last" or is_better(row, best)
        if selected:
            best = {"epoch": epoch + 1, "inner_tss": row["inner_tss"], "select": cfg.select}
        rng = rng_state()
        rng_ranks = distributed.gather_object(rng, procs)
        if procs.main:
            _write_history(run, history)
            logger.info(_format_row(row, cfg.epochs) + ("  * best" if selected and cfg.select == "best" else ""))
            ckpt = dict(model=model, optimizer=optimizer, scheduler=scheduler, scaler=scaler, epoch=epoch + 1,
                        config=config, history=history, best=best, rng=rng, rng_ranks=rng_ranks)
            # best.pt first: killed between the two writes, a resume redoes this epoch and
            # writes both again; the other order could leave best.pt an epoch behind.
            if selected:
                _save_checkpoint(run.best, **ckpt)
                _same_file(run.best, run.last)
            else:
                _save_checkpoint(run.last, **ckpt)
    distributed.barrier(procs)
    return pd.DataFrame(history, columns=HISTORY_COLUMNS)


class _Data:
    """The three sets of a run (train augmented, inner and held-out as they are) and their loaders."""

    def __init__(self, cfg: TrainConfig, train_rows, inner_rows, val_rows, procs: distributed.Processes,
                 device: torch.device, local_batch: int):
        cache = {"on": True, "off": False}.get(cfg.cache, "auto")
        show = procs.main and progress_enabled(cfg.progress)

        def dataset(rows, augment):
            return MagnetogramDataset(rows, cfg.images, cfg.image_size, augment=augment, seed=cfg.seed, cache=cache,
                                      as_uint8=True, progress=show, device=device)

        self.train_set = dataset(train_rows, cfg.augment)
        inner_set, val_set = dataset(inner_rows, "none"), dataset(val_rows, "none")
        cached = self.train_set.cached
        self.workers = cfg.workers if cfg.workers is not None else _default_workers(device, cached, procs.world)
        # Workers are not persistent: each epoch's workers must see that epoch's augmentation
        # choices (set_epoch on the dataset), and forking them again costs little.
        loader_args = dict(num_workers=self.workers, pin_memory=device.type == "cuda")
        self.train_sampler = DistributedSampler(self.train_set, num_replicas=procs.world, rank=procs.rank, shuffle=True,
                                                seed=cfg.seed)
        self.train_loader = DataLoader(self.train_set, batch_size=local_batch, sampler=self.train_sampler, **loader_args)

        def eval_loader(ds):
            # Every world-th instance per process, no padding, so each counts once.
            return DataLoader(ds, batch_size=local_batch, sampler=list(range(procs.rank, len(ds), procs.world)),
                              **loader_args)

        self.inner_loader, self.val_loader = eval_loader(inner_set), eval_loader(val_set)


def run_config(cfg: TrainConfig, weights: torch.Tensor, roles: pd.Series, labels: pd.DataFrame) -> dict:
    """What config.json and the checkpoints record: the settings and the run's facts.

    Facts (:data:`RUN_FACTS`): ``class_weights`` ``[NF, FL]``; ``train_base_rate``, the
    fraction of flaring rows among the rows trained on (before augmentation: the
    climatology forecast); ``rows``, the number of rows of each role
    (:func:`flarelens.folds.row_roles`); ``recipe_overrides``; ``flarelens_version``.
    """
    trained = labels.loc[roles == "train", "target"]
    return {
        **cfg.to_dict(),
        "class_weights": [float(w) for w in weights],
        "train_base_rate": float(trained.mean()) if len(trained) else float("nan"),
        "rows": role_counts(roles),
        "recipe_overrides": recipe_overrides(cfg),
        "flarelens_version": __version__,
    }


def _log_setup(cfg, config, train_rows, inner_rows, val_rows, instances, device, procs, amp, workers) -> None:
    def rows(frame):
        return f"{len(frame)} ({int(frame['target'].sum())} flaring)"

    rows_of = config["rows"]
    recipe = ""
    if cfg.recipe:
        changed = config["recipe_overrides"]
        recipe = f"recipe {cfg.recipe}" + (f" (changed: {', '.join(changed)})" if changed else "") + "; "
    inner = (f"inner validation rows {rows(inner_rows)}, the last {cfg.inner:g} of each training quarter, "
             f"{rows_of['purged']} rows purged (window {cfg.window}{', gap ' + cfg.gap if cfg.gap else ''}); "
             if cfg.inner > 0 else f"no inner block, {rows_of['purged']} rows purged; ")
    w_nf, w_fl = config["class_weights"]
    logger.info(
        f"{recipe}fold {cfg.fold}: training rows {rows(train_rows)} -> {instances} augmented instances per epoch; {inner}"
        f"held-out rows {rows(val_rows)}; class weights NF {w_nf:.3f} FL {w_fl:.3f} "
        f"({cfg.class_weight}: {FORMULAS[cfg.class_weight]}); selection: "
        f"{'highest inner TSS' if cfg.select == 'best' else 'last epoch'}; "
        f"{cfg.model} at {cfg.image_size} px on {device} x{procs.world}, amp {amp}, workers {workers}"
    )


def _stop_if_diverged(counts: EpochCounts, model, epoch: int, run: RunDir, best: dict, record: bool = True) -> None:
    """Stop with one clear error when the epoch's loss or weights are not finite (nothing is saved).

    config.json records ``"status": "diverged"`` (and the epoch), so that the report warns
    about the run; a later successful ``--resume`` writes config.json afresh.
    """
    finite = math.isfinite(counts.loss) and all(bool(torch.isfinite(p).all()) for p in model.parameters())
    if finite:
        return
    kept = f"{run.last} keeps epoch {epoch - 1}" if epoch > 1 else "no checkpoint was written"
    if record and run.config.is_file():
        run.write_config({**run.read_config(), "status": "diverged", "diverged_epoch": epoch})
    raise FlareLensError(
        f"epoch {epoch}: training diverged (loss {counts.loss:.4g}, weights not finite); stopped without saving it, "
        f"{kept}; try a lower --lr"
    )


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


def _same_file(src: Path, dst: Path) -> None:
    """Make ``dst`` hold what ``src`` holds, atomically: a hard link (no second write), else a copy."""
    import shutil

    with disk_errors(dst), atomic_path(dst) as tmp:
        tmp.unlink()
        try:
            os.link(src, tmp)
        except OSError:
            shutil.copyfile(src, tmp)


def _check_resumable(saved: dict, now: dict, path: Path) -> None:
    # a setting an older checkpoint lacks counts as its default (None), as it was then
    keys = (set(saved) | set(now)) - RESUMABLE_CHANGES - set(RUN_FACTS)
    diffs = [
        f"--{k.replace('_', '-')} {saved.get(k)!r} (now {now.get(k)!r})"
        for k in differing_keys({k: saved.get(k) for k in keys}, {k: now.get(k) for k in keys})
    ]
    if diffs:
        raise FlareLensError(
            f"{path} was trained with different settings: {'; '.join(diffs)}. "
            "Resume with the same settings or choose another --out"
        )
