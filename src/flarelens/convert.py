"""Batch conversion of magnetogram files (JP2 / FITS / JPEG / PNG) to N×N 8-bit images.

Each source file under SRC becomes the file with the same relative path under DST, with
the new extension (``2011/02/15/HMI.m2011.02.15_01.00.00.jp2`` ->
``2011/02/15/HMI.m2011.02.15_01.00.00.jpg``). Pixels are read by
:func:`flarelens.images.load` (Helioviewer's 8-bit scaling for FITS) and shrunk by area
averaging (OpenCV's ``INTER_AREA``: every output pixel is the mean of the source area it
covers, with fractional weights at its edges), which keeps the 0-G level and the
off-disk 0 and does not alias the small magnetic structure the way point sampling would.
Done files are skipped, corrupt inputs are reported and skipped, outputs are written
atomically, and the files are spread over a process pool.
"""

from __future__ import annotations

import logging
import os
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

from flarelens.errors import FlareLensError
from flarelens.fileio import atomic_path
from flarelens.images import FITS_EXTENSIONS, IMAGE_EXTENSIONS, disk_geometry, jp2_reduction, load, read_header, zero_off_disk

logger = logging.getLogger(__name__)

FORMATS = ("jpg", "png")
#: How a JPEG 2000 is decoded: "reduced" (at the coarsest resolution level with at least
#: 2xSIZE px), "coarsest" (the coarsest with at least SIZE px: fastest, least exact), both
#: with off-disk pixels set to 0 from the header's disk, or "full" (4096², then averaged).
DECODES = ("reduced", "coarsest", "full")
DEFAULT_DECODE = "reduced"
#: Resolution each decode keeps, in multiples of SIZE (None: full resolution).
_OVERSAMPLING = {"reduced": 2, "coarsest": 1, "full": None}

#: Default JPEG quality. At 95, flat 8×8 blocks (off-disk 0, a quiet 0-G area at 128) come
#: back exactly; the blocks the limb crosses ring by a few gray levels (at 100: by at most
#: 1). PNG is lossless.
JPEG_QUALITY = 95

# The FITS names come from images, which reads them: a name missing here left ".fits.fz" in the output name.
_SOURCE_EXTENSIONS = tuple(dict.fromkeys(IMAGE_EXTENSIONS + (".jp2",) + FITS_EXTENSIONS))


@dataclass
class ConvertSummary:
    """Counts of a conversion run; ``failures`` lists (source file, reason)."""

    converted: int = 0
    skipped: int = 0
    failed: int = 0
    duplicates: int = 0
    seconds: float = 0.0
    failures: list = field(default_factory=list)

    def format(self) -> str:
        rate = self.converted / self.seconds if self.seconds > 0 else 0.0
        lines = [f"converted {self.converted} ({rate:.1f} images/s), skipped {self.skipped} (already done), "
                 f"failed {self.failed}"]
        if self.duplicates:
            lines.append(f"{self.duplicates} source files ignored: another file of the same time and name "
                         "(e.g. both .jp2 and .fits) was used")
        for src, reason in self.failures[:10]:
            lines.append(f"  failed {src}: {reason}")
        if len(self.failures) > 10:
            lines.append(f"  ... and {len(self.failures) - 10} more")
        return "\n".join(lines)


@lru_cache(maxsize=16)
def _area_weights(n_in: int, n_out: int):
    """Sparse (n_out, n_in) matrix: row i holds the share of output pixel i's extent covered
    by each input pixel (rows sum to 1)."""
    from scipy import sparse

    scale = n_in / n_out
    rows, cols, vals = [], [], []
    for i in range(n_out):
        lo, hi = i * scale, (i + 1) * scale
        for j in range(int(np.floor(lo)), min(n_in, int(np.ceil(hi)))):
            overlap = min(hi, j + 1) - max(lo, j)
            if overlap > 1e-12:
                rows.append(i)
                cols.append(j)
                vals.append(overlap / scale)
    return sparse.csr_matrix((vals, (rows, cols)), shape=(n_out, n_in), dtype=np.float64)


@lru_cache(maxsize=16)
def _subband_weights(n_in: int, n_out: int, levels: int, n_full: int):
    """Sparse (n_out, n_in) matrix averaging a subband ``levels`` below full resolution
    (``n_full`` px) over output pixel areas, with each subband sample taken as a box of
    ``2**levels`` full-resolution pixels centred on pixel ``2**levels * j``, where the
    wavelet's low-pass puts it (rows sum to 1)."""
    from scipy import sparse

    step = 2**levels
    scale = n_full / n_out
    rows, cols, vals = [], [], []
    for i in range(n_out):
        lo, hi = i * scale, (i + 1) * scale  # pixel edges; full-resolution pixel p spans [p, p + 1]
        first = max(0, int(np.floor((lo - 0.5) / step - 0.5)))
        for j in range(first, n_in):
            box_lo, box_hi = step * j + 0.5 - step / 2, step * j + 0.5 + step / 2
            if box_lo >= hi:
                break
            overlap = min(hi, box_hi) - max(lo, box_lo)
            if overlap > 1e-12:
                rows.append(i)
                cols.append(j)
                vals.append(overlap)
    matrix = sparse.csr_matrix((vals, (rows, cols)), shape=(n_out, n_in), dtype=np.float64)
    return sparse.diags(1.0 / np.asarray(matrix.sum(axis=1)).ravel()) @ matrix


