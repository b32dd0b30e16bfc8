"""Synthetic full-disk HMI-like magnetograms whose active regions follow the real flare catalog.

There are no real magnetograms on the development machines and nowhere a ground truth of
"where should a model look". This module draws line-of-sight magnetograms, as Helioviewer
serves HMI (8-bit, 0 G = 128, clipped at +-250 G, off-disk 0, solar north up), in which

* every flaring active region of a GOES catalog (flares grouped by NOAA number; unnumbered
  flares joined to a numbered region nearby or grouped among themselves by position) sits
  where its flares happened, from a few days before its first flare to a few days after its
  last, turning with the Sun's differential rotation and hidden on the far side;
* a region is a bipole (leading spot and a more diffuse following polarity, Hale's polarity
  law, Joy's tilt) with plage around it, sizes of tens to ~200 arcsec and spot fields of
  2-3 kG; the field is radial, so the line of sight sees it times mu, foreshortened towards
  the limb;
* a region's *complexity* (parasitic and delta-like opposite-polarity pairs with strong
  gradients, a more compact bipole) rises ahead of its flares and is graded with flare size:
  the largest flare starting in the next 24 h sets it (C flares a little, M more, X most),
  flares one to three days ahead raise it partly, it relaxes over the 18 h after a flare;
* flare-quiet regions emerge at random at the latitudes of the activity belts (some of them
  looking somewhat complex), as distractors, and the quiet Sun carries a mixed-polarity
  network, ephemeral bipoles and noise.

So the signal is learnable (complexity tells a coming M or X flare apart) but not trivial:
complexity ramps up before the 24-h window and lingers after flares, quiet regions can be
large or moderately complex, limb regions are foreshortened, and flares without a position
have no region at all.

Everything is deterministic for a seed: a region's layout is seeded by (seed, region id),
the quiet Sun of an image by (seed, image time), so resuming or another number of workers
changes nothing. Ground truth goes to ``OUT/regions.csv`` (one row per image and region whose
centre is on the visible disk).
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from flarelens import geometry
from flarelens.catalog import bundled_catalog_path, check_covers, flux_to_class, read_catalog
from flarelens.errors import FlareLensError
from flarelens.fileio import atomic_path, write_csv, write_text
from flarelens.images import image_relpath
from flarelens.labels import TIME_FORMAT, parse_duration, sample_times

#: Field strength at which the 8-bit scale saturates, gauss.
CLIP_GAUSS = 250.0
#: JPEG quality of written images. 100 keeps the rounding error at 1-2 grey levels, which
#: the off-disk repair (see :func:`encode_jpeg`) can then bring to exactly 0.
JPEG_QUALITY = 100
#: Bumped whenever the images a seed gives change; an output directory remembers it.
SIMULATOR_VERSION = 1

#: Columns of regions.csv, in order.
REGION_COLUMNS = [
    "timestamp", "file", "region_id", "noaa_ar", "lon", "lat", "x", "y", "radius_px", "mu",
    "max_class_24h", "max_flux_24h",
]

_NS_PER_DAY = 86_400 * 10**9
_NS_PER_HOUR = 3_600 * 10**9
_DAY_NS = np.int64(_NS_PER_DAY)
_WINDOW_NS = np.int64(24 * _NS_PER_HOUR)
# Unnumbered flares this close (degrees, great circle) to a region are taken as its flares.
_JOIN_DEG = 8.0
# Flares of one NOAA number further apart than this (days) are separate passages.
_SPLIT_DAYS = 20.0
# Number of complexity features each region carries (switched on as its complexity rises).
_N_FEATURES = 8


# --------------------------------------------------------------------------------------
# The region model: which regions exist, where and when, with which flares
# --------------------------------------------------------------------------------------


@dataclass
class RegionModel:
    """All active regions that may be seen between two times, and their flares.

    ``table`` has one row per region: ``region_id``, ``noaa_ar`` (string, empty for
    unnumbered and synthetic quiet regions), ``kind`` (``flaring`` or ``quiet``), ``carr``
    (Carrington longitude, degrees, at ``t_ref``), ``lat`` (degrees), ``t_ref``, ``t_begin``,
    ``t_end`` (ns since 1970, UTC), ``flux`` (relative size, ~1), ``base_complexity`` (0-1),
    ``anti_hale`` (bool), ``key`` (int seed of the layout). ``flare_ns[i]`` and
    ``flare_flux[i]`` are region i's flare start times (ns) and peak fluxes (W/m²).
    """

    table: pd.DataFrame
    flare_ns: list = field(default_factory=list)
    flare_flux: list = field(default_factory=list)
    seed: int = 0
    unplaced_flares: int = 0

    def __len__(self) -> int:
        return len(self.table)

    @functools.cached_property
    def columns(self) -> dict[str, np.ndarray]:
        """The table's columns as numpy arrays (row access through pandas is slow per image)."""
        return {name: self.table[name].to_numpy() for name in self.table.columns}


def _stable_int(text: str) -> int:
    """A 63-bit integer of a string, the same in every process (unlike ``hash``)."""
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little") >> 1


def _drift(lat, dt_days):
    """Change of Carrington longitude (degrees) of a feature at ``lat`` over ``dt_days``."""
    return (geometry.rotation_rate(lat) - geometry.CARRINGTON_RATE) * dt_days


def _circular_median(deg: np.ndarray) -> float:
    """Median of angles (degrees) that lie within a half-circle of each other."""
    ref = deg[0]
    return float((ref + np.median(geometry.wrap_lon(deg - ref))) % 360.0)


def _great_circle(lon1, lat1, lon2, lat2):
    """Angular distance in degrees between points given in degrees."""
    lon1, lat1, lon2, lat2 = (np.radians(v) for v in (lon1, lat1, lon2, lat2))
    h = np.sin((lat2 - lat1) / 2) ** 2 + np.cos(lat1) * np.cos(lat2) * np.sin((lon2 - lon1) / 2) ** 2
    return np.degrees(2 * np.arcsin(np.sqrt(np.clip(h, 0, 1))))


