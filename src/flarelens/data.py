"""Torch datasets of labelled magnetograms and the study's augmentation scheme.

A :class:`MagnetogramDataset` reads the rows of a labels table (``file`` relative to an
image root, ``target``) and returns each image as a (1, H, W) tensor scaled to [0, 1]
with its target. Images of another size than ``image_size`` are resized (bilinear with
antialiasing, i.e. an area-like average when shrinking). In place of the image root it
takes a pack (``flarelens pack``: every image decoded and resized once into one
memory-mapped uint8 array, :mod:`flarelens.pack`), which gives the very same pixels.

The original study's training scheme (``augment="study"``): every flaring (FL) training
instance is used four times per epoch — original, horizontal flip, vertical flip, rotation
by a random angle within +-5° (nearest neighbour, torchvision's default) — and every
non-flaring (NF) instance twice — original, and one random choice of those three. The
dataset therefore holds an *expanded index* of (row, augmentation) pairs, so an epoch has
the right length, a distributed sampler can shard it, and the random choices are a pure
function of (seed, epoch, position): a rerun or a resumed run sees exactly the same images.
Validation sets use ``augment="none"``.

Where the augmentations are applied: per item on the CPU (:func:`augment_image`, in the
loader's workers), or — on CUDA, or with ``batch_augment=True`` — per batch on the device
(:func:`augment_batch` through :meth:`MagnetogramDataset.finish_batch`): the loader then
only slices uint8 pixels, and the batch path gives the same images as the item path for
the same choices (both rotate with the same exact integer arithmetic).

Decoding and resizing dominate the data cost, so small datasets are held in memory as
one uint8 tensor (``cache=True``, automatic up to 2 GiB): each image is decoded and
resized once, not once per epoch. A pack needs no such cache (the operating system keeps
the file's pages); on CUDA the pack's rows are held in GPU memory when they take at most
a quarter of the free memory (``cache="auto"``), and batches are gathered there.
"""

from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Sequence

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
#: ``cache="auto"`` puts a pack's rows in GPU memory when they take at most this share of the free memory.
AUTO_DEVICE_CACHE_SHARE = 0.25
#: Fraction bits of the fixed-point rotation: exact integer arithmetic, the same on every device.
ROTATION_FRACTION_BITS = 30

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


def load_image(path: str | os.PathLike, size: int | None, with_source_size: bool = False):
    """The (1, size, size) uint8 tensor of an image file as training sees it: decoded by
    :func:`read_image` and resized by :func:`resize_image` (None: kept as is). A non-square
    image is refused (it would be squashed). With ``with_source_size``: (tensor, the
    file's side in px)."""
    image = read_image(path)
    h, w = image.shape[-2:]
    if h != w:
        raise FlareLensError(f"{path}: {w}x{h} px image; a full-disk magnetogram is square and flarelens does not "
                             "squash it (crop or pad it to a square first)")
    image = resize_image(image, size)
    return (image, int(h)) if with_source_size else image


def _rotation_padding(h: int, w: int) -> int:
    # Zeros around the image take every source position a rotation by any angle can reach
    # (at most (sqrt(2) - 1) / 2 of the side beyond an edge), so no bounds test is needed.
    return int(math.ceil(0.21 * max(h, w))) + 2


def _rotation_terms(angle: float, h: int, w: int) -> np.ndarray:
    """Per-axis terms of the inverse rotation by ``angle`` degrees (float32, (4, max(h, w))):
    source column + 0.5 = a[j] - b[i], source row + 0.5 = c[j] + d[i], in the padded image."""
    rad = math.radians(float(angle))
    cos, sin = math.cos(rad), math.sin(rad)
    pad = _rotation_padding(h, w)
    n = max(h, w)
    x = np.arange(w, dtype=np.float64) + 0.5 - w / 2  # output pixel centres from the image centre, y down
    y = np.arange(h, dtype=np.float64) + 0.5 - h / 2
    terms = np.zeros((4, n), dtype=np.float64)
    terms[0, :w] = x * cos + (w - 1) / 2 + 0.5 + pad
    terms[1, :h] = y * sin
    terms[2, :w] = x * sin
    terms[3, :h] = y * cos + (h - 1) / 2 + 0.5 + pad
    return terms.astype(np.float32)


