"""Magnetogram image files: the naming convention, and loading any format as 8-bit arrays.

The convention of the original study, so that existing datasets drop in: under an image
root, one file per time, ``YYYY/MM/DD/HMI.mYYYY.MM.DD_HH.MM.SS.<ext>``. Pixel values are
8-bit: 0 G = 128 (127.5 exactly), clipped at +-250 G, off-disk 0 (Helioviewer's scaling).
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path

import numpy as np
import pandas as pd

from flarelens.errors import FlareLensError

#: Extensions looked for, in order, when the format of a time's image is not known.
IMAGE_EXTENSIONS = (".jpg", ".png", ".jp2", ".fits", ".jpeg")

#: Field strength (gauss) at which Helioviewer's HMI magnetogram byte scale saturates.
CLIP_GAUSS = 250.0

_PIL_EXTENSIONS = (".jpg", ".jpeg", ".png", ".jp2", ".j2k", ".jpx")
#: Names of FITS files, plain or compressed (convert reads them all).
FITS_EXTENSIONS = (".fits", ".fit", ".fts", ".fits.gz", ".fits.fz")

_NAME_RE = re.compile(r"HMI\.m(\d{4})\.(\d{2})\.(\d{2})_(\d{2})\.(\d{2})\.(\d{2})")


def image_relpath(time, ext: str = ".jpg") -> str:
    """Relative path of the image of a UTC time: ``2011/02/15/HMI.m2011.02.15_01.00.00.jpg``."""
    t = pd.Timestamp(time)
    if t.tzinfo is not None:
        t = t.tz_convert("UTC")
    if ext and not ext.startswith("."):
        ext = "." + ext
    return f"{t:%Y/%m/%d}/HMI.m{t:%Y.%m.%d_%H.%M.%S}{ext}"


def find_image(root: str | os.PathLike, time, extensions=IMAGE_EXTENSIONS) -> Path | None:
    """The existing image file of ``time`` under ``root`` (first extension found), or None."""
    base = Path(root) / image_relpath(time, "")
    for ext in extensions:
        candidate = base.with_name(base.name + ext)
        if candidate.is_file():
            return candidate
    return None


def parse_image_time(path: str | os.PathLike) -> pd.Timestamp:
    """UTC time encoded in an image file name (``.../HMI.m2011.02.15_01.00.00.jpg``).

    Raises ``ValueError`` when the name does not follow the convention.
    """
    match = _NAME_RE.search(str(path))
    if not match:
        raise ValueError(f"{path}: file name does not follow HMI.mYYYY.MM.DD_HH.MM.SS.<ext>")
    y, mo, d, h, mi, s = (int(g) for g in match.groups())
    return pd.Timestamp(year=y, month=mo, day=d, hour=h, minute=mi, second=s, tz="UTC")


def is_fits(path: str | os.PathLike) -> bool:
    """Whether ``path`` names a FITS file (``.fits``, ``.fit``, ``.fts``, ``.fits.gz``, ``.fits.fz``)."""
    return str(path).lower().endswith(FITS_EXTENSIONS)


def load(path: str | os.PathLike, *, reduce: int = 0, allow_any_fits: bool = False) -> np.ndarray:
    """The 8-bit grayscale magnetogram (H, W) uint8 of an image file.

    - ``.jpg`` / ``.png`` / ``.jp2`` (Helioviewer's 8-bit JPEG 2000): the pixels as stored,
      row 0 at the top (solar north up for Helioviewer files).
    - ``.fits``: an HMI line-of-sight magnetogram in gauss, turned into Helioviewer's 8-bit
      scaling by :func:`byte_scale` (clip to +-250 G, 0 G -> 128, NaN/off-disk -> 0) and
      rotated so that solar north is up and row 0 is the top (:func:`north_up`). A FITS
      whose header says it is something else (``BUNIT`` not gauss, ``CONTENT`` not a
      magnetogram: a continuum image, say) is refused unless ``allow_any_fits``.

    ``reduce`` (JPEG 2000 only; other formats ignore it): discard that many of the finest
    wavelet resolution levels while decoding (OpenJPEG's resolution reduction; each halves
    the side, see :func:`jp2_reduction`), at a fraction of the cost of a full decode. The
    image is then the codestream's low-pass subband: sample n sits at full-resolution pixel
    ``2**reduce * n`` (not at the centre of a block), and off-disk pixels near the limb may
    ring (:func:`zero_off_disk` puts them back to 0).

    A full-disk FITS or JPEG 2000 image that is not square is refused (it would be squashed).
    A missing file raises ``FileNotFoundError``; an unreadable one ``FlareLensError``.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such image file")
    name = path.name.lower()
    if name.endswith(FITS_EXTENSIONS):
        data, header = _read_fits(path)
        if not allow_any_fits:
            check_magnetogram_header(header, path)
        _check_square(data.shape, path)
        return byte_scale(north_up(data, header))
    if not name.endswith(_PIL_EXTENSIONS):
        raise FlareLensError(f"{path}: unknown image format (expected .jpg, .png, .jp2 or .fits)")
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            if im.mode.startswith("I") or im.mode == "F":
                # Converting a 16-bit or float image to "L" would clip it silently.
                raise FlareLensError(
                    f"{path}: {im.mode} image; expected 8-bit grayscale as Helioviewer serves it "
                    "(convert the source FITS instead)"
                )
            if im.format == "JPEG2000":
                _check_square((im.size[1], im.size[0]), path)
                if reduce:
                    im.reduce = int(reduce)
            im.load()
            return np.asarray(im.convert("L"))
    except FlareLensError:
        raise
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise FlareLensError(f"{path}: cannot decode image ({exc}); the file is corrupt or truncated") from None


def jp2_reduction(path: str | os.PathLike, min_size: int) -> tuple[int, int]:
    """(levels, full side in px): how many resolution levels of a JPEG 2000 file can be
    discarded while its decoded side stays >= ``min_size`` px (at most as many as the
    codestream has), read from the codestream header without decoding."""
    import glymur

    import warnings

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # glymur warns on truncated files; decoding then says so in one line
            codestream = glymur.Jp2k(str(path)).get_codestream(header_only=True)
    except Exception as exc:  # noqa: BLE001 - glymur raises several types on bad files
        raise FlareLensError(f"{path}: cannot parse the JPEG 2000 codestream ({exc}); the file is corrupt") from None
    levels = min((int(seg.num_res) for seg in codestream.segment if seg.marker_id == "COD"), default=0)
    siz = next((seg for seg in codestream.segment if seg.marker_id == "SIZ"), None)
    if siz is None:
        raise FlareLensError(f"{path}: JPEG 2000 codestream without a SIZ marker; the file is corrupt")
    side = int(siz.xsiz) - int(siz.xosiz)
    k = 0
    # OpenJPEG rounds a reduced side up: ceil(side / 2**k).
    while k < levels and -(-side // 2 ** (k + 1)) >= min_size:
        k += 1
    return k, side


def _check_square(shape, path) -> None:
    if shape[0] != shape[1]:
        raise FlareLensError(
            f"{path}: {shape[1]}x{shape[0]} px image; a full-disk magnetogram is square and flarelens does not "
            "squash it (crop or pad it to a square first)"
        )


#: BUNIT values of a field in gauss (HMI writes "Gauss"; 1 Mx/cm² = 1 G).
GAUSS_UNITS = ("g", "gauss", "mx/cm^2", "mx/cm2", "mx cm-2", "mx/cm**2")


def check_magnetogram_header(header, path="FITS file") -> None:
    """Refuse a FITS header that says it is not a line-of-sight magnetogram in gauss.

    ``BUNIT`` (when present) must be gauss, and ``CONTENT`` (when present) must name a
    magnetogram, as HMI's line-of-sight files do (``CONTENT = 'MAGNETOGRAM'``,
    ``BUNIT = 'Gauss'``). A header with neither key is taken at its word as gauss.
    """
    unit = str(header.get("BUNIT", "") or "").strip()
    content = str(header.get("CONTENT", "") or "").strip()
    what = ""
    if unit and unit.lower() not in GAUSS_UNITS:
        what = f"BUNIT = {unit!r}"
    elif content and "MAGNETOGRAM" not in content.upper():
        what = f"CONTENT = {content!r}"
    if what:
        raise FlareLensError(
            f"{path}: its header says {what}: not a line-of-sight magnetogram in gauss, so the +-250 G scale "
            "does not apply (convert --force-fits to convert it anyway)"
        )


def byte_scale(gauss, limit: float = CLIP_GAUSS) -> np.ndarray:
    """Helioviewer's 8-bit scaling of a magnetogram in gauss: the one definition in flarelens.

    Clips to [-limit, +limit] G and maps linearly, ``clip(B) / limit * 127.5 + 127.5``
    (``-limit`` -> 0, 0 G -> 127.5, ``+limit`` -> 255), rounded half up; NaN and +-inf
    (off-disk or invalid pixels) -> 0. Computed in the input's float precision (float32
    for FITS data and simulated fields). Returns uint8 of the input's shape.
    """
    g = np.asarray(gauss)
    if not np.issubdtype(g.dtype, np.floating):
        g = g.astype(np.float32)
    finite = np.isfinite(g)
    scaled = np.clip(np.where(finite, g, 0), -limit, limit) / limit * 127.5 + 127.5
    return np.where(finite, np.floor(scaled + 0.5), 0).astype(np.uint8)


def disk_geometry(header, size: int) -> tuple[float, float, float] | None:
    """(cx, cy, radius) in px of the solar disk on a ``size``×``size`` north-up image (row 0
    at the top, pixel centres at integer coordinates) described by a FITS or Helioviewer
    JP2 header; None when the header lacks any of NAXIS1/2, CRPIX1/2, CDELT1/2, RSUN_OBS.

    The header describes the full-resolution image (FITS convention: 1-based pixels, row 1
    at the bottom); the disk centre is the pixel of (0", 0") and the radius RSUN_OBS
    (arcsec) over CDELT1 (arcsec per pixel), both scaled to ``size``.
    """
    try:
        n1, n2 = float(header["NAXIS1"]), float(header["NAXIS2"])
        x0 = float(header["CRPIX1"]) - 1 - float(header.get("CRVAL1", 0.0) or 0.0) / float(header["CDELT1"])
        y0 = float(header["CRPIX2"]) - 1 - float(header.get("CRVAL2", 0.0) or 0.0) / float(header["CDELT2"])
        radius = float(header["RSUN_OBS"]) / abs(float(header["CDELT1"]))
    except (KeyError, TypeError, ValueError, ZeroDivisionError):
        return None
    fx, fy = n1 / size, n2 / size
    y0 = (n2 - 1) - y0  # rows counted from the top
    return (x0 + 0.5) / fx - 0.5, (y0 + 0.5) / fy - 0.5, radius / fx


def zero_off_disk(pixels: np.ndarray, disk: tuple[float, float, float]) -> np.ndarray:
    """``pixels`` (N, N) with every pixel that lies wholly outside the disk set to exactly 0.

    A pixel is the unit square around its centre; it is off the disk when the square's
    nearest point to the disk centre is farther than the radius. Pixels the limb crosses
    keep their value (their area average holds some disk). Returns a new array.
    """
    cx, cy, radius = disk
    h, w = pixels.shape
    dx = np.maximum(np.abs(np.arange(w) - cx) - 0.5, 0.0)
    dy = np.maximum(np.abs(np.arange(h) - cy) - 0.5, 0.0)
    outside = dy[:, None] ** 2 + dx[None, :] ** 2 > radius**2
    return np.where(outside, 0, pixels).astype(pixels.dtype)


def north_up(data, header=None, max_residual_deg: float = 0.1) -> np.ndarray:
    """A FITS image array turned into display orientation: solar north up, row 0 at the top.

    FITS stores row 0 at the bottom and the image may be rolled by ``CROTA2`` (HMI level-1
    data is rotated by about 180 degrees). Multiples of 90 degrees are undone exactly
    (``np.rot90``, no resampling); a remaining roll larger than ``max_residual_deg`` is undone
    by bilinear rotation about the array centre (NaN outside), the same sense as
    ``sunpy.map.GenericMap.rotate``. A smaller residual (HMI's is a few hundredths of a
    degree: about 2 px at the limb of a 4096² image, under half a pixel at 512²) is left
    rather than resampling the whole image for it.
    """
    data = np.asarray(data, dtype=np.float32)
    angle = _roll_angle(header) if header is not None else 0.0
    quarter_turns = int(round(angle / 90.0))
    data = np.rot90(data, -quarter_turns)
    residual = angle - 90.0 * quarter_turns
    if abs(residual) > max_residual_deg:
        from scipy import ndimage

        data = ndimage.rotate(data, -residual, reshape=False, order=1, mode="constant", cval=np.nan)
    return np.ascontiguousarray(data[::-1])


def _roll_angle(header) -> float:
    """CROTA2 of a FITS header in degrees (from CROTA2, or from the PC matrix), 0 when absent."""
    for key in ("CROTA2", "CROTA"):
        if key in header and header[key] is not None:
            return float(header[key])
    # FITS takes a missing PC term as the identity's (astropy writes a half turn as
    # PC1_1 = PC2_2 = -1 alone), so one term present is enough.
    if "PC1_1" in header or "PC2_1" in header:
        return math.degrees(math.atan2(float(header.get("PC2_1", 0.0)), float(header.get("PC1_1", 1.0))))
    return 0.0


def _read_fits(path: Path):
    """(data float32, header) of the first 2-D image HDU of a FITS file (JSOC files are tile-compressed)."""
    import warnings

    from astropy.io import fits
    from astropy.io.fits.verify import VerifyWarning

    try:
        with warnings.catch_warnings():
            # JSOC/sunpy files often carry e.g. a BLANK key on float data: harmless, but noisy.
            warnings.simplefilter("ignore", VerifyWarning)
            with fits.open(path, memmap=False) as hdus:
                for hdu in hdus:
                    if hdu.data is not None and getattr(hdu.data, "ndim", 0) == 2:
                        return np.asarray(hdu.data, dtype=np.float32), hdu.header.copy()
    except (OSError, ValueError, TypeError) as exc:
        raise FlareLensError(f"{path}: cannot read FITS file ({exc}); the file is corrupt or truncated") from None
    raise FlareLensError(f"{path}: no 2-D image in this FITS file")


def read_header(path: str | os.PathLike) -> dict:
    """The FITS header of an image file as a dict (upper-case keys; numbers as int/float).

    For a Helioviewer ``.jp2`` it is the FITS part of the XML box (glymur parses the box
    without decoding the image); for ``.fits`` the header of the image HDU; for other
    formats an empty dict.
    """
    path = Path(path)
    if is_fits(path):
        _, header = _read_fits(path)
        return {key: header[key] for key in header if key not in ("", "COMMENT", "HISTORY")}
    if path.suffix.lower() not in (".jp2", ".jpx", ".j2k"):
        return {}
    import glymur

    try:
        boxes = glymur.Jp2k(str(path)).box
    except Exception as exc:  # noqa: BLE001 - glymur raises several types on bad files
        raise FlareLensError(f"{path}: cannot parse JPEG 2000 boxes ({exc})") from None
    header: dict = {}
    for box in boxes:
        if box.box_id != "xml ":
            continue
        fits_node = box.xml.getroot().find("fits")
        if fits_node is None:
            continue
        for node in fits_node:
            key = str(node.tag).upper()
            if node.text is not None and key not in ("HISTORY", "COMMENT"):
                header[key] = _header_value(node.text.strip())
    return header


def _header_value(text: str):
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text
