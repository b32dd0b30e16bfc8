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
_FITS_EXTENSIONS = (".fits", ".fit", ".fts", ".fits.gz", ".fits.fz")

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
    return str(path).lower().endswith(_FITS_EXTENSIONS)


def load(path: str | os.PathLike) -> np.ndarray:
    """The 8-bit grayscale magnetogram (H, W) uint8 of an image file.

    - ``.jpg`` / ``.png`` / ``.jp2`` (Helioviewer's 8-bit JPEG 2000): the pixels as stored,
      row 0 at the top (solar north up for Helioviewer files).
    - ``.fits``: an HMI line-of-sight magnetogram in gauss, turned into Helioviewer's 8-bit
      scaling by :func:`byte_scale` (clip to +-250 G, 0 G -> 128, NaN/off-disk -> 0) and
      rotated so that solar north is up and row 0 is the top (:func:`north_up`).

    A missing file raises ``FileNotFoundError``; an unreadable one ``FlareLensError``.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such image file")
    name = path.name.lower()
    if name.endswith(_FITS_EXTENSIONS):
        data, header = _read_fits(path)
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
            im.load()
            return np.asarray(im.convert("L"))
    except FlareLensError:
        raise
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise FlareLensError(f"{path}: cannot decode image ({exc}); the file is corrupt or truncated") from None


def byte_scale(gauss, limit: float = CLIP_GAUSS) -> np.ndarray:
    """Helioviewer's 8-bit scaling of a magnetogram in gauss.

    Clips to [-limit, +limit] G and maps linearly to 0..255 (``-limit`` -> 0, 0 G -> 127.5,
    which rounds to 128, ``+limit`` -> 255); NaN (off-disk) -> 0.
    """
    g = np.asarray(gauss, dtype=np.float32)
    scaled = (np.clip(g, -limit, limit) + limit) * np.float32(255.0 / (2 * limit))
    out = np.rint(scaled)
    out[~np.isfinite(g)] = 0  # clip keeps NaN; +-inf are clipped above but count as invalid pixels
    return out.astype(np.uint8)


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
    if "PC1_1" in header and "PC2_1" in header:
        return math.degrees(math.atan2(float(header["PC2_1"]), float(header["PC1_1"])))
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
            if node.text is not None and node.tag not in ("HISTORY", "COMMENT"):
                header[str(node.tag).upper()] = _header_value(node.text.strip())
    return header


def _header_value(text: str):
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text
