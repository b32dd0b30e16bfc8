"""Scores of attribution maps: localisation against where the flare was, and faithfulness.

Localisation (a map against a region of the disk):

- ``mass``: the share of the map's positive attribution on the disk that falls inside the
  region (1 = everything on the flare, NaN when the map has no positive mass on the disk).
- ``hit`` (pointing game): 1 when the map's maximum on the disk lies inside the region.
- ``area``: the region's share of the disk's pixels. It is the expected value of both
  scores for a random map (independent, identically distributed pixel values): the
  random-map baseline. A map localises when its scores are clearly above its area.

The regions of a flare are its neighbourhoods at the image time
(:mod:`flarelens.explain.truth`: on-disk pixels within a fraction of the solar radius of
its pixel, or within r great-circle degrees of its position) and, on simulated images,
the ground-truth disc of the flaring region (``radius_px`` around its centroid).

Faithfulness (deletion): the top k % of the on-disk pixels by attribution are set to
zero field (128/255) for k = 0, 5, ..., 50 and the flare probability is recorded; the
area under that curve, normalised by the k-range, is the mean probability over the curve
(lower = the map found what the model relies on). The same curve with a random order of
deletion is the baseline.
"""

from __future__ import annotations

import numpy as np
import torch

from flarelens.explain.methods import NEUTRAL

#: Central vs near-limb: a flare is central when |longitude| <= 70 degrees (docs/design.md).
LIMB_LONGITUDE = 70.0

#: Deletion fractions of the on-disk pixels: 0, 5, ..., 50 %.
DELETION_FRACTIONS = np.round(np.arange(0, 0.501, 0.05), 2)


def region_within_deg(lon_map, lat_map, lon0: float, lat0: float, radius_deg: float) -> np.ndarray:
    """Pixels whose heliographic position (``lon_map``, ``lat_map``, degrees; NaN off
    the disk) lies within ``radius_deg`` great-circle degrees of (``lon0``, ``lat0``)."""
    from flarelens.geometry import great_circle

    dist = great_circle(lon_map, lat_map, lon0, lat0)
    return np.nan_to_num(dist, nan=np.inf) <= radius_deg


def circle_mask(shape, x: float, y: float, radius_px: float) -> np.ndarray:
    """Pixels (centres at integer coordinates; x = column, y = row) within ``radius_px`` of (x, y)."""
    yy, xx = np.mgrid[0:shape[0], 0:shape[1]]
    return (xx - x) ** 2 + (yy - y) ** 2 <= radius_px**2


def area_fraction(region: np.ndarray, disk: np.ndarray) -> float:
    """Share of the on-disk pixels inside ``region``: a random map's expected score."""
    n = int(disk.sum())
    return float((region & disk).sum() / n) if n else float("nan")


def mass_fraction(attr: np.ndarray, region: np.ndarray, disk: np.ndarray) -> float:
    """Share of the positive on-disk attribution inside ``region`` (NaN without positive mass)."""
    pos = np.where(disk, np.clip(attr, 0, None), 0.0)
    total = float(pos.sum(dtype=np.float64))
    if not np.isfinite(total) or total <= 0:
        return float("nan")
    return float(pos[region].sum(dtype=np.float64) / total)


def pointing_hit(attr: np.ndarray, region: np.ndarray, disk: np.ndarray) -> float:
    """1.0 when the maximum of ``attr`` over the disk lies in ``region``, else 0.0.

    Ties count as a hit only when every tied maximum is inside the region (a constant
    map scores 0 unless the region covers the disk). NaN for an empty disk.
    """
    if not disk.any():
        return float("nan")
    values = attr[disk]
    top = values.max()
    return float(bool(region[disk][values == top].all()))


def localisation(attr: np.ndarray, region: np.ndarray, disk: np.ndarray) -> dict[str, float]:
    """``{"mass", "hit", "area"}`` of one map against one region (see the module docstring)."""
    return {
        "mass": mass_fraction(attr, region, disk),
        "hit": pointing_hit(attr, region, disk),
        "area": area_fraction(region, disk),
    }


