"""A packed image set: every labelled image decoded and resized once into one uint8 array.

``flarelens pack`` turns the images of a labels table (JPEG, PNG, JPEG 2000, FITS under an
image root) into

* ``OUT`` (e.g. ``images-512.npy``): an ``(N, S, S)`` uint8 NumPy array file, read
  memory-mapped, one image per distinct ``file`` of the labels, in the labels' order, each
  exactly what :func:`flarelens.data.load_image` gives for it (the same pixels the image
  folder would give ``train``); ~16.7 GB for the study's 63,649 images at 512²;
* ``OUT.json``: its index — format version, side ``S``, the ``file`` and ``timestamp`` of
  every row, each source file's size in bytes, modification time (ns) and side in px at
  packing time, the image root it was packed from, and whether the pack is complete.

While it is being built, ``OUT.done`` (an int32 array file: 0 = row not written yet, else
the source's side in px) records the rows already written, each flushed to disk before it
is marked, so an interrupted build resumes where it stopped. A pack is used only when
complete; :func:`open_pack` and :meth:`Pack.rows` refuse, with one line, a pack that is
incomplete, of another size, missing a labelled file, or whose source files changed since.

``train``, ``predict`` and ``explain`` accept the pack path in place of the image folder
(through :class:`flarelens.data.MagnetogramDataset`).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from flarelens.errors import FlareLensError
from flarelens.fileio import write_text

logger = logging.getLogger(__name__)

#: Bumped when the layout of the array or its index changes.
PACK_FORMAT = 1
#: Rows decoded per worker task (and marked done together).
CHUNK = 32


def index_path(pack: str | os.PathLike) -> Path:
    """The index (JSON) of a pack file: ``OUT.json``."""
    return Path(f"{pack}.json")


def done_path(pack: str | os.PathLike) -> Path:
    """The rows-written record of a pack being built: ``OUT.done``."""
    return Path(f"{pack}.done")


def is_pack(path: str | os.PathLike) -> bool:
    """Whether ``path`` names a pack (a ``.npy`` file, or one with an index beside it) rather than an image folder."""
    path = Path(path)
    return not path.is_dir() and (path.suffix == ".npy" or index_path(path).is_file())


@dataclass
class PackSummary:
    """What :func:`build_pack` did: rows written now, rows already there, rows rewritten
    because their source changed, and the time it took."""

    path: Path
    images: int = 0
    written: int = 0
    already: int = 0
    changed: int = 0
    seconds: float = 0.0

    def format(self) -> str:
        rate = self.written / self.seconds if self.seconds > 0 else 0.0
        nbytes = self.path.stat().st_size if self.path.is_file() else 0
        size = f"{nbytes / 1e9:.2f} GB" if nbytes >= 1e9 else f"{nbytes / 1e6:.1f} MB"
        line = (f"packed {self.images} images into {self.path} ({size}): wrote {self.written} "
                f"({rate:.1f} images/s), {self.already} already packed")
        if self.changed:
            line += f", {self.changed} repacked because their source file changed"
        return line


class Pack:
    """A complete pack opened for reading (see :func:`open_pack`).

    ``images`` is the memory-mapped ``(N, S, S)`` uint8 array (opened on first use, and
    again in each DataLoader worker process; copy-on-write, so the file is never changed);
    ``files`` and ``timestamps`` the
    labels' values of its rows; ``size`` the side S in px; ``source_px`` each source's
    side before resizing.
    """

    def __init__(self, path: Path, index: dict):
        self.path = Path(path)
        self.index = index
        self.size = int(index["size"])
        self.files: list[str] = list(index["files"])
        self.timestamps: list[str] = list(index["timestamps"])
        self.source_px = np.asarray(index["source_px"], dtype=np.int64)
        self._row_of = {f: i for i, f in enumerate(self.files)}
        self._images: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.files)

    @property
    def images(self) -> np.ndarray:
        if self._images is None:
            # Copy-on-write: rows can be handed to torch without a copy (torch wants writable
            # arrays); nothing is ever written back to the file.
            self._images = np.load(self.path, mmap_mode="c")
        return self._images

    def __getstate__(self):
        # A worker started by "spawn" maps the file itself instead of receiving a copy of it.
        state = dict(self.__dict__)
        state["_images"] = None
        return state

    @property
    def nbytes(self) -> int:
        return len(self.files) * self.size * self.size

    def rows(self, files, image_size: int | None = None, source: str = "labels",
             check_sources: bool = True) -> np.ndarray:
        """Pack rows of ``files`` (the labels' ``file`` values), as an int64 array.

        Refuses, with one line, a pack of another side than ``image_size`` (None: any), a
        file the pack does not hold (naming its labels row), and — when the image root the
        pack was made from exists here and ``check_sources`` — source files whose size or
        modification time changed since they were packed.
        """
        if image_size is not None and int(image_size) != self.size:
            raise FlareLensError(
                f"{self.path} holds {self.size}x{self.size} px images but {image_size} px were asked "
                f"(--image-size): pack the images again with --size {image_size} or ask for {self.size}"
            )
        files = [str(f) for f in files]
        rows = np.array([self._row_of.get(f, -1) for f in files], dtype=np.int64)
        missing = np.flatnonzero(rows < 0)
        if len(missing):
            i = int(missing[0])
            raise FlareLensError(
                f"{self.path} is stale: {len(missing)} labelled image(s) are not in it (first: {source} row {i + 2}, "
                f"file {files[i]!r}); run flarelens pack again with these labels"
            )
        if check_sources:
            self._check_sources(np.unique(rows))
        return rows

    def _check_sources(self, rows: np.ndarray) -> None:
        root = Path(self.index.get("images_root", ""))
        if not str(root) or not root.is_dir():
            return  # packed elsewhere (the usual case on a GPU node): nothing to compare with
        sizes, mtimes = self.index["source_bytes"], self.index["source_mtime_ns"]
        changed = []
        for r in rows:
            try:
                st = (root / self.files[r]).stat()
            except OSError:
                continue  # a source removed after packing does not make the packed image wrong
            if st.st_size != sizes[r] or st.st_mtime_ns != mtimes[r]:
                changed.append(int(r))
        if changed:
            raise FlareLensError(
                f"{self.path} is stale: {len(changed)} of its source images under {root} changed since they were "
                f"packed (first: {self.files[changed[0]]}); run flarelens pack again to update it"
            )


_OPEN: dict = {}


def read_images(pack: str | os.PathLike, files, image_size: int | None = None, source: str = "predictions"):
    """((B, 1, S, S) uint8 tensor, [source side in px]) of ``files`` from a pack, in order —
    what :func:`flarelens.data.load_image` gives for each file under the image root. For
    callers that read a few rows at a time (``explain``); the opened pack is kept."""
    import torch

    path = Path(pack)
    key = (str(path.resolve()), index_path(path).stat().st_mtime_ns if index_path(path).is_file() else 0)
    if key not in _OPEN:
        _OPEN.clear()
        _OPEN[key] = open_pack(path)
    opened = _OPEN[key]
    rows = opened.rows(files, image_size, source=source)
    images = np.ascontiguousarray(opened.images[rows])
    return torch.from_numpy(images)[:, None], [int(opened.source_px[r]) for r in rows]


def read_index(pack: str | os.PathLike) -> dict:
    """The index of a pack (its JSON), checked for the fields this version needs."""
    path = index_path(pack)
    try:
        index = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FlareLensError(
            f"{pack}: no index {path.name} beside it: not a flarelens pack (make one with flarelens pack)"
        ) from None
    except (OSError, ValueError) as exc:
        raise FlareLensError(f"{path}: unreadable pack index ({exc}); build the pack again with --overwrite") from None
    need = ("format", "size", "files", "timestamps", "source_bytes", "source_mtime_ns", "source_px", "complete")
    missing = [k for k in need if k not in index]
    if missing or index.get("format") != PACK_FORMAT:
        raise FlareLensError(f"{path}: not a pack index of this flarelens version (format {index.get('format')!r}); "
                             "build the pack again with --overwrite")
    return index


def open_pack(path: str | os.PathLike) -> Pack:
    """Open a complete pack for reading; refuse (one line) a missing, unfinished or damaged one."""
    path = Path(path)
    if not path.is_file():
        raise FlareLensError(f"{path}: no such pack file (make one with flarelens pack, or pass the image folder)")
    index = read_index(path)
    if not index["complete"]:
        raise FlareLensError(f"{path}: the pack is unfinished (its build was interrupted); run the same flarelens pack "
                             "command again to finish it")
    pack = Pack(path, index)
    shape = pack.images.shape
    if shape != (len(pack.files), pack.size, pack.size) or pack.images.dtype != np.uint8:
        raise FlareLensError(f"{path}: array of {shape} {pack.images.dtype} does not match its index "
                             f"({len(pack.files)} images of {pack.size} px); build it again with --overwrite")
    return pack


# --------------------------------------------------------------------------- building


def _init_worker() -> None:
    # Ctrl-C reaches the whole process group: let the parent stop the pool, so rows already
    # written are marked and nothing prints a worker's traceback.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    import torch

    torch.set_num_threads(1)


def _pack_rows(pack: str, root: str, files: list[str], rows: list[int], size: int) -> tuple[list[int], list[int], str]:
    """Worker: decode, resize and write ``rows`` into the array; (rows, source sides, error)."""
    from flarelens.data import load_image

    images = np.load(pack, mmap_mode="r+")
    sides = []
    try:
        for row, file in zip(rows, files):
            image, side = load_image(Path(root) / file, size, with_source_size=True)
            images[row] = image[0].numpy()
            sides.append(side)
    except FlareLensError as exc:
        images.flush()
        return rows[: len(sides)], sides, str(exc)
    images.flush()
    return rows, sides, ""


def _source_stats(root: Path, files: list[str], labels_name: str, first_rows: list[int]) -> tuple[list[int], list[int]]:
    sizes, mtimes, missing = [], [], []
    for i, f in enumerate(files):
        try:
            st = (root / f).stat()
        except OSError:
            missing.append(i)
            sizes.append(-1)
            mtimes.append(-1)
            continue
        sizes.append(int(st.st_size))
        mtimes.append(int(st.st_mtime_ns))
    if missing:
        i = missing[0]
        raise FlareLensError(
            f"{root / files[i]}: image file not found ({labels_name} row {first_rows[i] + 2}; {len(missing)} labelled "
            "images are missing): check --images, or label only existing images (flarelens label --images)"
        )
    return sizes, mtimes


def build_pack(labels, images, out, size: int = 512, workers: int | None = None, progress: bool = True,
               overwrite: bool = False) -> PackSummary:
    """Pack every image of ``labels`` (a labels.csv path or DataFrame with ``file`` and
    ``timestamp``) under the image root ``images`` into the uint8 array file ``out``, each
    decoded and resized to ``size``×``size`` px once (:func:`flarelens.data.load_image`).

    Uses ``workers`` processes (default: all CPU cores) that write straight into the
    memory-mapped array. Resumes an interrupted build; on a finished pack, repacks only
    the images whose source file changed. Refuses (one line) an ``out`` made from other
    labels or at another size unless ``overwrite``, and missing source images.
    """
    from flarelens.labels import read_labels
    from flarelens.progress import bar as progress_bar

    began = time.monotonic()
    out, root = Path(out), Path(images)
    size = int(size)
    if size < 1:
        raise FlareLensError(f"--size must be a positive number of pixels, got {size}")
    workers = int(workers) if workers is not None else (os.cpu_count() or 1)
    if workers < 1:
        raise FlareLensError(f"--workers must be at least 1, got {workers}")
    if not root.is_dir():
        raise FlareLensError(f"--images {root}: no such directory")
    if out.suffix != ".npy":
        raise FlareLensError(f"--out {out}: a pack is a NumPy array file: give it the .npy extension")
    if out.is_dir():
        raise FlareLensError(f"--out {out} is a directory; give a file name such as images-{size}.npy")
    labels_name = str(labels) if not isinstance(labels, pd.DataFrame) else "labels"
    table = read_labels(labels) if not isinstance(labels, pd.DataFrame) else labels
    for col in ("file", "timestamp"):
        if col not in table.columns:
            raise FlareLensError(f"{labels_name}: missing column {col!r}")
    all_files = [str(f) for f in table["file"]]
    first_row: dict[str, int] = {}
    for i, f in enumerate(all_files):
        first_row.setdefault(f, i)
    files = list(first_row)
    if not files:
        raise FlareLensError(f"{labels_name}: no rows to pack")
    rows_in_labels = list(first_row.values())
    timestamps = [str(table["timestamp"].iloc[i]) for i in rows_in_labels]
    sizes, mtimes = _source_stats(root, files, labels_name, rows_in_labels)
    n = len(files)

    summary = PackSummary(path=out, images=n)
    index = {
        "format": PACK_FORMAT, "size": size, "shape": [n, size, size], "dtype": "uint8",
        "files": files, "timestamps": timestamps, "source_bytes": sizes, "source_mtime_ns": mtimes,
        "source_px": [0] * n, "images_root": str(root.resolve()), "labels": labels_name, "complete": False,
    }
    done, summary.changed = _prepare(out, index, overwrite)
    todo = np.flatnonzero(done[:] == 0)
    summary.already = n - len(todo)

    chunks = [todo[i:i + CHUNK].tolist() for i in range(0, len(todo), CHUNK)]
    failures: list[str] = []

    def record(rows, sides, error):
        done[rows] = sides
        done.flush()
        bar.update(len(rows))
        summary.written += len(rows)
        if error:
            failures.append(error)

    with progress_bar(total=len(todo), progress=progress, unit="img", desc="pack", dynamic_ncols=True) as bar:
        if workers == 1 or len(chunks) <= 1:
            for chunk in chunks:
                record(*_pack_rows(str(out), str(root), [files[r] for r in chunk], chunk, size))
                if failures:
                    break
        else:
            with ProcessPoolExecutor(max_workers=min(workers, len(chunks)), initializer=_init_worker) as pool:
                futures = [pool.submit(_pack_rows, str(out), str(root), [files[r] for r in c], c, size) for c in chunks]
                try:
                    for future in as_completed(futures):
                        record(*future.result())
                        if failures:
                            break
                finally:
                    for future in futures:
                        future.cancel()
    if failures:
        raise FlareLensError(f"{failures[0]} (the {summary.written + summary.already} images packed so far are kept: "
                             "fix or remove it and run flarelens pack again)")
    index["source_px"] = [int(v) for v in done[:]]
    index["complete"] = True
    del done
    write_text(json.dumps(index) + "\n", index_path(out))
    done_path(out).unlink(missing_ok=True)
    summary.seconds = time.monotonic() - began
    return summary


def _prepare(out: Path, index: dict, overwrite: bool) -> tuple[np.ndarray, int]:
    """(done record of ``out``: int32, 0 = row to write, else the source's side; number of
    packed rows whose source changed), creating the pack or resuming it."""
    n, size = len(index["files"]), index["size"]
    old = None
    if out.exists() and not overwrite:
        old = read_index(out)  # refuses a foreign .npy with one line
        if old["size"] != size or old["files"] != index["files"]:
            raise FlareLensError(
                f"{out} was packed from other labels or at another size ({len(old['files'])} images at "
                f"{old['size']} px; now {n} at {size} px): pass --overwrite to rebuild it, or choose another --out"
            )
        existing = np.load(out, mmap_mode="r")
        if existing.shape != (n, size, size) or existing.dtype != np.uint8:
            raise FlareLensError(f"{out}: array does not match its index; pass --overwrite to rebuild it")
        del existing
    if old is None:
        index_path(out).unlink(missing_ok=True)
        np.lib.format.open_memmap(out, mode="w+", dtype=np.uint8, shape=(n, size, size)).flush()
        write_text(json.dumps(index) + "\n", index_path(out))
        done = np.lib.format.open_memmap(done_path(out), mode="w+", dtype=np.int32, shape=(n,))
        done.flush()
        return done, 0
    # A source whose size or modification time changed since it was packed is packed again.
    stale = (np.asarray(old["source_bytes"]) != np.asarray(index["source_bytes"])) | (
        np.asarray(old["source_mtime_ns"]) != np.asarray(index["source_mtime_ns"]))
    if old["complete"] and not stale.any():
        return np.asarray(old["source_px"], dtype=np.int32), 0  # up to date
    if done_path(out).is_file():
        done = np.lib.format.open_memmap(done_path(out), mode="r+")
        if done.shape != (n,):
            raise FlareLensError(f"{done_path(out)}: does not match the pack; pass --overwrite to rebuild it")
    else:
        done = np.lib.format.open_memmap(done_path(out), mode="w+", dtype=np.int32, shape=(n,))
        if old["complete"]:
            done[:] = np.asarray(old["source_px"], dtype=np.int32)
    stale &= done[:] != 0
    done[stale] = 0
    done.flush()
    # From here the index holds today's source stats and says unfinished until the end.
    write_text(json.dumps(index) + "\n", index_path(out))
    return done, int(stale.sum())