def _flare_grade(flux):
    """Complexity a flare of peak flux ``flux`` (W/m²) calls for: C1 0.15, M1 0.5, X1 0.85, >=X3 1."""
    return np.clip(0.15 + 0.35 * np.log10(np.maximum(flux, 1e-9) / 1e-6), 0.12, 1.0)


def catalog_regions(catalog: pd.DataFrame) -> tuple[list[dict], int]:
    """Group a normalised catalog's flares into regions placed on the Sun.

    Returns one dict per region (``region_id``, ``noaa_ar``, ``carr``, ``lat``, ``t_ref``,
    ``idx``: the catalog rows of its flares) and the number of flares that could not be
    placed (no position and no NOAA number, or a NOAA region none of whose flares has a
    position). Positions are medians of the flares' Carrington positions carried to the
    region's reference time by differential rotation.
    """
    cat = catalog.reset_index(drop=True)
    if len(cat) == 0:
        return [], 0
    t_ns = cat["start"].to_numpy(dtype="datetime64[ns]").astype(np.int64)
    days = t_ns / _NS_PER_DAY
    lon = cat["lon"].to_numpy(dtype=float)
    lat = cat["lat"].to_numpy(dtype=float)
    has_pos = np.isfinite(lon) & np.isfinite(lat)
    carr = np.full(len(cat), np.nan)
    if has_pos.any():
        carr[has_pos] = (lon[has_pos] + geometry.ephemeris(cat["start"][has_pos].to_numpy()).l0) % 360.0
    ar = cat["noaa_ar"].fillna("").astype(str).str.strip().to_numpy()

    regions: list[dict] = []
    unplaced = 0

    def place(idx: np.ndarray, region_id: str, noaa: str) -> dict | None:
        pos = idx[has_pos[idx]]
        if len(pos) == 0:
            return None
        t_ref = float(np.median(days[pos]))
        carr_ref = carr[pos] - _drift(lat[pos], days[pos] - t_ref)
        return {
            "region_id": region_id, "noaa_ar": noaa, "carr": _circular_median(carr_ref),
            "lat": float(np.median(lat[pos])), "t_ref": t_ref, "idx": list(idx),
        }

    numbered = ar != ""
    for noaa in pd.unique(ar[numbered]):
        idx = np.flatnonzero(ar == noaa)
        # One number for flares months apart is a catalog slip: treat each passage apart.
        breaks = np.flatnonzero(np.diff(days[idx]) > _SPLIT_DAYS) + 1
        for k, part in enumerate(np.split(idx, breaks)):
            region = place(part, f"AR{noaa}" + (f"-{k + 1}" if k else ""), noaa)
            if region is None:
                unplaced += len(part)
            else:
                regions.append(region)

    def alive_near(t: float, c: float, la: float, pool: list[dict], pad: float) -> int | None:
        best, best_d = None, _JOIN_DEG
        for i, r in enumerate(pool):
            ts = days[r["idx"]]
            if not (ts.min() - pad <= t <= ts.max() + pad):
                continue
            rc = (r["carr"] + _drift(r["lat"], t - r["t_ref"])) % 360.0
            d = float(_great_circle(rc, r["lat"], c, la))
            if d < best_d:
                best, best_d = i, d
        return best

    # Unnumbered flares: most belong to a numbered region (a limb flare before numbering, a
    # missing assignment); the rest form their own regions, grouped by place and time.
    loose = np.flatnonzero(~numbered & has_pos)
    clusters: list[dict] = []
    starts = np.array([days[r["idx"]].min() for r in regions]) if regions else np.zeros(0)
    ends = np.array([days[r["idx"]].max() for r in regions]) if regions else np.zeros(0)
    for i in loose:
        t = days[i]
        cand = [regions[j] for j in np.flatnonzero((starts - 2.0 <= t) & (t <= ends + 2.0))]
        hit = alive_near(t, carr[i], lat[i], cand, 2.0)
        if hit is not None:
            cand[hit]["idx"].append(i)
            continue
        open_clusters = [c for c in clusters if t - days[c["idx"][-1]] < 4.0]
        hit = alive_near(t, carr[i], lat[i], open_clusters, 4.0)
        if hit is not None:
            open_clusters[hit]["idx"].append(i)
        else:
            clusters.append({"carr": carr[i], "lat": lat[i], "t_ref": t, "idx": [i]})
    unplaced += int((~numbered & ~has_pos).sum())
    used = {r["region_id"] for r in regions}
    for c in clusters:
        idx = np.array(sorted(c["idx"]))
        first = pd.Timestamp(int(t_ns[idx[0]]), tz="UTC")
        region_id = f"U{first:%Y%m%dT%H%M}"
        while region_id in used:  # two groups starting the same minute
            region_id += "b"
        used.add(region_id)
        regions.append(place(idx, region_id, ""))
    for r in regions:
        r["idx"] = np.array(sorted(r["idx"]), dtype=np.int64)
    return regions, unplaced


def _activity(catalog: pd.DataFrame, days: np.ndarray) -> np.ndarray:
    """C-and-above flares per day in the catalog over the 81 days around each day."""
    t = np.sort(catalog["start"].to_numpy(dtype="datetime64[ns]").astype(np.int64) / _NS_PER_DAY)
    lo = np.searchsorted(t, days - 40.5)
    hi = np.searchsorted(t, days + 40.5)
    return (hi - lo) / 81.0


def _cycle_phase(day: float) -> tuple[int, float]:
    """Solar cycle number and years since its minimum (minima 2008.9, 2019.9, every ~11 y)."""
    year = 1970.0 + day / 365.25
    n = math.floor((year - 2008.9) / 11.0)
    return 24 + n, year - (2008.9 + 11.0 * n)