def random_map_scores(region: np.ndarray, disk: np.ndarray, n: int = 200, seed: int = 0) -> dict[str, float]:
    """Mean mass and hit of ``n`` uniform random maps: a Monte-Carlo check of the area baseline."""
    rng = np.random.default_rng(seed)
    masses, hits = [], []
    for _ in range(n):
        m = rng.random(region.shape)
        masses.append(mass_fraction(m, region, disk))
        hits.append(pointing_hit(m, region, disk))
    return {"mass": float(np.mean(masses)), "hit": float(np.mean(hits))}


def position_class(fl_lon) -> np.ndarray:
    """``central`` (|lon| <= 70 degrees), ``limb`` or ``unknown`` (NaN) per longitude."""
    lon = np.asarray(fl_lon, dtype=float)
    return np.where(np.isnan(lon), "unknown", np.where(np.abs(lon) <= LIMB_LONGITUDE, "central", "limb"))


def flare_class(goes_class) -> np.ndarray:
    """Letter of the largest flare (X, M, C, B, A) or ``none`` per GOES class string."""
    out = []
    for value in np.atleast_1d(np.asarray(goes_class, dtype=object)):
        text = "" if value is None or (isinstance(value, float) and np.isnan(value)) else str(value).strip().upper()
        out.append(text[0] if text and text[0] in "XMCBA" else "none")
    return np.array(out)


def outcome(flare_prob, target, threshold: float = 0.5) -> np.ndarray:
    """TP / FN / FP / TN per instance (predicted flare when ``flare_prob >= threshold``)."""
    pred = np.asarray(flare_prob, dtype=float) >= threshold
    true = np.asarray(target).astype(int) == 1
    return np.select([pred & true, ~pred & true, pred & ~true], ["TP", "FN", "FP"], "TN")


# --------------------------------------------------------------------------- faithfulness


def deletion_order(attr: np.ndarray, disk: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
    """Flat indices of the on-disk pixels, most attributed first (random order with ``rng``)."""
    idx = np.flatnonzero(disk.ravel())
    if rng is not None:
        return rng.permutation(idx)
    values = attr.ravel()[idx]
    return idx[np.argsort(-values, kind="stable")]


def deleted_images(image: torch.Tensor, order: np.ndarray, fractions=DELETION_FRACTIONS,
                   neutral: float = NEUTRAL) -> torch.Tensor:
    """(len(fractions), 1, H, W): ``image`` (1, H, W) with the first ``fraction`` of
    ``order`` (flat pixel indices) set to ``neutral`` (zero field)."""
    n = len(order)
    out = image.unsqueeze(0).repeat(len(fractions), 1, 1, 1)
    flat = out.view(len(fractions), -1)
    order_t = torch.as_tensor(order, dtype=torch.long, device=image.device)
    for i, f in enumerate(fractions):
        k = int(round(float(f) * n))
        if k:
            flat[i, order_t[:k]] = neutral
    return out


def deletion_curves(prob_fn, images: torch.Tensor, maps: np.ndarray, disks: np.ndarray,
                    fractions=DELETION_FRACTIONS, rngs=None, batch_size: int = 64) -> np.ndarray:
    """Flare probability after deleting the top fractions of each map's pixels.

    ``prob_fn`` maps (N, 1, H, W) images in [0, 1] to flare probabilities (N,);
    ``images`` (B, 1, H, W), ``maps`` (B, H, W), ``disks`` (B, H, W) bool. With ``rngs``
    (one ``numpy.random.Generator`` per image) the pixels are deleted in a random order
    instead, the baseline; ``maps`` is then ignored. Returns (B, len(fractions)).
    """
    stacks = []
    for b in range(len(images)):
        order = deletion_order(maps[b] if maps is not None else None, disks[b], rngs[b] if rngs is not None else None)
        stacks.append(deleted_images(images[b], order, fractions))
    batch = torch.cat(stacks)
    probs = np.concatenate([np.asarray(prob_fn(batch[i:i + batch_size])) for i in range(0, len(batch), batch_size)])
    return probs.reshape(len(images), len(fractions))


def curve_auc(fractions, probs) -> np.ndarray:
    """Trapezoidal area under probability-vs-fraction curves over the fraction range,
    normalised by that range: the mean probability along the curve, in [0, 1]."""
    f = np.asarray(fractions, dtype=float)
    p = np.asarray(probs, dtype=float)
    return np.trapezoid(p, f, axis=-1) / (f[-1] - f[0])
