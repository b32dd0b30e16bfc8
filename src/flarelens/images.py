"""Magnetogram image files: the naming convention, and loading any format as 8-bit arrays.

The convention of the original study, so that existing datasets drop in: under an image
root, one file per time, ``YYYY/MM/DD/HMI.mYYYY.MM.DD_HH.MM.SS.<ext>``. Pixel values are
8-bit: 0 G = 128 (127.5 exactly), clipped at +-250 G, off-disk 0 (Helioviewer's scaling).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pandas as pd

#: Extensions looked for, in order, when the format of a time's image is not known.
IMAGE_EXTENSIONS = (".jpg", ".png", ".jp2", ".fits", ".jpeg")

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


def load(path: str | os.PathLike):
    """The 8-bit grayscale magnetogram (H, W) uint8 of an image file.

    JPEG and PNG are read here; other formats are added by the conversion module.
    """
    import numpy as np
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("L"))