def leading_polarity(lat: float, day: float) -> int:
    """Sign of the leading polarity by Hale's law: +1 or -1 for a region at ``lat`` on ``day``.

    In cycle 24 (2008.9-2019.9) northern leading spots are negative, southern positive;
    the signs swap every cycle. ``day`` is days since 1970-01-01.
    """
    cycle, _ = _cycle_phase(day)
    north = -1 if cycle % 2 == 0 else 1
    return north if lat >= 0 else -north


def quiet_regions(catalog: pd.DataFrame, first_day: int, last_day: int, seed: int) -> list[dict]:
    """Flare-quiet regions emerging on each day from ``first_day`` to ``last_day`` (days since 1970).

    Each day's draw is seeded by (seed, day), so a region does not depend on the simulated
    range. The emergence rate follows the catalog's flare rate (a proxy for the cycle), the
    latitudes the activity belts of the butterfly diagram.
    """
    days = np.arange(first_day, last_day + 1)
    rate = 0.15 + 0.25 * np.minimum(_activity(catalog, days + 0.5), 8.0) ** 0.7
    out = []
    for day, lam in zip(days, rate):
        rng = np.random.default_rng([seed, 13, int(day) + 100_000])
        for k in range(rng.poisson(lam)):
            _, phase = _cycle_phase(day)
            belt = max(6.0, 27.0 - 2.0 * phase)
            lat = float(np.clip(rng.normal(belt, 5.0), 2.0, 45.0)) * rng.choice([-1.0, 1.0])
            life = float(np.clip(rng.lognormal(np.log(7.0), 0.5), 2.0, 30.0))
            begin = day + rng.uniform(0, 1)
            date = pd.Timestamp(int(day) * _NS_PER_DAY, tz="UTC")
            out.append({
                "region_id": f"Q{date:%Y%m%d}-{k + 1}", "noaa_ar": "", "carr": float(rng.uniform(0, 360)),
                "lat": lat, "t_ref": begin, "t_begin": begin, "t_end": begin + life,
                "flux": float(np.clip(rng.lognormal(np.log(0.75), 0.5), 0.15, 4.0)),
                # Most quiet regions are simple; some look as tangled as a C-flaring one.
                "base_complexity": float(rng.uniform(0.2, 0.45) if rng.random() < 0.15 else rng.uniform(0.0, 0.15)),
                "anti_hale": bool(rng.random() < 0.05),
            })
    return out


def build_regions(catalog: pd.DataFrame, start, end, seed: int = 0) -> RegionModel:
    """The regions that may be seen between ``start`` and ``end`` (UTC) for a seed.

    Flaring regions come from the whole catalog (so they do not depend on the range), quiet
    regions from the days around the range. Each region's random traits are seeded by
    (seed, region id).
    """
    t0 = geometry.to_days(start)
    t1 = geometry.to_days(end)
    placed, unplaced = catalog_regions(catalog)
    flare_ns = catalog["start"].to_numpy(dtype="datetime64[ns]").astype(np.int64) if len(catalog) else np.zeros(0, np.int64)
    flare_flux = catalog["peak_flux"].to_numpy(dtype=float) if len(catalog) else np.zeros(0)
    rows, f_ns, f_flux = [], [], []
    for r in placed:
        rng = np.random.default_rng([seed, 11, _stable_int(r["region_id"])])
        ts = flare_ns[r["idx"]] / _NS_PER_DAY
        g_max = float(_flare_grade(flare_flux[r["idx"]]).max())
        begin = ts.min() - rng.uniform(1.5, 4.5)
        end_ = ts.max() + rng.uniform(1.5, 4.5)
        if end_ < t0 - 1 or begin > t1 + 1:
            continue
        rows.append({
            "region_id": r["region_id"], "noaa_ar": r["noaa_ar"], "kind": "flaring", "carr": r["carr"],
            "lat": r["lat"], "t_ref": r["t_ref"], "t_begin": begin, "t_end": end_,
            # Regions that make big flares are bigger on average, with a wide spread.
            "flux": float(np.clip(rng.lognormal(np.log(0.9 + 0.4 * g_max), 0.4), 0.2, 5.0)),
            "base_complexity": float(rng.uniform(0.0, 0.2)),
            "anti_hale": bool(rng.random() < 0.05 + 0.2 * g_max),
        })
        f_ns.append(flare_ns[r["idx"]])
        f_flux.append(flare_flux[r["idx"]])
    for q in quiet_regions(catalog, int(math.floor(t0)) - 45, int(math.floor(t1)) + 1, seed):
        if q["t_end"] < t0 - 1 or q["t_begin"] > t1 + 1:
            continue
        rows.append({**q, "kind": "quiet"})
        f_ns.append(np.zeros(0, np.int64))
        f_flux.append(np.zeros(0))
    return make_model(rows, f_ns, f_flux, seed, unplaced)


def make_model(rows: list[dict], flare_ns: list, flare_flux: list, seed: int = 0, unplaced: int = 0) -> RegionModel:
    """A :class:`RegionModel` from region dicts with times in days since 1970 (UTC).

    Each dict has ``region_id``, ``noaa_ar``, ``kind``, ``carr``, ``lat``, ``t_ref``,
    ``t_begin``, ``t_end``, ``flux``, ``base_complexity`` and ``anti_hale``; ``flare_ns`` and
    ``flare_flux`` hold each region's flare start times (ns) and peak fluxes (W/m²). Useful
    to draw hand-made regions.
    """
    table = pd.DataFrame(rows, columns=[
        "region_id", "noaa_ar", "kind", "carr", "lat", "t_ref", "t_begin", "t_end", "flux",
        "base_complexity", "anti_hale",
    ])
    for col in ("t_ref", "t_begin", "t_end"):
        table[col] = np.round(table[col].to_numpy(dtype=float) * _NS_PER_DAY).astype(np.int64)
    table["key"] = [_stable_int(rid) for rid in table["region_id"]]
    return RegionModel(table.reset_index(drop=True), list(flare_ns), list(flare_flux), seed, unplaced)


