"""``flarelens train``: train a full-disk flare model on one fold (CPU, GPU, or DDP under torchrun)."""

from __future__ import annotations

import os

from flarelens.data import AUGMENT_SCHEMES
from flarelens.folds import DEFAULT_INNER, DEFAULT_WINDOW
from flarelens.models import INITS, model_names
from flarelens.train import AMP_MODES, OPTIMIZERS, RECIPES, SCHEDULES, SELECTIONS, TrainConfig, make_config, train
from flarelens.weighting import CLASS_WEIGHT_SCHEMES

_D = TrainConfig()


def register(sub) -> None:
    p = sub.add_parser(
        "train",
        help="train a model on one fold; writes history.csv, train.log, best.pt and last.pt into --out",
        description="Train on the other three quarters (augmented as in the study), choose the epoch on an inner "
        "validation block carved out of them (the last --inner of every training quarter, purged of training rows "
        "within one label window), and report the held-out quarter K after every epoch without using it. Writes "
        "RUN_DIR/config.json, history.csv and train.log (loss, TSS, HSS of training, inner block and held-out fold, "
        "lr, time per epoch), RUN_DIR/best.pt (highest inner TSS, or the last epoch with --select last) and "
        "RUN_DIR/last.pt (--resume continues from it). --recipe study sets every setting of the original study at "
        "once (explicit options still win). Several GPUs or nodes: torchrun --nproc_per_node N -m flarelens train ...",
    )
    # Every option defaults to None here: None means "not given", so that --recipe knows
    # which settings the user chose; the defaults shown are TrainConfig's.
    p.add_argument("--labels", required=True, help="labels.csv (from `flarelens label`)")
    p.add_argument("--images", required=True, metavar="DIR", help="image root (YYYY/MM/DD/HMI.m....jpg|png|jp2|fits)")
    p.add_argument("--out", required=True, metavar="RUN_DIR", help="run directory")
    p.add_argument("--recipe", choices=tuple(RECIPES),
                   help="study: the original study's training exactly — VGG16 from ImageNet weights (torchvision's, or "
                   "--weights FILE offline), batch 64, plain SGD lr 1e-4 weight decay 1e-3, lr halved at epochs 5, 10, ..., "
                   "its augmentation and class weights, fp32, 50 epochs on every row of the other quarters (--inner 0), "
                   "the last epoch kept (--select last). Options given explicitly override it")
    p.add_argument("--fold", type=int, choices=(1, 2, 3, 4), help=f"held-out fold: quarter of the year (default: {_D.fold})")
    p.add_argument("--model", choices=model_names(), help=f"network (default: {_D.model})")
    p.add_argument("--image-size", type=int, metavar="PX", help=f"images are resized to PX x PX (default: {_D.image_size}; 64-128 for CPU work)")
    p.add_argument("--epochs", type=int, help=f"number of epochs (default: {_D.epochs})")
    p.add_argument("--batch-size", type=int, help=f"global batch size, split over processes (default: {_D.batch_size})")
    p.add_argument("--lr", type=float, help=f"initial learning rate (default: {_D.lr:g})")
    p.add_argument("--weight-decay", type=float, help=f"L2 weight decay (default: {_D.weight_decay:g})")
    p.add_argument("--optimizer", choices=OPTIMIZERS, help=f"(default: {_D.optimizer}, as in the study)")
    p.add_argument("--momentum", type=float, help=f"SGD momentum (default: {_D.momentum:g}, plain SGD as in the study)")
    p.add_argument("--schedule", choices=SCHEDULES,
                   help="learning-rate schedule: step (epoch e at LR * FACTOR ** (e // STEP_SIZE); the study: halved at "
                   "epochs 5, 10, ...), plateau (x FACTOR when the inner block's loss — the training loss without one — "
                   f"stalls PATIENCE epochs), none (default: {_D.schedule})")
    p.add_argument("--step-size", type=int, help=f"epochs between steps of --schedule step (default: {_D.step_size})")
    p.add_argument("--factor", type=float, help=f"learning-rate multiplier of a step (default: {_D.factor:g})")
    p.add_argument("--patience", type=int, help=f"epochs without improvement for --schedule plateau (default: {_D.patience})")
    p.add_argument("--augment", choices=AUGMENT_SCHEMES,
                   help="study: flaring instances x4 (original, h-flip, v-flip, rotation within +-5 deg, nearest), "
                   f"non-flaring x2 (original, one of those); none: no augmentation (default: {_D.augment})")
    p.add_argument("--class-weight", choices=CLASS_WEIGHT_SCHEMES,
                   help="loss weights: study (NF 1, FL 1.5*(2#NF)/(4#FL), rows before augmentation), balanced "
                   f"(n/(2 n_class) over the augmented instances), none (default: {_D.class_weight})")
    p.add_argument("--init", choices=INITS, help=f"initialisation of the classifier layers (default: {_D.init})")
    p.add_argument("--pretrained", action="store_true", default=None,
                   help="start the backbone from torchvision's ImageNet weights (downloads them once)")
    p.add_argument("--weights", metavar="FILE", help="start the backbone from a local state dict file (e.g. torchvision's ImageNet weights saved offline)")
    p.add_argument("--inner", type=float, metavar="FRACTION",
                   help=f"inner validation block: the last FRACTION of every training quarter, where the epoch is chosen; "
                   f"0: none, every row of the other quarters trains (default: {DEFAULT_INNER:g})")
    p.add_argument("--window", metavar="DURATION",
                   help=f"the labels' prediction window: training rows this close to the inner block are purged (default: {DEFAULT_WINDOW})")
    p.add_argument("--select", choices=SELECTIONS,
                   help=f"best.pt: best = the epoch with the highest inner TSS; last = the last epoch (default: {_D.select})")
    p.add_argument("--gap", metavar="WINDOW", help="drop training rows whose prediction window reaches into the held-out quarter, e.g. 24h (off in the study)")
    p.add_argument("--threshold", type=float, help=f"probability threshold for TSS/HSS (default: {_D.threshold:g})")
    p.add_argument("--seed", type=int, help=f"seed of weights, shuffling and augmentation (default: {_D.seed})")
    p.add_argument("--resume", action="store_true", default=None,
                   help="continue the run in RUN_DIR from last.pt (same settings; --epochs may grow); starts afresh when there is none")
    p.add_argument("--device", help="auto (a GPU if there is one), cpu, cuda, cuda:1, mps (default: auto)")
    p.add_argument("--amp", choices=AMP_MODES,
                   help="mixed precision: auto = bf16 on GPUs that support it, else fp16; bf16 on CPUs with native bf16; else off")
    p.add_argument("--channels-last", choices=("auto", "on", "off"), help="channels-last memory format (auto: on GPU and with bf16)")
    p.add_argument("--compile", action="store_true", default=None, help="torch.compile the model (slower start, faster epochs on GPU)")
    p.add_argument("--workers", type=int, help="DataLoader worker processes per process (default: automatic)")
    p.add_argument("--threads", type=int,
                   help="CPU threads of this process (default: torch's choice, one per core; on a CPU shared with "
                   "other jobs, 1 can be many times faster)")
    p.add_argument("--cache", choices=("auto", "on", "off"), help="decode all images once into memory (auto: when they fit in 2 GiB)")
    p.add_argument("--no-progress", dest="progress", action="store_false", default=None, help="no progress bars")
    p.set_defaults(func=run)


#: argparse destinations that are not training settings.
_NOT_SETTINGS = {"func", "command", "quiet", "verbose"}


def settings(args) -> dict:
    """The training settings given on the command line (options left out are absent)."""
    return {k: v for k, v in vars(args).items() if k not in _NOT_SETTINGS and v is not None}


def run(args) -> int:
    config = make_config(settings(args))  # every setting checked before any work
    history = train(config)
    if int(os.environ.get("RANK", "0") or 0) == 0 and len(history):
        from flarelens.rundir import RunDir

        run_dir = RunDir(config.out)
        last = history.iloc[-1]
        if config.select == "best":
            chosen = history.loc[history["inner_tss"].idxmax()]
            how = f"epoch {int(chosen['epoch'])}, highest inner TSS {chosen['inner_tss']:.3f}"
        else:
            chosen, how = last, f"the last epoch ({int(last['epoch'])})"
        print(f"best.pt: {how}; held-out fold {config.fold} (reported, not used to choose): "
              f"TSS {chosen['val_tss']:.3f} HSS {chosen['val_hss']:.3f}; checkpoints in {run_dir.best} and {run_dir.last}")
    return 0
