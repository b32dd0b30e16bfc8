"""``flarelens train``: train a full-disk flare model on one fold (CPU, GPU, or DDP under torchrun)."""

from __future__ import annotations

from flarelens.data import AUGMENT_SCHEMES, CLASS_WEIGHT_SCHEMES
from flarelens.models import INITS, model_names
from flarelens.train import AMP_MODES, OPTIMIZERS, SCHEDULES, TrainConfig, train

_D = TrainConfig()


def register(sub) -> None:
    p = sub.add_parser(
        "train",
        help="train a model on one fold; writes history.csv, train.log, best.pt and last.pt into --out",
        description="Train on the rows of the other three folds (augmented as in the study) and validate on fold K "
        "after every epoch. Writes RUN_DIR/history.csv and train.log (loss, TSS, HSS, lr, time per epoch), "
        "RUN_DIR/best.pt (highest validation TSS) and RUN_DIR/last.pt (--resume continues from it). "
        "Several GPUs or nodes: torchrun --nproc_per_node N -m flarelens train ...",
    )
    p.add_argument("--labels", required=True, help="labels.csv (from `flarelens label`)")
    p.add_argument("--images", required=True, metavar="DIR", help="image root (YYYY/MM/DD/HMI.m....jpg|png|jp2|fits)")
    p.add_argument("--fold", type=int, default=_D.fold, choices=(1, 2, 3, 4), help="validation fold: quarter of the year (default: 1)")
    p.add_argument("--model", default=_D.model, choices=model_names(), help=f"network (default: {_D.model})")
    p.add_argument("--image-size", type=int, default=_D.image_size, metavar="PX", help=f"images are resized to PX x PX (default: {_D.image_size}; 64-128 for CPU work)")
    p.add_argument("--epochs", type=int, default=_D.epochs, help=f"number of epochs (default: {_D.epochs})")
    p.add_argument("--batch-size", type=int, default=_D.batch_size, help=f"global batch size, split over processes (default: {_D.batch_size})")
    p.add_argument("--lr", type=float, default=_D.lr, help=f"initial learning rate (default: {_D.lr:g})")
    p.add_argument("--weight-decay", type=float, default=_D.weight_decay, help=f"L2 weight decay (default: {_D.weight_decay:g})")
    p.add_argument("--optimizer", default=_D.optimizer, choices=OPTIMIZERS, help=f"(default: {_D.optimizer}, as in the study)")
    p.add_argument("--momentum", type=float, default=_D.momentum, help=f"SGD momentum (default: {_D.momentum:g}, plain SGD as in the study)")
    p.add_argument("--schedule", default=_D.schedule, choices=SCHEDULES,
                   help="learning-rate schedule: step (x FACTOR every STEP_SIZE epochs; the study: halved every 5), "
                   "plateau (x FACTOR when the validation loss stalls PATIENCE epochs), none (default: step)")
    p.add_argument("--step-size", type=int, default=_D.step_size, help=f"epochs between steps of --schedule step (default: {_D.step_size})")
    p.add_argument("--factor", type=float, default=_D.factor, help=f"learning-rate multiplier of a step (default: {_D.factor:g})")
    p.add_argument("--patience", type=int, default=_D.patience, help=f"epochs without improvement for --schedule plateau (default: {_D.patience})")
    p.add_argument("--augment", default=_D.augment, choices=AUGMENT_SCHEMES,
                   help="study: flaring instances x4 (original, h-flip, v-flip, rotation within +-5 deg), "
                   "non-flaring x2 (original, one of those); none: no augmentation (default: study)")
    p.add_argument("--class-weight", default=_D.class_weight, choices=CLASS_WEIGHT_SCHEMES,
                   help="loss weights: study (NF 1, FL 2#NF/(4#FL)), balanced (n/(2 n_class)), none (default: study)")
    p.add_argument("--init", default=_D.init, choices=INITS, help=f"initialisation of the classifier layers (default: {_D.init})")
    p.add_argument("--pretrained", action="store_true", help="start the backbone from torchvision's ImageNet weights (downloads them once)")
    p.add_argument("--weights", metavar="FILE", help="start the backbone from a local state dict file (e.g. torchvision's ImageNet weights saved offline)")
    p.add_argument("--gap", metavar="WINDOW", help="drop training rows whose prediction window reaches into the validation quarter, e.g. 24h (off in the study)")
    p.add_argument("--threshold", type=float, default=_D.threshold, help="probability threshold for TSS/HSS (default: 0.5)")
    p.add_argument("--seed", type=int, default=_D.seed, help="seed of weights, shuffling and augmentation (default: 0)")
    p.add_argument("--out", required=True, metavar="RUN_DIR", help="run directory")
    p.add_argument("--resume", action="store_true", help="continue the run in RUN_DIR from last.pt (same settings; --epochs may grow); starts afresh when there is none")
    p.add_argument("--device", default=_D.device, help="auto (a GPU if there is one), cpu, cuda, cuda:1, ... (default: auto)")
    p.add_argument("--amp", default=_D.amp, choices=AMP_MODES,
                   help="mixed precision: auto = bf16 on GPUs that support it, else fp16; bf16 on CPUs with native bf16; else off")
    p.add_argument("--channels-last", default=_D.channels_last, choices=("auto", "on", "off"), help="channels-last memory format (auto: on GPU and with bf16)")
    p.add_argument("--compile", action="store_true", help="torch.compile the model (slower start, faster epochs on GPU)")
    p.add_argument("--workers", type=int, default=None, help="DataLoader worker processes per process (default: automatic)")
    p.add_argument("--threads", type=int, default=None,
                   help="CPU threads of this process (default: torch's choice, one per core; on a CPU shared with "
                   "other jobs, 1 can be many times faster)")
    p.add_argument("--cache", default=_D.cache, choices=("auto", "on", "off"), help="decode all images once into memory (auto: when they fit in 2 GiB)")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bars or per-epoch lines on the terminal")
    p.set_defaults(func=run)


def run(args) -> int:
    config = TrainConfig(
        labels=args.labels, images=args.images, fold=args.fold, model=args.model, image_size=args.image_size,
        epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, weight_decay=args.weight_decay,
        optimizer=args.optimizer, momentum=args.momentum, schedule=args.schedule, step_size=args.step_size,
        factor=args.factor, patience=args.patience, augment=args.augment, class_weight=args.class_weight,
        init=args.init, pretrained=args.pretrained, weights=args.weights, gap=args.gap, threshold=args.threshold,
        seed=args.seed, out=args.out, resume=args.resume, device=args.device, amp=args.amp,
        channels_last=args.channels_last, compile=args.compile, workers=args.workers, threads=args.threads, cache=args.cache,
        progress=args.progress,
    )
    history = train(config)
    import os

    if int(os.environ.get("RANK", "0")) == 0 and len(history):
        best = history.loc[history["val_tss"].idxmax()]
        print(f"best validation TSS {best['val_tss']:.3f} (HSS {best['val_hss']:.3f}) at epoch {int(best['epoch'])}; "
              f"checkpoints in {args.out}/best.pt and last.pt")
    return 0