# --------------------------------------------------------------------------------------
# A region's magnetic layout and its state at a time
# --------------------------------------------------------------------------------------


@dataclass
class Layout:
    """Gaussian flux kernels of one region in its local frame (degrees west ``u``, north ``v``).

    ``amp`` is the radial field at the kernel centre in gauss (signed), ``sigma`` its width in
    degrees, ``theta`` the complexity at which the kernel switches on (0: always there),
    ``base`` marks the main bipole and plage (which tighten as complexity rises).
    """

    u: np.ndarray
    v: np.ndarray
    sigma: np.ndarray
    amp: np.ndarray
    theta: np.ndarray
    base: np.ndarray


def region_layout(key: int, seed: int, lat: float, flux: float, anti_hale: bool, day: float) -> Layout:
    """The kernels of a region, drawn from (seed, key): bipole, plage and complexity features."""
    rng = np.random.default_rng([seed, 23, key])
    hemi = 1.0 if lat >= 0 else -1.0
    lead = leading_polarity(lat, day) * (-1 if anti_hale else 1)
    s = math.sqrt(flux)
    sep = float(np.clip(6.5 * s * rng.uniform(0.85, 1.15), 2.5, 14.0))
    # Joy's law: the leading spot sits closer to the equator, tilt ~ half the latitude.
    tilt = math.radians(0.5 * abs(lat) + rng.normal(0.0, 8.0))
    axis = np.array([math.cos(tilt), -hemi * math.sin(tilt)])
    perp = np.array([-axis[1], axis[0]])
    u, v, sig, amp, theta, base = [], [], [], [], [], []

    def add(pos, sigma, a, th=0.0, is_base=True):
        u.append(pos[0]); v.append(pos[1]); sig.append(sigma); amp.append(a); theta.append(th); base.append(is_base)

    lead_pos = 0.5 * sep * axis
    sig_lead = float(np.clip(0.55 + 0.35 * s, 0.5, 1.6))
    b_lead = lead * rng.uniform(1800.0, 3000.0)
    add(lead_pos, sig_lead, b_lead)
    lead_flux = abs(b_lead) * sig_lead**2
    n_follow = int(rng.integers(2, 4))
    shares = rng.dirichlet(np.ones(n_follow)) * rng.uniform(0.8, 1.0)
    for share in shares:
        pos = -0.5 * sep * axis + rng.normal(0.0, 0.15 * sep, 2)
        sigma = sig_lead * rng.uniform(1.3, 2.0)
        add(pos, sigma, -lead * share * lead_flux / sigma**2)
    # Plage: many small magnetic elements, more and wider spread on the following side.
    for _ in range(int(25 + 25 * s)):
        side = 1.0 if rng.random() < 0.4 else -1.0
        pos = side * 0.5 * sep * axis + rng.normal(0.0, 0.32 * sep, 2) * (1.0 if side > 0 else 1.3)
        sign = side * lead * (-1 if rng.random() < 0.1 else 1)
        add(pos, rng.uniform(0.3, 0.75), sign * rng.lognormal(np.log(220.0), 0.45))
    # Switch-on levels spread over 0.25-0.95: C-flaring regions show one feature at most,
    # an M1 region two or three, an X region nearly all.
    thetas = 0.25 + 0.7 * (np.arange(_N_FEATURES) + rng.uniform(0, 1, _N_FEATURES)) / _N_FEATURES
    for k, th in enumerate(thetas):
        if k == 0:
            # Parasitic polarity pushing into the leading spot: a delta spot in the making.
            ang = rng.uniform(0, 2 * np.pi)
            pos = lead_pos + 1.8 * sig_lead * np.array([math.cos(ang), math.sin(ang)])
            add(pos, rng.uniform(0.6, 1.0), -lead * rng.uniform(1500.0, 2500.0), th, False)
            continue
        # Opposite-polarity pairs along a sheared inversion line near the region's middle.
        centre = rng.normal(0.0, 0.18 * sep) * axis + rng.normal(0.0, 0.15 * sep) * perp
        ang = rng.uniform(0, np.pi)
        half = 0.5 * rng.uniform(2.0, 3.4) * np.array([math.cos(ang), math.sin(ang)])
        sigma = rng.uniform(0.6, 1.0)
        b = rng.uniform(1500.0, 2800.0) * rng.choice([-1.0, 1.0])
        add(centre + half, sigma, b, th, False)
        add(centre - half, sigma, -b, th, False)
    return Layout(*(np.asarray(a, dtype=float) for a in (u, v, sig, amp, theta)), np.asarray(base, dtype=bool))


def complexity(base: float, flare_ns: np.ndarray, flare_flux: np.ndarray, t_ns: int) -> float:
    """A region's complexity (0-1) at ``t_ns``: its own base level, or what its flares call for.

    A flare starting within the next 24 h counts fully (graded by size: C1 0.15, M1 0.5,
    X1 0.85); one 24-72 h ahead counts partly, falling linearly to 0 at 72 h; after a flare
    the region relaxes over 18 h.
    """
    if len(flare_ns) == 0:
        return base
    hours = (flare_ns - t_ns) / _NS_PER_HOUR
    weight = np.select(
        [hours <= -18, hours <= 0, hours <= 24, hours <= 72],
        [0.0, 0.6 * (1 + hours / 18.0), 1.0, (72.0 - hours) / 48.0],
        0.0,
    )
    return float(max(base, (weight * _flare_grade(flare_flux)).max()))


