"""A training run directory: which files it holds and how to read its configuration.

``flarelens train --out RUN_DIR`` fills it; predict, explain, report and demo read it::

    RUN_DIR/
      config.json      the run's settings and facts (written first, rewritten atomically)
      history.csv      one row per completed epoch
      train.log        the run's log (time-stamped lines)
      best.pt          the selected epoch's checkpoint (see the config's ``select``)
      last.pt          the last completed epoch's checkpoint (``--resume`` continues it)
      predictions.csv  written by ``flarelens predict`` when asked to put it here
      train.lock       held while a training runs in RUN_DIR (released when it ends or dies)

:func:`read_config` gives a run's configuration from ``config.json`` without loading a
checkpoint (a VGG16 checkpoint is ~0.5 GB); runs made before ``config.json`` existed fall
back to the configuration stored in their checkpoint.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
from pathlib import Path
from typing import Iterator

from flarelens.errors import FlareLensError
from flarelens.fileio import write_text

logger = logging.getLogger(__name__)

CONFIG = "config.json"
HISTORY = "history.csv"
LOG = "train.log"
BEST = "best.pt"
LAST = "last.pt"
PREDICTIONS = "predictions.csv"
LOCK = "train.lock"


class RunDir:
    """The files of one run directory (nothing is created until asked)."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    @property
    def config(self) -> Path:
        return self.path / CONFIG

    @property
    def history(self) -> Path:
        return self.path / HISTORY

    @property
    def log(self) -> Path:
        return self.path / LOG

    @property
    def best(self) -> Path:
        return self.path / BEST

    @property
    def last(self) -> Path:
        return self.path / LAST

    @property
    def predictions(self) -> Path:
        return self.path / PREDICTIONS

    @property
    def lock_file(self) -> Path:
        return self.path / LOCK

    def create(self) -> "RunDir":
        """Make the directory (and its parents); one clear error when that cannot be done."""
        if self.path.exists() and not self.path.is_dir():
            raise FlareLensError(f"--out {self.path}: is a file, not a directory; choose a directory for the run")
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise FlareLensError(f"--out {self.path}: cannot create the run directory ({exc.strerror or exc})") from None
        return self

    def read_config(self) -> dict:
        """The run's configuration: config.json, else the checkpoint's (last.pt, then best.pt)."""
        return read_config(self.path)

    def write_config(self, config: dict) -> Path:
        """Write config.json atomically (sorted keys, indented)."""
        with disk_errors(self.config):
            return write_text(json.dumps(config, indent=2, sort_keys=True, allow_nan=True) + "\n", self.config)

    def read_history(self):
        """history.csv as a DataFrame; one clear error when it is damaged."""
        import pandas as pd

        try:
            return pd.read_csv(self.history)
        except FileNotFoundError:
            raise FlareLensError(f"{self.history}: no such file (is {self.path} a `flarelens train` run?)") from None
        except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError) as exc:
            raise FlareLensError(f"{self.history}: cannot read the history ({exc})") from None

    def stale_temporaries(self) -> list[Path]:
        """Temporary files (``.NAME.*.part*``) an interrupted write left in the directory."""
        if not self.path.is_dir():
            return []
        return sorted(p for p in self.path.iterdir() if p.name.startswith(".") and ".part" in p.name and p.is_file())

    @contextlib.contextmanager
    def lock(self) -> Iterator["RunDir"]:
        """Hold ``train.lock`` for the block: a second training in this directory is refused.

        The lock is an ``fcntl.flock`` on the file, which the kernel drops when the process
        ends in any way (SIGKILL included), so a crashed run leaves nothing stuck. Holding
        it, stale temporary files of an earlier interrupted run are removed. Where
        ``fcntl`` does not exist (Windows) no lock is taken.
        """
        self.create()
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows
            yield self
            return
        try:
            fh = open(self.lock_file, "a+", encoding="utf-8")
        except OSError as exc:
            raise FlareLensError(f"{self.lock_file}: cannot open the run's lock file ({exc.strerror or exc})") from None
        try:
            try:
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                fh.seek(0)
                holder = fh.read().strip() or "another process"
                raise FlareLensError(
                    f"{self.path} is being trained by {holder} (lock {self.lock_file}); wait for it to end or choose another --out"
                ) from None
            fh.seek(0)
            fh.truncate()
            fh.write(f"pid {os.getpid()} on {os.uname().nodename if hasattr(os, 'uname') else 'this machine'}\n")
            fh.flush()
            for stale in self.stale_temporaries():
                logger.debug("removing %s, left by an interrupted run", stale)
                stale.unlink(missing_ok=True)
            yield self
        finally:
            fh.close()  # closing drops the flock


@contextlib.contextmanager
def disk_errors(path: str | os.PathLike) -> Iterator[None]:
    """Turn a full disk or an unwritable path while writing ``path`` into one clear error.

    torch's checkpoint writer reports a full disk as a ``RuntimeError`` ("unexpected pos",
    "file write failed"): the free space decides whether that was the cause.
    """
    path = Path(path)
    try:
        yield
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise FlareLensError(f"no space left on {path.parent} while writing {path.name}; free some space and run again (--resume continues)") from None
        if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            raise FlareLensError(f"{path}: cannot write ({exc.strerror}); choose a writable --out") from None
        if exc.errno in (errno.ENOTDIR, errno.EISDIR):
            raise FlareLensError(f"{path}: cannot write ({exc.strerror}); a file stands where the run directory should be") from None
        raise
    except RuntimeError as exc:
        if _disk_full(path.parent):
            raise FlareLensError(f"no space left on {path.parent} while writing {path.name}; free some space and run again (--resume continues)") from None
        raise FlareLensError(f"{path}: cannot write ({exc})") from None


def _disk_full(directory: Path, margin: int = 1 << 20) -> bool:
    import shutil

    try:
        return shutil.disk_usage(directory).free < margin
    except OSError:
        return False


def read_config(path: str | os.PathLike) -> dict:
    """A training run's configuration without loading a whole checkpoint when avoidable.

    ``path``: a run directory (its config.json, else the configuration stored in its
    last.pt or best.pt — runs made before config.json) or a checkpoint file (the config.json
    beside it when it belongs to the same run, else the checkpoint's own configuration).
    Returns ``{}`` for a directory holding neither.
    """
    path = Path(path)
    if path.is_dir():
        run = RunDir(path)
        if run.config.is_file():
            return _read_json(run.config)
        for ckpt in (run.last, run.best):
            if ckpt.is_file():
                return _checkpoint_config(ckpt)
        return {}
    if not path.exists():
        raise FlareLensError(f"{path}: no such run directory or checkpoint")
    beside = path.parent / CONFIG
    if beside.is_file() and path.name in (BEST, LAST):
        return _read_json(beside)
    return _checkpoint_config(path)


def _read_json(path: Path) -> dict:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise FlareLensError(f"{path}: cannot read the run configuration ({exc})") from None
    if not isinstance(value, dict):
        raise FlareLensError(f"{path}: not a run configuration (expected a JSON object)")
    return value


def _checkpoint_config(path: Path) -> dict:
    from flarelens.checkpoint import load_checkpoint

    return dict(load_checkpoint(path)["config"])
