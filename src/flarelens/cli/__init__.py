"""The ``flarelens`` command: one subcommand per pipeline step.

Each subcommand lives in its own module here, exposing ``register(subparsers)`` which adds
its parser and sets ``func(args) -> int``. The modules only parse arguments and call the
library; a :class:`~flarelens.errors.FlareLensError` becomes one line on stderr and exit 1.

Only the module of the subcommand being run is imported (the others appear in ``--help``
by their one-line summary), so ``flarelens --help`` does not pay for importing torch.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import signal
import sys

from flarelens import __version__
from flarelens.errors import FlareLensError

#: Subcommands in pipeline order (module flarelens.cli.<name>, with "-" as "_") and the
#: one-line summary shown by ``flarelens --help``.
COMMANDS = {
    "label": "label sampled times from a GOES flare catalog (is there a flare >= threshold in the next window?)",
    "simulate": "simulate HMI-like full-disk magnetograms whose active regions follow a GOES flare catalog",
    "download": "download HMI magnetograms (JPEG 2000, 4096²) from the Helioviewer API",
    "convert": "convert JP2 / FITS magnetograms to N×N 8-bit images (area averaging)",
    "pack": "pack the labelled images into one memory-mapped uint8 array (fast training input)",
    "train": "train a model on one fold; writes history.csv, train.log, best.pt and last.pt into --out",
    "predict": "flare probabilities from a checkpoint: predictions.csv for labelled images, or one line per image file",
    "calibrate": "fit a monotone calibration on the inner validation block and add flare_prob_calibrated",
    "evaluate": "skill of prediction files: TSS/HSS, Brier, AUC, baselines and intervals",
    "locations": "TP and FN of X- and M-class flare instances, central (|lon| <= 70°) vs near-limb; recall map",
    "explain": "attribution maps (Guided Grad-CAM, Deep SHAP, Integrated Gradients) scored against where the flares were",
    "report": "write one self-contained HTML page (figures embedded) telling the story of a run directory",
    "demo": "run the whole pipeline (simulate, label, train, predict, evaluate, locations, explain, report) on shipped data",
}


def _module_name(name: str) -> str:
    return f"flarelens.cli.{name.replace('-', '_')}"


def _has_module(name: str) -> bool:
    return importlib.util.find_spec(_module_name(name)) is not None


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser; only ``command``'s module is imported (the others are one-line stubs).

    ``command=None`` gives the top-level parser with every subcommand as a stub, which is
    all ``flarelens --help`` needs; pass ``"all"`` to import every subcommand's parser.
    """
    parser = argparse.ArgumentParser(
        prog="flarelens",
        description="Build, evaluate and explain full-disk solar flare prediction models.",
    )
    parser.add_argument("--version", action="version", version=f"flarelens {__version__}")
    parser.add_argument("-q", "--quiet", action="store_true",
                        help="only warnings and errors; no progress bars")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug messages too")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, summary in COMMANDS.items():
        if not _has_module(name):
            continue  # a subcommand still being written must not take the others down with it
        if command in (name, "all"):
            importlib.import_module(_module_name(name)).register(sub)
        else:
            sub.add_parser(name, help=summary, add_help=False)
    return parser


def one_line(exc: BaseException) -> str:
    """The message of ``exc`` as one line.

    An error raised in a DataLoader worker comes back carrying the worker's whole
    traceback in its message; the user needs only its last line, the original message.
    """
    text = str(exc)
    if "Original Traceback" in text:
        last = [line for line in text.splitlines() if line.strip()][-1]
        prefix = f"{type(exc).__module__}.{type(exc).__name__}: "
        text = last[len(prefix):] if last.startswith(prefix) else last.split(": ", 1)[-1]
    return " ".join(text.split("\n"))


def _command_of(argv: list[str]) -> str | None:
    for arg in argv:
        if arg in COMMANDS:
            return arg
        if not arg.startswith("-"):
            return None
    return None


def _sigterm(signum, frame):
    # SLURM preemption sends SIGTERM: unwind like Ctrl-C so that temporaries are removed
    # and checkpoints stay whole, then exit 143 (128 + 15) as a shell would.
    raise _Terminated()


class _Terminated(BaseException):
    pass


def main(argv: list[str] | None = None) -> int:
    """Run the command line ``argv`` (default: ``sys.argv[1:]``); return the exit status."""
    from flarelens import log

    own_process = argv is None  # the console script or `python -m flarelens`: ours to end
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(_command_of(argv))
    args = parser.parse_args(argv)
    log.setup(quiet=args.quiet, verbose=args.verbose)
    previous = None
    try:
        previous = signal.signal(signal.SIGTERM, _sigterm)
    except ValueError:  # not the main thread (e.g. called from a test's worker thread)
        pass
    try:
        return int(args.func(args) or 0)
    except FlareLensError as exc:
        print(f"flarelens {args.command}: error: {one_line(exc)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        previous = _ending(own_process, previous)
        print(f"flarelens {args.command}: interrupted", file=sys.stderr)
        return 130
    except _Terminated:
        previous = _ending(own_process, previous)
        print(f"flarelens {args.command}: terminated (SIGTERM)", file=sys.stderr)
        return 143
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _ending(own_process: bool, previous):
    """After a first Ctrl-C / SIGTERM the process is on its way out: a second one must not
    break into the last message or the interpreter's exit with a traceback."""
    if not own_process:
        return previous
    try:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    except ValueError:  # not the main thread
        return previous
    return None


if __name__ == "__main__":
    sys.exit(main())