def rotate_nearest(images: torch.Tensor, angles: Sequence[float]) -> torch.Tensor:
    """Rotate each image of a (B, C, H, W) batch counter-clockwise by its angle in degrees
    about the image centre, nearest neighbour, corners filled with 0 (off-disk): the
    transform of torchvision's ``rotate(img, angle)`` with its default interpolation.

    Hand-written rather than torchvision's grid sampling because it must give the same
    pixels on every device and for every batch size: the per-axis terms of each source
    position are computed on the CPU (float64, then float32), and the device only adds
    them and takes the floor — single IEEE-rounded operations that every device computes
    alike — where a float grid computed on the device may round a pixel lying within
    ~1e-5 px of a tie either way. It picks the same pixels as torchvision off such ties.
    """
    b, c, h, w = images.shape
    if b == 0:
        return images.clone()
    device = images.device
    pad = _rotation_padding(h, w)
    wp = w + 2 * pad
    terms = torch.from_numpy(np.stack([_rotation_terms(a, h, w) for a in angles])).to(device)  # (B, 4, n)
    a, bb = terms[:, 0, :w].view(b, 1, w), terms[:, 1, :h].view(b, h, 1)
    cc, d = terms[:, 2, :w].view(b, 1, w), terms[:, 3, :h].view(b, h, 1)
    col = torch.floor(a - bb)
    row = torch.floor(cc + d)
    # Integers below 2**24: exact in float32.
    flat = torch.addcmul(col, row, torch.tensor(float(wp), device=device)).long()
    padded = torch.nn.functional.pad(images, (pad, pad, pad, pad)).reshape(b, c, -1)
    return padded.gather(2, flat.view(b, 1, h * w).expand(b, c, h * w)).view(b, c, h, w)


def augment_image(image: torch.Tensor, code: int, angle: float = 0.0) -> torch.Tensor:
    """Apply augmentation ``code`` (ORIGINAL, HFLIP, VFLIP, ROTATE) to a (C, H, W) image.

    ``angle`` (degrees, counter-clockwise) is used by ROTATE (:func:`rotate_nearest`:
    nearest neighbour, the corners uncovered by the rotation filled with 0, the off-disk
    value). The per-item (CPU) path; :func:`augment_batch` is the per-batch one.
    """
    from torchvision.transforms.v2 import functional as F

    if code == ORIGINAL:
        return image
    if code == HFLIP:
        return F.horizontal_flip(image)
    if code == VFLIP:
        return F.vertical_flip(image)
    if code == ROTATE:
        return rotate_nearest(image[None], [angle])[0]
    raise ValueError(f"unknown augmentation code {code!r}")


