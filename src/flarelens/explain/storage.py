"""Map storage: one ``.npz`` per instance, and the settings the maps were made with.

Layout of an output directory ``DIR``::

    DIR/settings.json          what the maps depend on (model fingerprint, image size, layer,
                               IG baseline and steps, attributed output, background); a rerun
                               with other settings is refused unless told to overwrite
    DIR/maps/<stem>.npz        one per instance (<stem> = HMI.mYYYY.MM.DD_HH.MM.SS); its
                               presence marks the instance done. Arrays (S = model input size):
                                 map_<method> (S, S) float32, delta_<method> () convergence
                                 delta (NaN for Guided Grad-CAM), deletion_<method> (11,) and
                                 deletion_random (11,) flare probabilities at
                                 deletion_fractions (11,) = 0, 0.05, ..., 0.5;
                                 image (S, S) uint8 as the model saw it, disk (S, S) bool,
                                 flare_distance_deg (S, S) float32 great-circle distance to the
                                 flare at the image time (NaN off the disk / no position),
                                 flare_xy (2,) pixel of the flare (NaN if unknown or behind the
                                 limb), truth_xyr (3,) simulate's flaring region (x, y,
                                 radius_px at size S; NaN if none), model_prob (), timestamp,
                                 image_file
"""

from __future__ import annotations

import hashlib
import json
import zipfile
import zlib
from pathlib import Path

import numpy as np
import torch

from flarelens.errors import FlareLensError
from flarelens.fileio import atomic_path, write_text
from flarelens.settings import check_same_settings


def stem_of(row) -> str:
    """Output name of an instance: its image name without extension (HMI.mYYYY.MM.DD_HH.MM.SS)."""
    from flarelens.images import image_relpath

    return Path(image_relpath(row["time"], "")).name


def model_fingerprint(model: torch.nn.Module) -> str:
    """SHA-1 of the model's state (names, shapes, values): which weights made a map."""
    h = hashlib.sha1()
    for name, tensor in model.state_dict().items():
        h.update(name.encode())
        t = tensor.detach().cpu().contiguous()
        h.update(str(tuple(t.shape)).encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def map_settings(settings, fingerprint: str, image_size: int, layer: str,
                 background_files: list[str]) -> dict:
    """The settings a map depends on (radius, selection, figures do not)."""
    return {
        "model_fingerprint": fingerprint, "image_size": int(image_size), "layer": layer,
        "ig_baseline": settings.ig_baseline, "n_steps": int(settings.n_steps), "output": settings.output,
        "background": background_files, "deletion": bool(settings.deletion),
    }


def check_map_settings(out: Path, current: dict, overwrite: bool) -> None:
    """Refuse maps in ``out`` made with other (or unrecorded) settings, or delete them with
    ``overwrite``; then record ``current`` in ``out/settings.json``.

    The comparison is :func:`flarelens.settings.check_same_settings`, shared with the other
    steps that refuse outputs made with other settings.
    """
    path = out / "settings.json"
    maps = sorted((out / "maps").glob("*.npz"))
    if maps:
        hint = "use another --out, or --overwrite to replace them"
        try:
            if not path.exists():
                raise FlareLensError(f"{out} holds maps but no settings.json saying how they were made; {hint}")
            check_same_settings(path, current, "maps", hint=hint, write=False)
        except FlareLensError:
            if not overwrite:
                raise
            for sub in ("maps", "overlays"):
                for f in (out / sub).glob("*"):
                    if f.suffix in (".npz", ".png"):
                        f.unlink()
    write_text(json.dumps(current, indent=1) + "\n", path)


#: Arrays every map file holds besides the per-method ones (``map_<method>``, ``delta_<method>``).
REQUIRED = ("image", "disk", "flare_distance_deg", "flare_xy", "truth_xyr", "model_prob", "deletion_fractions")


def map_path(maps_dir: Path, stem: str) -> Path:
    """The map file of instance ``stem``."""
    return Path(maps_dir) / f"{stem}.npz"


def is_done(path: Path, methods) -> bool:
    """Whether the map file ``path`` exists, is readable and holds every method of ``methods``
    (an unreadable file is made again)."""
    if not path.is_file():
        return False
    try:
        with np.load(path) as z:
            return all(f"map_{m}" in z.files for m in methods)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile):
        return False


def read_map(path: Path, methods=()) -> dict:
    """Every array of the map file ``path``, checked: the common arrays and ``map_<m>`` /
    ``delta_<m>`` of each method present, maps finite. A damaged or non-finite file raises
    one clear line (delete it and run again to make it anew)."""
    try:
        with np.load(path) as z:
            arrays = {k: z[k] for k in z.files}
    except FileNotFoundError:
        raise FlareLensError(f"{path}: map file missing; run explain again to make it") from None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error, KeyError) as exc:
        raise FlareLensError(f"{path}: damaged map file ({type(exc).__name__}: {exc}); "
                             "delete it and run explain again to make it anew") from None
    missing = [k for k in REQUIRED + tuple(f"{p}_{m}" for m in methods for p in ("map", "delta")) if k not in arrays]
    if missing:
        raise FlareLensError(f"{path}: damaged map file (no {', '.join(missing)}); "
                             "delete it and run explain again to make it anew")
    for m in methods:
        if not np.isfinite(arrays[f"map_{m}"]).all():
            raise FlareLensError(f"{path}: the {m} map holds non-finite values; delete it and run explain again "
                                 "(a model giving NaN or inf cannot be explained)")
    return arrays


def write_map(path: Path, arrays: dict) -> None:
    """Write one instance's arrays (layout in the module docstring) atomically."""
    with atomic_path(path) as tmp:
        np.savez_compressed(tmp, **arrays)