def area_resize(image, size: int | tuple[int, int]) -> np.ndarray:
    """Resize an 8-bit (H, W) image to ``size`` (N or (rows, cols)) by area averaging.

    Each output pixel is the mean of the part of the input it covers, weighted by overlap
    (OpenCV ``INTER_AREA`` semantics when shrinking); for integer factors this is the plain
    block mean. Rounded to the nearest integer, uint8.
    """
    image = np.asarray(image)
    if image.ndim != 2:
        raise ValueError(f"expected a 2-D image, got shape {image.shape}")
    out_h, out_w = (size, size) if np.isscalar(size) else size
    out_h, out_w = int(out_h), int(out_w)
    if out_h < 1 or out_w < 1:
        raise ValueError(f"output size must be positive, got {size}")
    h, w = image.shape
    if (h, w) == (out_h, out_w):
        return image.astype(np.uint8, copy=True)
    if h % out_h == 0 and w % out_w == 0:
        # The common case (4096 -> 512): an exact block mean, no weights needed.
        fh, fw = h // out_h, w // out_w
        blocks = image.reshape(out_h, fh, out_w, fw)
        mean = blocks.sum(axis=(1, 3), dtype=np.uint32) / (fh * fw)
    else:
        rows = _area_weights(h, out_h)
        cols = _area_weights(w, out_w)
        mean = (cols @ (rows @ image.astype(np.float64)).T).T
    return np.clip(np.rint(mean), 0, 255).astype(np.uint8)


def output_path(src_root, dst_root, src, fmt: str = "jpg") -> Path:
    """Where ``src`` (under ``src_root``) goes under ``dst_root``: same relative path, new extension."""
    rel = Path(src).relative_to(src_root)
    name = rel.name
    lowered = name.lower()
    for ext in sorted(_SOURCE_EXTENSIONS, key=len, reverse=True):  # ".fits.gz" before ".gz"
        if lowered.endswith(ext):
            name = name[: -len(ext)]
            break
    return Path(dst_root) / rel.parent / f"{name}.{fmt}"


def read_source(src, size: int = 512, decode: str = DEFAULT_DECODE, allow_any_fits: bool = False) -> np.ndarray:
    """The ``size``×``size`` 8-bit magnetogram of one source file (what :func:`convert_file` writes).

    JPEG 2000 with ``decode="reduced"``: decoded at the coarsest wavelet resolution level
    with at least 2x``size`` px (4096² -> 1024² for 512), area-averaged the rest of the way
    (each subband sample a box centred where the wavelet puts it), then every pixel wholly
    outside the disk of the file's header set to exactly 0 (the low-pass band rings a
    little beyond the limb). ``"coarsest"``: the same from the level with at least ``size``
    px. ``decode="full"`` and every other format: the full-resolution pixels,
    area-averaged. Non-square sources are refused.
    """
    if decode not in DECODES:
        raise FlareLensError(f"--decode must be one of {', '.join(DECODES)}, got {decode!r}")
    size = int(size)
    levels = 0
    if _OVERSAMPLING[decode] and Path(src).suffix.lower() in (".jp2", ".jpx", ".j2k") and Path(src).is_file():
        # "reduced" stops one level finer than SIZE: the subband at SIZE itself differs from the
        # full decode's area average by ~1.7 gray levels on the disk, at 2xSIZE by ~0.6
        # (benchmarks/README.md).
        levels, full_side = jp2_reduction(src, _OVERSAMPLING[decode] * size)
    pixels = load(src, reduce=levels, allow_any_fits=allow_any_fits)
    if pixels.shape[0] != pixels.shape[1]:
        raise FlareLensError(f"{src}: {pixels.shape[1]}x{pixels.shape[0]} px image; a full-disk magnetogram is "
                             "square and flarelens does not squash it (crop or pad it to a square first)")
    if not levels:
        return area_resize(pixels, size)
    weights = _subband_weights(pixels.shape[0], size, levels, full_side)
    mean = weights @ (weights @ pixels.astype(np.float64)).T
    pixels = np.clip(np.floor(mean.T + 0.5), 0, 255).astype(np.uint8)
    disk = disk_geometry(read_header(src), size)
    return zero_off_disk(pixels, disk) if disk is not None else pixels


def convert_file(src, dst, size: int = 512, fmt: str | None = None, quality: int = JPEG_QUALITY,
                 decode: str = DEFAULT_DECODE, allow_any_fits: bool = False) -> Path:
    """Convert one file to an ``size``×``size`` 8-bit image at ``dst`` (written atomically).

    Pixels from :func:`read_source` (``decode``, ``allow_any_fits``); the format follows
    ``fmt`` or ``dst``'s extension (JPEG at ``quality``, or PNG). Raises ``FlareLensError``
    for an unreadable, non-square or (FITS) non-magnetogram source.
    """
    from PIL import Image

    dst = Path(dst)
    fmt = (fmt or dst.suffix.lstrip(".")).lower()
    pixels = read_source(src, size, decode, allow_any_fits)
    with atomic_path(dst) as tmp:
        image = Image.fromarray(pixels, mode="L")
        if fmt in ("jpg", "jpeg"):
            image.save(tmp, format="JPEG", quality=int(quality))
        elif fmt == "png":
            image.save(tmp, format="PNG")
        else:
            raise ValueError(f"unknown output format {fmt!r} (expected jpg or png)")
    return dst