@dataclass
class RegionState:
    """A region at one time: position, complexity, its kernels there, its coming flare.

    ``radius_deg`` holds 95 % of its flux (the ground truth's radius); ``extent_deg`` all of
    it (where drawing stops).
    """

    index: int
    lon: float
    lat: float
    u: np.ndarray
    v: np.ndarray
    sigma: np.ndarray
    amp: np.ndarray
    radius_deg: float
    extent_deg: float
    complexity: float
    max_flux_24h: float


def region_states(model: RegionModel, t_ns: int, eph: geometry.Ephemeris, layouts: dict | None = None) -> list[RegionState]:
    """The regions alive at ``t_ns`` (ns, UTC) on or within 20 degrees behind the visible disk."""
    if len(model.table) == 0:
        return []
    cols = model.columns
    alive = np.flatnonzero((cols["t_begin"] <= t_ns) & (t_ns <= cols["t_end"]))
    states = []
    layouts = {} if layouts is None else layouts
    for i in alive:
        row = {name: values[i] for name, values in cols.items()}
        dt = (t_ns - row["t_ref"]) / _NS_PER_DAY
        lon = float(geometry.wrap_lon(row["carr"] + _drift(row["lat"], dt) - eph.l0))
        if abs(lon) > 110.0:
            continue
        key = row["key"]
        if key not in layouts:
            layouts[key] = region_layout(int(key), model.seed, float(row["lat"]), float(row["flux"]),
                                         bool(row["anti_hale"]), row["t_ref"] / _NS_PER_DAY)
        lay = layouts[key]
        c = complexity(float(row["base_complexity"]), model.flare_ns[i], model.flare_flux[i], t_ns)
        # Growth over the first day, decay (spreading, fading) over the last two.
        age = (t_ns - row["t_begin"]) / _NS_PER_DAY
        left = (row["t_end"] - t_ns) / _NS_PER_DAY
        grow = float(np.clip(0.3 + 0.7 * age, 0.3, 1.0))
        decay = float(np.clip(1.0 - left / 2.0, 0.0, 1.0))
        spread = 1.0 + 1.5 * decay
        on = np.clip((c - lay.theta) / 0.08, 0.0, 1.0)
        on[lay.base] = 1.0
        keep = on > 0
        squeeze = np.where(lay.base, 1.0 - 0.3 * c, 1.0)[keep]
        u, v = lay.u[keep] * squeeze * spread, lay.v[keep] * squeeze * spread
        sigma = lay.sigma[keep] * spread
        amp = lay.amp[keep] * on[keep] * grow * (1.0 - 0.6 * decay) / spread**2
        # The ground truth names the flux-weighted centre: put it at the region's position.
        weight = np.abs(amp) * sigma**2
        u = u - np.sum(weight * u) / weight.sum()
        v = v - np.sum(weight * v) / weight.sum()
        # Radius: the circle holding 95 % of the flux (a kernel counted out to 1.5 sigma).
        reach = np.hypot(u, v) + 1.5 * sigma
        order = np.argsort(reach)
        cum = np.cumsum(weight[order]) / weight.sum()
        radius = float(reach[order][np.searchsorted(cum, 0.95)])
        extent = float(np.max(np.hypot(u, v) + 3.5 * sigma))
        flares = model.flare_ns[i]
        window = (flares > t_ns) & (flares < t_ns + _WINDOW_NS)
        peak = float(model.flare_flux[i][window].max()) if window.any() else 0.0
        states.append(RegionState(int(i), lon, float(row["lat"]), u, v, sigma, amp, radius, extent, c, peak))
    return states


# --------------------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------------------


def _add_kernels(out, grid_lon, grid_lat, size, cx, cy, half, lon_c, lat_c, u, v, sigma, amp, px_deg):
    """Add Gaussian kernels (radial field, gauss) around (lon_c, lat_c) to ``out`` in a box."""
    x0, x1 = int(max(0, math.floor(cx - half))), int(min(size, math.ceil(cx + half) + 1))
    y0, y1 = int(max(0, math.floor(cy - half))), int(min(size, math.ceil(cy + half) + 1))
    if x0 >= x1 or y0 >= y1:
        return
    sub_lon = grid_lon[y0:y1, x0:x1]
    sub_lat = grid_lat[y0:y1, x0:x1]
    valid = np.isfinite(sub_lon)
    if not valid.any():
        return
    lon_p, lat_p = sub_lon[valid][:, None], sub_lat[valid][:, None]
    coslat = math.cos(math.radians(lat_c))
    lat_k = lat_c + v
    lon_k = lon_c + u / max(coslat, 0.05)
    # A pixel averages the field over its area: widen narrow kernels, keeping their flux.
    s2 = sigma**2 + (0.3 * px_deg) ** 2
    a = amp * sigma**2 / s2
    dx = ((lon_p - lon_k + 180.0) % 360.0 - 180.0) * np.cos(np.radians(lat_k))
    dy = lat_p - lat_k
    vals = np.exp(-(dx * dx + dy * dy) / (2.0 * s2)) @ a
    block = out[y0:y1, x0:x1]
    block[valid] += vals


