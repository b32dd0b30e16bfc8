"""Torch datasets of labelled magnetograms and the study's augmentation scheme.

A :class:`MagnetogramDataset` reads the rows of a labels table (``file`` relative to an
image root, ``target``) and returns each image as a (1, H, W) tensor scaled to [0, 1]
with its target. Images of another size than ``image_size`` are resized (bilinear with
antialiasing, i.e. an area-like average when shrinking).

The original study's training scheme (``augment="study"``): every flaring (FL) training
instance is used four times per epoch — original, horizontal flip, vertical flip, rotation
by a random angle within +-5° — and every non-flaring (NF) instance twice — original, and
one random choice of those three. The dataset therefore holds an *expanded index* of
(row, augmentation) pairs, so an epoch has the right length, a distributed sampler can
shard it, and the random choices are a pure function of (seed, epoch, position): a rerun
or a resumed run sees exactly the same images. Validation sets use ``augment="none"``.

Decoding and resizing dominate the data cost, so small datasets are held in memory as
one uint8 tensor (``cache=True``, automatic up to 2 GiB): each image is decoded and
resized once, not once per epoch, and augmentations work on uint8 pixels.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from flarelens.errors import FlareLensError

#: Augmentation codes of the expanded index.
ORIGINAL, HFLIP, VFLIP, ROTATE, RANDOM_CHOICE = 0, 1, 2, 3, 4
AUGMENT_NAMES = {ORIGINAL: "original", HFLIP: "hflip", VFLIP: "vflip", ROTATE: "rotate", RANDOM_CHOICE: "random"}
#: The study rotated by a uniform angle within +-5 degrees.
MAX_ROTATION_DEG = 5.0

AUGMENT_SCHEMES = ("study", "none")

#: Caching is automatic below this many bytes of decoded images (``cache="auto"``).
AUTO_CACHE_BYTES = 2 * 1024**3

def read_image(path: str | os.PathLike) -> torch.Tensor:
    """The 8-bit magnetogram of an image file (any format :func:`flarelens.images.load`
    reads: JPEG, PNG, JPEG 2000, FITS) as a (1, H, W) uint8 tensor."""
    from flarelens import images

    path = Path(path)
    try:
        array = images.load(path)
    except FileNotFoundError:
        raise FlareLensError(f"{path}: image file not found (check --images and the file column of the labels)") from None
    array = np.asarray(array)
    if array.dtype != np.uint8 or array.ndim != 2:
        raise FlareLensError(f"{path}: expected an 8-bit grayscale image, got {array.dtype} {array.shape}")
    # np.array copies: the loader may hand back a read-only view of a decoder buffer.
    return torch.from_numpy(np.array(array, copy=True))[None]


def resize_image(image: torch.Tensor, size: int | None) -> torch.Tensor:
    """``image`` (C, H, W) resized to (C, size, size) when it differs; uint8 stays uint8.

    Bilinear with antialiasing: shrinking averages over the source pixels like an area
    filter, so small active regions are not aliased away.
    """
    if size is None or tuple(image.shape[-2:]) == (size, size):
        return image
    from torchvision.transforms.v2 import functional as F

    return F.resize(image, [size, size], interpolation=F.InterpolationMode.BILINEAR, antialias=True)


def augment_image(image: torch.Tensor, code: int, angle: float = 0.0) -> torch.Tensor:
    """Apply augmentation ``code`` (ORIGINAL, HFLIP, VFLIP, ROTATE) to a (C, H, W) image.

    ``angle`` (degrees, counter-clockwise) is used by ROTATE, nearest-neighbour as the
    study's torchvision default; the corners uncovered by the rotation are filled with 0,
    the off-disk value.
    """
    from torchvision.transforms.v2 import functional as F

    if code == ORIGINAL:
        return image
    if code == HFLIP:
        return F.horizontal_flip(image)
    if code == VFLIP:
        return F.vertical_flip(image)
    if code == ROTATE:
        if image.dtype == torch.uint8 and image.shape[0] == 1:
            # Through PIL: single-threaded and ~0.5 ms at 128 px, where the tensor path
            # (affine grid + grid_sample) spins up the intra-op thread pool for one image
            # and costs 10-30x more on a busy CPU.
            rotated = F.rotate(F.to_pil_image(image), angle, interpolation=F.InterpolationMode.NEAREST, fill=0)
            return F.pil_to_tensor(rotated)
        return F.rotate(image, angle, interpolation=F.InterpolationMode.NEAREST, fill=0)
    raise ValueError(f"unknown augmentation code {code!r}")


def expanded_index(targets, augment: str = "study") -> np.ndarray:
    """(row, augmentation code) pairs of one epoch, as an (n, 2) int64 array.

    ``"study"``: FL rows four times (original, hflip, vflip, rotate), NF rows twice
    (original, random choice); ``"none"``: every row once, as is. FL entries come first,
    as in the study's concatenated datasets (the sampler shuffles anyway).
    """
    targets = np.asarray(targets).astype(int)
    rows = np.arange(len(targets))
    if augment == "none":
        return np.stack([rows, np.full(len(rows), ORIGINAL)], axis=1).astype(np.int64)
    if augment != "study":
        raise FlareLensError(f"augment must be one of {', '.join(AUGMENT_SCHEMES)}, got {augment!r}")
    fl, nf = rows[targets == 1], rows[targets == 0]
    parts = [np.stack([fl, np.full(len(fl), code)], axis=1) for code in (ORIGINAL, HFLIP, VFLIP, ROTATE)]
    parts += [np.stack([nf, np.full(len(nf), code)], axis=1) for code in (ORIGINAL, RANDOM_CHOICE)]
    return np.concatenate(parts).astype(np.int64).reshape(-1, 2)


def _augmentation_rng(seed: int, epoch: int, position: int) -> np.random.Generator:
    # A generator per (seed, epoch, position): results do not depend on which worker or
    # rank draws the item, nor on how many items were drawn before it.
    return np.random.default_rng([seed & 0xFFFFFFFF, epoch, position])


class MagnetogramDataset(Dataset):
    """Labelled magnetograms: item i is ``(image, target)``.

    ``image`` is a (1, image_size, image_size) float32 tensor in [0, 1] (or uint8 in
    0-255 with ``as_uint8=True``, for moving 4x fewer bytes to a GPU), ``target`` an int
    (1 = a flare >= the threshold in the window).

    Parameters
    ----------
    labels: DataFrame with ``file`` (relative to ``root``) and ``target`` columns.
    root: image root directory.
    image_size: side in px the images are resized to (None: keep the files' size; they
        must then all have the same size to be batched).
    augment: ``"study"`` (the expanded, augmented index; training) or ``"none"``.
    seed: seeds the augmentation choices together with the epoch (:meth:`set_epoch`).
    cache: True to decode every image once into memory, False to decode per item,
        ``"auto"`` to cache when the decoded images take at most 2 GiB.
    """

    def __init__(
        self,
        labels: pd.DataFrame,
        root: str | os.PathLike,
        image_size: int | None = None,
        augment: str = "none",
        seed: int = 0,
        cache: bool | str = "auto",
        as_uint8: bool = False,
        progress: bool = False,
    ):
        missing = [c for c in ("file", "target") if c not in labels.columns]
        if missing:
            raise FlareLensError(f"labels: missing column(s) {', '.join(missing)}")
        self.root = Path(root)
        if not self.root.is_dir():
            raise FlareLensError(f"--images {self.root}: no such directory")
        self.labels = labels.reset_index(drop=True)
        self.files = [str(f) for f in self.labels["file"]]
        self.targets = self.labels["target"].to_numpy().astype(np.int64)
        self.image_size = image_size
        self.augment = augment
        self.index = expanded_index(self.targets, augment)
        self.seed = int(seed)
        self.epoch = 0
        self.as_uint8 = as_uint8
        self._cache: torch.Tensor | None = None
        if cache == "auto":
            cache = image_size is not None and len(self.files) * image_size**2 <= AUTO_CACHE_BYTES
        if cache:
            self._fill_cache(progress)

    def __len__(self) -> int:
        return len(self.index)

    def set_epoch(self, epoch: int) -> None:
        """Choose the augmentations of epoch ``epoch`` (call before each epoch)."""
        self.epoch = int(epoch)

    def path(self, row: int) -> Path:
        """Absolute path of the image of labels row ``row``."""
        return self.root / self.files[row]

    def load_row(self, row: int) -> torch.Tensor:
        """The (1, S, S) uint8 image of labels row ``row``, resized, not augmented."""
        if self._cache is not None:
            return self._cache[row]
        return self._read(row)

    def _read(self, row: int) -> torch.Tensor:
        path = self.path(row)
        if not path.is_file():
            raise FlareLensError(
                f"{path}: image file not found (labels row {row + 2}, file {self.files[row]!r}; check --images)"
            )
        return resize_image(read_image(path), self.image_size)

    def _fill_cache(self, progress: bool) -> None:
        from tqdm.auto import tqdm

        n = len(self.files)
        if n == 0:
            self._cache = torch.empty(0, 1, self.image_size or 0, self.image_size or 0, dtype=torch.uint8)
            return
        first = self._read(0)
        cache = torch.empty((n, *first.shape), dtype=torch.uint8)
        cache[0] = first

        def fill(row: int) -> None:
            image = self._read(row)
            if image.shape != first.shape:
                raise FlareLensError(
                    f"{self.path(row)}: image is {tuple(image.shape[-2:])} px but {self.files[0]} is "
                    f"{tuple(first.shape[-2:])}; pass --image-size to resize them to one size"
                )
            cache[row] = image

        # Decoders release the GIL, so threads decode in parallel without copying the cache.
        with ThreadPoolExecutor(max_workers=max(1, min(8, os.cpu_count() or 1))) as pool:
            for _ in tqdm(pool.map(fill, range(1, n)), total=n - 1, desc="loading images", unit="img",
                          disable=not progress, leave=False):
                pass
        self._cache = cache

    def augmentation(self, i: int) -> tuple[int, int, float]:
        """(labels row, augmentation code, angle in degrees) of item ``i`` this epoch."""
        row, code = (int(v) for v in self.index[i])
        angle = 0.0
        if code in (ROTATE, RANDOM_CHOICE):
            rng = _augmentation_rng(self.seed, self.epoch, i)
            if code == RANDOM_CHOICE:
                code = int(rng.integers(HFLIP, ROTATE + 1))
            angle = float(rng.uniform(-MAX_ROTATION_DEG, MAX_ROTATION_DEG)) if code == ROTATE else 0.0
        return row, code, angle

    def __getitem__(self, i: int):
        row, code, angle = self.augmentation(i)
        image = augment_image(self.load_row(row), code, angle)
        if not self.as_uint8:
            image = image.float().div_(255.0)
        return image, int(self.targets[row])


def to_unit(batch: torch.Tensor) -> torch.Tensor:
    """A uint8 batch (0-255) as float32 in [0, 1]; float batches pass through."""
    if batch.dtype == torch.uint8:
        return batch.float().div_(255.0)
    return batch