def _convert_task(src: str, dst: str, size: int, fmt: str, quality: int, decode: str,
                  allow_any_fits: bool) -> tuple[str, str]:
    """Worker entry point: (src, "" on success or the reason it failed). Never raises for bad input."""
    try:
        convert_file(src, dst, size, fmt, quality, decode, allow_any_fits)
    except FileNotFoundError:
        return src, "file disappeared before it could be read"
    except FlareLensError as exc:
        return src, str(exc).removeprefix(f"{src}: ")
    except (OSError, ValueError) as exc:
        return src, f"{type(exc).__name__}: {exc}"
    return src, ""


def find_sources(src_root) -> list[Path]:
    """Image files under ``src_root`` (.jp2, .fits, .jpg, .png, ...), sorted; hidden files
    (a download's temporary ``.*.part.jp2``) are left out."""
    src_root = Path(src_root)
    found = []
    for dirpath, dirnames, filenames in os.walk(src_root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in filenames:
            if not name.startswith(".") and name.lower().endswith(_SOURCE_EXTENSIONS):
                found.append(Path(dirpath) / name)
    return sorted(found)


def convert(src, dst, size: int = 512, fmt: str = "jpg", workers: int | None = None,
            quality: int = JPEG_QUALITY, progress: bool = True, decode: str = DEFAULT_DECODE,
            allow_any_fits: bool = False) -> ConvertSummary:
    """Convert every image file under ``src`` to ``size``×``size`` (px) 8-bit ``fmt`` under ``dst``.

    Keeps relative paths (the naming convention); skips outputs that exist already;
    reports and skips corrupt, non-square and (FITS) non-magnetogram inputs. ``workers``
    processes (default: all CPU cores); ``quality``: JPEG quality (1-100); ``decode``: how
    JPEG 2000 is decoded (:func:`read_source`); ``allow_any_fits``: convert FITS files whose
    header says they are not magnetograms in gauss anyway.
    """
    import time

    from flarelens.progress import bar as progress_bar

    src, dst = Path(src), Path(dst)
    fmt = fmt.lower().lstrip(".")
    fmt = "jpg" if fmt == "jpeg" else fmt
    if fmt not in FORMATS:
        raise FlareLensError(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    if int(size) < 1:
        raise FlareLensError(f"--size must be a positive number of pixels, got {size}")
    if not src.is_dir():
        raise FlareLensError(f"{src}: no such directory (the image root to convert)")
    if decode not in DECODES:
        raise FlareLensError(f"--decode must be one of {', '.join(DECODES)}, got {decode!r}")
    if not 1 <= int(quality) <= 100:
        raise FlareLensError(f"--quality must be between 1 and 100, got {quality}")
    workers = int(workers) if workers is not None else (os.cpu_count() or 1)
    if workers < 1:
        raise FlareLensError(f"--workers must be at least 1, got {workers}")

    began = time.monotonic()
    summary = ConvertSummary()
    todo: dict[Path, Path] = {}
    seen: set[Path] = set()
    for path in find_sources(src):
        out = output_path(src, dst, path, fmt)
        if out in seen:
            summary.duplicates += 1
            continue
        seen.add(out)
        if out.resolve() == path.resolve() or out.exists():
            summary.skipped += 1  # done already (or a file converted onto itself: it is what was asked)
        else:
            todo[out] = path
    if not todo and not summary.skipped:
        raise FlareLensError(f"{src}: no image files (.jp2, .fits, .jpg, .png) found")

    jobs = [(str(path), str(out), int(size), fmt, int(quality), decode, bool(allow_any_fits))
            for out, path in todo.items()]
    with progress_bar(total=len(jobs), progress=progress, unit="img", desc="convert", dynamic_ncols=True) as bar:
        if workers == 1 or len(jobs) <= 1:
            results = (_convert_task(*job) for job in jobs)
            _collect(results, summary, bar)
        else:
            with ProcessPoolExecutor(max_workers=min(workers, len(jobs))) as pool:
                futures = [pool.submit(_convert_task, *job) for job in jobs]
                try:
                    _collect((f.result() for f in as_completed(futures)), summary, bar)
                except BaseException:
                    for future in futures:
                        future.cancel()
                    raise
    summary.seconds = time.monotonic() - began
    return summary


def _collect(results, summary: ConvertSummary, bar) -> None:
    for src, reason in results:
        if reason:
            summary.failed += 1
            summary.failures.append((src, reason))
            logger.warning("convert: skipped %s: %s", src, reason)
        else:
            summary.converted += 1
        bar.update(1)