def render_field(t_ns: int, eph: geometry.Ephemeris, size: int, model: RegionModel, layouts: dict | None = None) -> np.ndarray:
    """Line-of-sight field (gauss, float32, NaN off the disk) of an N x N image at ``t_ns``."""
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng([model.seed, 17, int(t_ns // 10**9)])
    scale = geometry.plate_scale(size)
    radius_px = eph.angular_radius / scale
    px_deg = 180.0 / (math.pi * radius_px)  # degrees of arc per pixel at disk centre
    yy, xx = np.mgrid[0:size, 0:size].astype(float)
    lon, lat, mu = geometry._pixel_to_hg_mu(xx, yy, eph, size, clip_limb=True)
    centre = (size - 1) / 2.0
    on = (xx - centre) ** 2 + (yy - centre) ** 2 <= radius_px**2
    lon = np.where(on, lon, np.nan)
    lat = np.where(on, lat, np.nan)
    mu = np.where(on, mu, 0.0)

    radial = np.zeros((size, size))
    for st in region_states(model, t_ns, eph, layouts):
        x, y, z = geometry._heliocentric(st.lon, st.lat, eph.b0)
        cx, cy = geometry._project(x, y, z, eph, size)
        half = st.extent_deg / px_deg + 2.0
        _add_kernels(radial, lon, lat, size, cx, cy, half, st.lon, st.lat, st.u, st.v, st.sigma, st.amp, px_deg)

    # Ephemeral regions: small short-lived bipoles all over the disk.
    for _ in range(rng.poisson(20)):
        zz = rng.uniform(0.05, 1.0)
        phi = rng.uniform(0, 2 * np.pi)
        # Uniform on the visible hemisphere in heliocentric coordinates, then to Stonyhurst.
        hx, hy = math.sqrt(1 - zz * zz) * math.cos(phi), math.sqrt(1 - zz * zz) * math.sin(phi)
        b0 = math.radians(eph.b0)
        e_lat = math.degrees(math.asin(hy * math.cos(b0) + zz * math.sin(b0)))
        e_lon = math.degrees(math.atan2(hx, zz * math.cos(b0) - hy * math.sin(b0)))
        cx, cy = geometry._project(hx, hy, zz, eph, size)
        ang = rng.uniform(0, np.pi)
        half_sep = 0.5 * rng.uniform(1.2, 3.0)
        b = rng.uniform(100.0, 350.0)
        u = np.array([half_sep * math.cos(ang), -half_sep * math.cos(ang)])
        v = np.array([half_sep * math.sin(ang), -half_sep * math.sin(ang)])
        sig = np.full(2, rng.uniform(0.4, 0.8))
        _add_kernels(radial, lon, lat, size, cx, cy, 5.0 / px_deg + 2.0, e_lon, e_lat, u, v, sig, np.array([b, -b]), px_deg)

    los = radial * mu

    # Network: mixed-polarity elements, uniform on the visible hemisphere; their flux is
    # fixed, so the field a pixel averages falls as the pixel grows (smaller images).
    n_net = 6000
    zz = rng.uniform(0.0, 1.0, n_net)
    phi = rng.uniform(0, 2 * np.pi, n_net)
    rr = np.sqrt(1 - zz * zz)
    ex, ey = geometry._project(rr * np.cos(phi), rr * np.sin(phi), zz, eph, size)
    flux = rng.choice([-1.0, 1.0], n_net) * rng.lognormal(np.log(60.0), 0.6, n_net) * zz * (size / 512.0) ** 2
    ix = np.clip(np.round(ex).astype(int), 0, size - 1)
    iy = np.clip(np.round(ey).astype(int), 0, size - 1)
    net = np.zeros((size, size))
    np.add.at(net, (iy, ix), flux)
    # Fine mixed-polarity texture and noise, weaker towards the limb (sqrt(mu): the line of
    # sight sees more, randomly signed, elements per pixel, each times mu).
    texture = gaussian_filter(rng.standard_normal((size, size)), 0.7) * (10.0 * min(1.0, size / 512.0) / 0.4)
    los += gaussian_filter(net, 0.5) + texture * np.sqrt(mu) + rng.normal(0.0, 2.0, (size, size))
    return np.where(on, los, np.nan).astype(np.float32)


def to_pixels(field_gauss: np.ndarray) -> np.ndarray:
    """8-bit image of a field in gauss: 0 G = 128, +-250 G and beyond = 255 / 0, NaN (off-disk) = 0."""
    scaled = np.clip(np.nan_to_num(field_gauss, nan=0.0), -CLIP_GAUSS, CLIP_GAUSS) / CLIP_GAUSS * 127.5 + 127.5
    return np.where(np.isnan(field_gauss), 0, np.floor(scaled + 0.5)).astype(np.uint8)


# --------------------------------------------------------------------------------------
# JPEG with an exactly black background
# --------------------------------------------------------------------------------------


def _jpeg_roundtrip(pixels: np.ndarray, quality: int) -> tuple[bytes, np.ndarray]:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(pixels, mode="L").save(buf, format="JPEG", quality=quality)
    data = buf.getvalue()
    with Image.open(io.BytesIO(data)) as im:
        return data, np.asarray(im.convert("L"))


def encode_jpeg(pixels: np.ndarray, off_disk: np.ndarray, rng: np.random.Generator | None = None,
                quality: int = JPEG_QUALITY, max_rounds: int = 40) -> bytes:
    """JPEG bytes of an 8-bit magnetogram whose off-disk pixels decode to exactly 0.

    JPEG's block transform rings at the sharp limb, leaving grey levels of 1-2 outside the
    disk. Each 8 x 8 block decodes independently, so the blocks where that happens get their
    on-disk pixels nudged by +-1 (a few gauss, below the compression error elsewhere) until a
    variant decodes to 0 off the disk; many variants are tried in one strip-shaped JPEG. The
    result is checked by decoding it (with libjpeg-turbo, as Pillow and torchvision use).
    """
    rng = np.random.default_rng(0) if rng is None else rng
    data, decoded = _jpeg_roundtrip(pixels, quality)
    bad = off_disk & (decoded > 0)
    if not bad.any():
        return data
    h, w = pixels.shape
    # Pad as libjpeg does (edge replication) so that strip blocks encode as in the image.
    ph, pw = -h % 8, -w % 8
    padded = np.pad(pixels, ((0, ph), (0, pw)), mode="edge")
    padded_on = np.pad(~off_disk, ((0, ph), (0, pw)), mode="edge")
    work = padded.copy()
    by, bx = np.nonzero(np.pad(bad, ((0, ph), (0, pw))))
    blocks = sorted(set(zip((by // 8).tolist(), (bx // 8).tolist())))
    trials = 32
    for rnd in range(max_rounds):
        if not blocks:
            break
        # Small nudges first; a block with one or two disk pixels may need a larger one.
        amp = (1, 1, 1, 2, 2, 2, 3, 3, 4, 4, 6, 6, 8, 8, 12, 12)[min(rnd, 15)] + max(0, rnd - 15)
        tiles = []
        for i, j in blocks:
            target = padded[8 * i:8 * i + 8, 8 * j:8 * j + 8].astype(np.int16)
            on = padded_on[8 * i:8 * i + 8, 8 * j:8 * j + 8]
            nudged = np.clip(target + rng.integers(-amp, amp + 1, (trials, 8, 8)), 1, 255)
            tiles.append(np.where(on, nudged, 0).astype(np.uint8))
        flat = np.concatenate(tiles)
        # JPEG images are at most 65535 pixels wide: encode the variants in strips.
        dec = np.concatenate([
            _jpeg_roundtrip(np.ascontiguousarray(np.concatenate(list(flat[k:k + 8000]), axis=1)), quality)[1]
            .reshape(8, -1, 8).transpose(1, 0, 2)
            for k in range(0, len(flat), 8000)
        ])
        n = len(blocks)
        dec = dec.reshape(n, trials, 8, 8)
        ons = np.stack([padded_on[8 * i:8 * i + 8, 8 * j:8 * j + 8] for i, j in blocks])[:, None]
        targets = np.stack([padded[8 * i:8 * i + 8, 8 * j:8 * j + 8] for i, j in blocks]).astype(np.int16)[:, None]
        ok = ((dec > 0) & ~ons).sum(axis=(2, 3)) == 0
        err = np.where(ok, np.abs(dec.astype(np.int16) - targets).max(axis=(2, 3)), np.iinfo(np.int16).max)
        best = err.argmin(axis=1)  # the first of the smallest-error variants that decode clean
        left = []
        for b, (i, j) in enumerate(blocks):
            if ok[b].any():
                work[8 * i:8 * i + 8, 8 * j:8 * j + 8] = tiles[b][best[b]]
            else:
                left.append((i, j))
        blocks = left
    data, decoded = _jpeg_roundtrip(np.ascontiguousarray(work[:h, :w]), quality)
    if (off_disk & (decoded > 0)).any():
        raise RuntimeError("could not make the JPEG's off-disk pixels decode to exactly 0")
    return data


# --------------------------------------------------------------------------------------
# Ground truth and the run
# --------------------------------------------------------------------------------------


def ground_truth(model: RegionModel, times: pd.DatetimeIndex, size: int, ext: str = ".jpg",
                 eph: geometry.Ephemeris | None = None) -> pd.DataFrame:
    """regions.csv rows of ``times``: every region whose centre is on the visible disk."""
    times = pd.DatetimeIndex(times)
    eph = geometry.ephemeris(times) if eph is None else eph
    t_ns = times.as_unit("ns").asi8
    rows = []
    layouts: dict = {}
    for k, t in enumerate(times):
        e = _eph_at(eph, k)
        radius_px = e.angular_radius / geometry.plate_scale(size)
        stamp = t.strftime(TIME_FORMAT)
        rel = image_relpath(t, ext)
        for st in region_states(model, int(t_ns[k]), e, layouts):
            x, y, z = geometry._heliocentric(st.lon, st.lat, e.b0)
            if not z > 1.0 / e.distance:
                continue
            px, py = geometry._project(x, y, z, e, size)
            mu = (z * e.distance - 1.0) / math.sqrt(x * x + y * y + (e.distance - z) ** 2)
            row = {name: model.columns[name][st.index] for name in ("region_id", "noaa_ar")}
            rows.append({
                "timestamp": stamp, "file": rel, "region_id": row["region_id"], "noaa_ar": row["noaa_ar"],
                "lon": round(st.lon, 4), "lat": round(st.lat, 4), "x": round(float(px), 3), "y": round(float(py), 3),
                "radius_px": round(math.radians(st.radius_deg) * radius_px, 3), "mu": round(float(mu), 4),
                "max_class_24h": flux_to_class(st.max_flux_24h) if st.max_flux_24h > 0 else "",
                "max_flux_24h": st.max_flux_24h,
            })
    return pd.DataFrame(rows, columns=REGION_COLUMNS)


def _eph_at(eph: geometry.Ephemeris, k: int) -> geometry.Ephemeris:
    return geometry.Ephemeris(*(float(np.ravel(getattr(eph, f))[k]) for f in ("b0", "angular_radius", "l0", "distance")))


def simulate_image(time, size: int = 512, seed: int = 0, catalog=None, model: RegionModel | None = None):
    """One synthetic magnetogram: (8-bit (N, N) array as it would be written, before JPEG, and
    its regions.csv rows). ``catalog`` is a path or a normalised catalog DataFrame."""
    t = pd.Timestamp(time)
    t = t.tz_localize("UTC") if t.tzinfo is None else t.tz_convert("UTC")
    if model is None:
        cat = catalog if isinstance(catalog, pd.DataFrame) else read_catalog(catalog)
        model = build_regions(cat, t, t, seed)
    eph = geometry.ephemeris(t)
    field_g = render_field(int(t.value), eph, size, model)
    return to_pixels(field_g), ground_truth(model, pd.DatetimeIndex([t]), size, eph=geometry.ephemeris(pd.DatetimeIndex([t])))


# Worker state (set once per process by the pool initializer).
_WORKER: dict = {}


def _init_worker(model: RegionModel, size: int, out: str, quality: int) -> None:
    _WORKER.update(model=model, size=size, out=Path(out), quality=quality, layouts={})


def _render_one(task) -> str:
    t_ns, eph_tuple, rel = task
    w = _WORKER
    eph = geometry.Ephemeris(*eph_tuple)
    field_g = render_field(t_ns, eph, w["size"], w["model"], w["layouts"])
    pixels = to_pixels(field_g)
    rng = np.random.default_rng([w["model"].seed, 19, int(t_ns // 10**9)])
    data = encode_jpeg(pixels, np.isnan(field_g), rng, w["quality"])
    path = w["out"] / rel
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return rel


@dataclass(frozen=True)
class SimulationSummary:
    """What a :func:`simulate` run did."""

    out: Path
    images: int
    written: int
    skipped: int
    region_rows: int
    regions: int
    unplaced_flares: int

    def format(self) -> str:
        return (
            f"{self.images} images ({self.written} written, {self.skipped} already there) in {self.out}\n"
            f"{self.region_rows} region rows ({self.regions} regions) -> {self.out / 'regions.csv'}\n"
            f"{self.unplaced_flares} catalog flares have no position and no placed region (not drawn)"
        )


def _catalog_digest(catalog) -> str:
    path = bundled_catalog_path() if catalog is None else Path(catalog)
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    except OSError:
        raise FlareLensError(f"{path}: no such catalog file") from None


def _check_settings(out: Path, settings: dict) -> None:
    """Refuse to mix images of other settings into ``out``; remember this run's."""
    path = out / "simulate.json"
    if path.exists():
        try:
            old = json.loads(path.read_text())
        except (OSError, ValueError):
            raise FlareLensError(f"{path}: unreadable; delete it (and the images) or use another --out") from None
        diff = {k: (old.get(k), v) for k, v in settings.items() if old.get(k) != v}
        if diff:
            what = ", ".join(f"{k} {a!r} there, {b!r} now" for k, (a, b) in diff.items())
            raise FlareLensError(f"{out} holds images simulated with other settings ({what}); use another --out or the same settings")
    else:
        write_text(json.dumps(settings, indent=1) + "\n", path)


def simulate(start, end, cadence="1h", size: int = 512, out="simulated", seed: int = 0, catalog=None,
             workers: int | None = None, progress: bool = True) -> SimulationSummary:
    """Simulate full-disk magnetograms every ``cadence`` from ``start`` to ``end`` (UTC, inclusive).

    Writes ``OUT/YYYY/MM/DD/HMI.mYYYY.MM.DD_HH.MM.SS.jpg`` (N x N, 8-bit, 0 G = 128, +-250 G
    clipped, off-disk exactly 0) and ``OUT/regions.csv`` (columns :data:`REGION_COLUMNS`;
    rows of other times already there are kept). Images already present are skipped, so an
    interrupted run resumes; ``OUT/simulate.json`` records seed, size and catalog, and a run
    with other settings into the same directory is refused. ``catalog``: a GOES catalog file
    (default: the bundled solar-cycle-24 catalog). ``workers``: processes (default: all
    cores). Returns a :class:`SimulationSummary`.
    """
    if not isinstance(size, (int, np.integer)) or not 16 <= size <= 4096:
        raise FlareLensError(f"--size must be a whole number of pixels from 16 to 4096, got {size!r}")
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise FlareLensError(f"--seed must be a whole number >= 0, got {seed!r}")
    if workers is not None and (not isinstance(workers, (int, np.integer)) or workers < 1):
        raise FlareLensError(f"--workers must be a whole number >= 1, got {workers!r}")
    parse_duration(cadence, "cadence")
    times = sample_times(start, end, cadence)
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise FlareLensError(f"--out {out}: exists and is not a directory")
    digest = _catalog_digest(catalog)
    cat = read_catalog(catalog)
    check_covers(cat, times[0], times[-1])
    out.mkdir(parents=True, exist_ok=True)
    _check_settings(out, {"simulator_version": SIMULATOR_VERSION, "seed": int(seed), "size": int(size), "catalog_sha256": digest})

    model = build_regions(cat, times[0], times[-1], int(seed))
    eph = geometry.ephemeris(times)
    truth = ground_truth(model, times, int(size), eph=eph)

    rels = [image_relpath(t) for t in times]
    todo = [k for k, rel in enumerate(rels) if not (out / rel).is_file()]
    t_ns = times.as_unit("ns").asi8
    tasks = [(int(t_ns[k]), tuple(float(np.ravel(getattr(eph, f))[k]) for f in ("b0", "angular_radius", "l0", "distance")), rels[k]) for k in todo]
    n_workers = workers or (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)
    n_workers = max(1, min(n_workers, len(tasks)))
    from tqdm import tqdm

    bar = tqdm(total=len(tasks), unit="img", desc="simulate", disable=not progress or not tasks)
    try:
        if n_workers == 1 or len(tasks) < 4:
            _init_worker(model, int(size), str(out), JPEG_QUALITY)
            for task in tasks:
                _render_one(task)
                bar.update()
        else:
            import multiprocessing

            # spawn: safe even when the caller has torch or threads running.
            ctx = multiprocessing.get_context("spawn")
            chunk = max(1, min(16, len(tasks) // (n_workers * 8)))
            with ctx.Pool(n_workers, initializer=_init_worker, initargs=(model, int(size), str(out), JPEG_QUALITY)) as pool:
                for _ in pool.imap_unordered(_render_one, tasks, chunksize=chunk):
                    bar.update()
    finally:
        bar.close()

    regions_csv = out / "regions.csv"
    if regions_csv.exists():
        try:
            old = pd.read_csv(regions_csv, dtype={"noaa_ar": str, "max_class_24h": str, "region_id": str}, keep_default_na=False)
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
            raise FlareLensError(f"{regions_csv}: cannot read ({exc}); delete it and run again") from None
        if list(old.columns) == REGION_COLUMNS:
            old = old[~old["timestamp"].isin(set(truth["timestamp"]))]
            truth = pd.concat([old, truth], ignore_index=True).sort_values(["timestamp", "region_id"], kind="stable")
    write_csv(truth, regions_csv)
    return SimulationSummary(out, len(times), len(tasks), len(times) - len(tasks), len(truth),
                             int(truth["region_id"].nunique()) if len(truth) else 0, model.unplaced_flares)
