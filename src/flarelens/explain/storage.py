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
from pathlib import Path

import numpy as np
import torch

from flarelens.errors import FlareLensError
from flarelens.fileio import atomic_path, write_text


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
    """Refuse maps made with other settings in ``out`` (or delete them with ``overwrite``); record ``current``."""
    path = out / "settings.json"
    if path.is_file():
        try:
            previous = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            previous = None
        has_maps = any((out / "maps").glob("*.npz"))
        if previous != current and has_maps:
            if not overwrite:
                differs = sorted(k for k in set(current) | set(previous or {})
                                 if (previous or {}).get(k) != current.get(k))
                raise FlareLensError(
                    f"{out} holds maps made with other settings ({', '.join(differs) or 'unreadable settings.json'} "
                    "differ); use another --out, or --overwrite to replace them"
                )
            for sub in ("maps", "overlays"):
                for f in (out / sub).glob("*"):
                    if f.suffix in (".npz", ".png"):
                        f.unlink()
    write_text(json.dumps(current, indent=1) + "\n", path)



def is_done(path: Path, methods) -> bool:
    """Whether the map file ``path`` exists and holds every method of ``methods``."""
    if not path.is_file():
        return False
    try:
        with np.load(path) as z:
            return all(f"map_{m}" in z.files for m in methods)
    except (OSError, ValueError, EOFError):
        return False  # an unreadable file is redone


def write_map(path: Path, arrays: dict) -> None:
    """Write one instance's arrays (layout in the module docstring) atomically."""
    with atomic_path(path) as tmp:
        np.savez_compressed(tmp, **arrays)
