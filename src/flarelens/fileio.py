"""Writing files so that an interrupted or failed step never leaves a half-written result.

Every output goes to a temporary file beside its destination and is renamed into place
only once complete; ``os.replace`` is atomic on POSIX and Windows within one directory.
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from pathlib import Path
from typing import Iterator

from flarelens.errors import FlareLensError


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it to ``path`` if the block succeeds.

    The temporary file keeps ``path``'s suffix so that libraries choosing a format by
    extension (PIL, numpy, torch) behave as for the final name. On error the temporary
    file is removed and ``path`` is left as it was.
    """
    path = Path(path)
    if path.is_dir():
        raise FlareLensError(f"{path} is a directory; give a file name to write")
    ensure_dir(path.parent)
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=f".part{path.suffix}")
    except OSError as exc:
        raise FlareLensError(f"cannot write {path}: {describe(exc, path.parent)}") from None
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        if exc.errno == errno.ENOSPC:  # the block's own write ran out of disk
            raise FlareLensError(f"cannot write {path}: {describe(exc, path.parent)}") from None
        raise  # e.g. a dropped connection while downloading into tmp: the caller's to handle
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    try:
        # mkstemp creates the file 0600; give the result the mode a plain open() would.
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise FlareLensError(f"cannot write {path}: {describe(exc, path.parent)}") from None


def ensure_dir(path: str | os.PathLike) -> Path:
    """Create directory ``path`` (and its parents); one clear error when that cannot be done."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise FlareLensError(f"{path} is a file, not a directory")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise FlareLensError(f"cannot create directory {path}: {describe(exc, path)}") from None
    return path


def describe(exc: OSError, where: str | os.PathLike) -> str:
    """A one-line reason for an OS error, naming the full disk where that is the cause."""
    if exc.errno == errno.ENOSPC:
        return f"no space left on {where}"
    if isinstance(exc, (FileExistsError, NotADirectoryError)):
        return "a file is in the way of a directory on that path"
    return exc.strerror or str(exc)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_csv(frame, path: str | os.PathLike, **kwargs) -> Path:
    """Write a pandas DataFrame to ``path`` atomically (no index unless asked)."""
    kwargs.setdefault("index", False)
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, **kwargs)
    return Path(path)


def write_text(text: str, path: str | os.PathLike) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)