def augment_batch(images: torch.Tensor, codes, angles) -> torch.Tensor:
    """Apply per-image augmentations to a (B, C, H, W) batch on its own device (e.g. CUDA).

    ``codes`` (B,) of ORIGINAL, HFLIP, VFLIP, ROTATE and ``angles`` (B,) in degrees, as
    :meth:`MagnetogramDataset.augmentation` draws them: image b becomes
    ``augment_image(images[b], codes[b], angles[b])``, computed for the whole batch at once.
    """
    codes = torch.as_tensor(codes).to("cpu", torch.int64)
    angles = torch.as_tensor(angles).to("cpu", torch.float64)
    if len(codes) != len(images) or len(angles) != len(images):
        raise ValueError(f"{len(images)} images but {len(codes)} codes and {len(angles)} angles")
    unknown = ~torch.isin(codes, torch.tensor([ORIGINAL, HFLIP, VFLIP, ROTATE]))
    if unknown.any():
        raise ValueError(f"unknown augmentation code {int(codes[unknown][0])!r}")
    out = images.clone()
    for code, flip in ((HFLIP, -1), (VFLIP, -2)):
        pick = torch.nonzero(codes == code).flatten().to(images.device)
        if len(pick):
            out[pick] = images[pick].flip(flip)
    pick = torch.nonzero(codes == ROTATE).flatten()
    if len(pick):
        out[pick.to(images.device)] = rotate_nearest(images[pick.to(images.device)], angles[pick].tolist())
    return out


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

    In batch mode (``batch_augment``, or a pack held in GPU memory) item i is
    ``(image, target, code, angle)`` with the image not yet augmented (or, from GPU
    memory, its row number), and :meth:`finish_batch` turns a collated batch into
    ``(images, targets)`` on the device: a training loop calls
    ``x, y = dataset.finish_batch(batch)`` for every batch, in either mode.

    Parameters
    ----------
    labels: DataFrame with ``file`` (relative to ``root``) and ``target`` columns.
    root: image root directory, or a pack file of ``flarelens pack`` (``.npy``) holding
        every ``file`` of the labels (:mod:`flarelens.pack`; refused when stale).
    image_size: side in px the images are resized to (None: keep the files' size; they
        must then all have the same size to be batched). A pack must have this size.
    augment: ``"study"`` (the expanded, augmented index; training) or ``"none"``.
    seed: seeds the augmentation choices together with the epoch (:meth:`set_epoch`).
    cache: True to decode every image once into memory, False to decode per item,
        ``"auto"`` to cache when the decoded images take at most 2 GiB. With a pack on a
        CUDA ``device``: whether its rows are held in GPU memory (``"auto"``: when they
        take at most a quarter of the free memory); ``"device"``: a pack's rows on
        ``device`` whatever it is.
    device: where :meth:`finish_batch` puts batches (default: leave them where they are).
    batch_augment: apply the augmentations per batch on ``device`` in :meth:`finish_batch`
        instead of per item in the loader (default: on CUDA devices).
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
        device: str | torch.device | None = None,
        batch_augment: bool | None = None,
    ):
        from flarelens.pack import is_pack, open_pack

        missing = [c for c in ("file", "target") if c not in labels.columns]
        if missing:
            raise FlareLensError(f"labels: missing column(s) {', '.join(missing)}")
        self.root = Path(root)
        self.pack = None
        if is_pack(self.root):
            self.pack = open_pack(self.root)
        elif not self.root.is_dir():
            raise FlareLensError(f"--images {self.root}: no such directory (nor a pack file)")
        self.labels = labels.reset_index(drop=True)
        self.files = [str(f) for f in self.labels["file"]]
        self.targets = self.labels["target"].to_numpy().astype(np.int64)
        self._pack_rows = None
        if self.pack is not None:
            self._pack_rows = self.pack.rows(self.files, image_size)
            image_size = self.pack.size
        self.image_size = image_size
        self.augment = augment
        self.index = expanded_index(self.targets, augment)
        self.seed = int(seed)
        self.epoch = 0
        self.as_uint8 = as_uint8
        self.device = torch.device(device) if device is not None else None
        on_cuda = self.device is not None and self.device.type == "cuda"
        self.batch_augment = on_cuda if batch_augment is None else bool(batch_augment)
        self._cache: torch.Tensor | None = None
        self._device_images: torch.Tensor | None = None
        self._rows_on_device = False  # items are then row numbers of _device_images (also in workers)
        if self.pack is not None:
            if cache == "device" or (on_cuda and self._device_cache_wanted(cache)):
                self._fill_device_cache(progress)
            elif cache is True:
                self._fill_cache(progress)
            return
        if cache == "auto":
            cache = image_size is not None and len(self.files) * image_size**2 <= AUTO_CACHE_BYTES
        if cache:
            self._fill_cache(progress)

    def __len__(self) -> int:
        return len(self.index)

    def __getstate__(self):
        # Loader workers never touch GPU memory: they hand out row numbers in that mode.
        state = dict(self.__dict__)
        state["_device_images"] = None
        return state

    @property
    def batch_mode(self) -> bool:
        """Whether items carry their augmentation for :meth:`finish_batch` (4-tuples)."""
        return self.batch_augment or self._rows_on_device

    @property
    def cached(self) -> bool:
        """Whether every image is already decoded in memory (RAM or GPU) or memory-mapped from a pack."""
        return self._cache is not None or self._rows_on_device or self.pack is not None

    def set_epoch(self, epoch: int) -> None:
        """Choose the augmentations of epoch ``epoch`` (call before each epoch)."""
        self.epoch = int(epoch)

    def path(self, row: int) -> Path:
        """Absolute path of the image of labels row ``row`` (the pack file for a pack)."""
        return self.root if self.pack is not None else self.root / self.files[row]

    def load_row(self, row: int) -> torch.Tensor:
        """The (1, S, S) uint8 image of labels row ``row``, resized, not augmented."""
        return self.load_rows([row])[0]

    def load_rows(self, rows: Sequence[int]) -> torch.Tensor:
        """The (B, 1, S, S) uint8 images of labels rows ``rows`` (CPU), resized, not augmented."""
        if self._device_images is not None:
            # The device copy holds each distinct pack row once: map labels rows to its rows.
            held = self._pack_rows[np.asarray(list(rows), dtype=np.int64)]
            return self._device_images[torch.as_tensor(held).to(self._device_images.device)].cpu()
        return torch.stack(self._row_images(rows)) if len(rows) else torch.empty(0, 1, 0, 0, dtype=torch.uint8)

    def _row_images(self, rows: Sequence[int]) -> list[torch.Tensor]:
        # Views where possible (cache, pack pages): the loader's collate makes the one copy.
        if self._cache is not None:
            return [self._cache[r] for r in rows]
        if self.pack is not None:
            images = self.pack.images
            return [torch.from_numpy(images[self._pack_rows[r]])[None] for r in rows]
        return [self._read(r) for r in rows]

    def _read(self, row: int) -> torch.Tensor:
        path = self.root / self.files[row]
        if not path.is_file():
            raise FlareLensError(
                # the row's time, not its position: the dataset may hold a subset of the file's rows
                f"{path}: image file not found (labels row of {self._time_of(row)}, file {self.files[row]!r}; "
                "check --images)"
            )
        return load_image(path, self.image_size)

    def _time_of(self, row: int) -> str:
        if "timestamp" in self.labels.columns:
            return str(self.labels["timestamp"].iloc[row])
        return f"position {row}"

    def _device_cache_wanted(self, cache) -> bool:
        if cache is True or cache == "on":
            return True
        if cache != "auto":
            return False
        free, _ = torch.cuda.mem_get_info(self.device)
        return len(np.unique(self._pack_rows)) * self.pack.size**2 <= AUTO_DEVICE_CACHE_SHARE * free

    def _fill_device_cache(self, progress: bool) -> None:
        from flarelens.progress import bar

        # The pack's rows this dataset uses, copied to the GPU in slices (no full copy in RAM).
        unique, inverse = np.unique(self._pack_rows, return_inverse=True)
        size = self.pack.size
        images = torch.empty((len(unique), 1, size, size), dtype=torch.uint8, device=self.device or "cpu")
        step = max(1, (256 * 1024**2) // (size * size))
        for start in bar(range(0, len(unique), step), progress=progress, desc="images to GPU", leave=False):
            part = np.ascontiguousarray(self.pack.images[unique[start:start + step]])
            images[start:start + len(part), 0].copy_(torch.from_numpy(part))
        self._device_images = images
        self._pack_rows = inverse.astype(np.int64)  # labels row -> row of the GPU copy
        self._rows_on_device = True

    def _fill_cache(self, progress: bool) -> None:
        from flarelens.progress import bar

        n = len(self.files)
        if n == 0:
            self._cache = torch.empty(0, 1, self.image_size or 0, self.image_size or 0, dtype=torch.uint8)
            return
        if self.pack is not None:
            self._cache = self.load_rows(range(n))
            return
        first = self._read(0)
        cache = torch.empty((n, *first.shape), dtype=torch.uint8)
        cache[0] = first

        def fill(row: int) -> None:
            image = self._read(row)
            if image.shape != first.shape:
                raise FlareLensError(
                    f"{self.root / self.files[row]}: image is {tuple(image.shape[-2:])} px but {self.files[0]} is "
                    f"{tuple(first.shape[-2:])}; pass --image-size to resize them to one size"
                )
            cache[row] = image

        # Decoders release the GIL, so threads decode in parallel without copying the cache.
        with ThreadPoolExecutor(max_workers=max(1, min(8, os.cpu_count() or 1))) as pool:
            for _ in bar(pool.map(fill, range(1, n)), progress=progress, total=n - 1, desc="loading images",
                         unit="img", leave=False):
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
        return self.__getitems__([i])[0]

    def __getitems__(self, indices):
        """Items ``indices`` at once (the DataLoader calls this for a whole batch): one
        read of the cache or the pack for all of them."""
        choices = [self.augmentation(int(i)) for i in indices]
        rows = [row for row, _, _ in choices]
        if self._rows_on_device:
            return [(int(self._pack_rows[row]), int(self.targets[row]), code, angle) for row, code, angle in choices]
        images = self._row_images(rows)
        if self.batch_augment:
            return [(images[k], int(self.targets[row]), code, angle) for k, (row, code, angle) in enumerate(choices)]
        items = []
        for k, (row, code, angle) in enumerate(choices):
            image = augment_image(images[k], code, angle)
            if not self.as_uint8:
                image = image.float().div_(255.0)
            items.append((image, int(self.targets[row])))
        return items

    def finish_batch(self, batch) -> tuple[torch.Tensor, torch.Tensor]:
        """``(images, targets)`` of a batch collated from this dataset's items, on
        ``device``: in batch mode gathered from GPU memory and augmented there
        (:func:`augment_batch`); otherwise just moved. uint8 with ``as_uint8``, else float
        in [0, 1]."""
        device = self.device
        if len(batch) == 2:
            x, y = batch
            if device is not None:
                x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            return x, y
        x, y, codes, angles = batch
        if self._device_images is not None:
            x = self._device_images[x.to(self._device_images.device, non_blocking=True)]
        elif device is not None:
            x = x.to(device, non_blocking=True)
        x = augment_batch(x, codes, angles)
        if device is not None:
            y = y.to(device, non_blocking=True)
        if not self.as_uint8:
            x = x.float().div_(255.0)
        return x, y


def finish_batch(dataset, batch) -> tuple[torch.Tensor, torch.Tensor]:
    """``(images, targets)`` of a batch a DataLoader collated from ``dataset``: through
    :meth:`MagnetogramDataset.finish_batch` (moved to its device, gathered and augmented
    there in batch mode), or as collated for any other dataset of (image, target) items."""
    if isinstance(dataset, MagnetogramDataset):
        return dataset.finish_batch(batch)
    x, y = batch
    return x, y


def to_unit(batch: torch.Tensor) -> torch.Tensor:
    """A uint8 batch (0-255) as float32 in [0, 1]; float batches pass through."""
    if batch.dtype == torch.uint8:
        return batch.float().div_(255.0)
    return batch
