"""Which active regions a simulated Sun carries, where and when, with which flares.

Flaring regions come from a GOES catalog (flares grouped by NOAA number; unnumbered flares
joined to a numbered region nearby or grouped among themselves by position), placed where
their flares happened and turning with the differential rotation; flare-quiet regions
emerge at random in the activity belts as distractors. A region's random traits are seeded
by (seed, region id), so a region does not depend on the simulated range.
"""

from __future__ import annotations

import functools
import hashlib
import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from flarelens import geometry

#: Nanoseconds per day and per hour (region times are int64 ns since 1970, UTC).
NS_PER_DAY = 86_400 * 10**9
NS_PER_HOUR = 3_600 * 10**9
# Unnumbered flares this close (degrees, great circle) to a region are taken as its flares.
_JOIN_DEG = 8.0
# Flares of one NOAA number further apart than this (days) are separate passages.
_SPLIT_DAYS = 20.0



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


def _circular_median(deg: np.ndarray) -> float:
    """Median of angles (degrees) that lie within a half-circle of each other."""
    ref = deg[0]
    return float((ref + np.median(geometry.wrap_lon(deg - ref))) % 360.0)


def flare_grade(flux):
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
    days = t_ns / NS_PER_DAY
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
        carr_ref = carr[pos] - geometry.carrington_drift(lat[pos], days[pos] - t_ref)
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
            rc = (r["carr"] + geometry.carrington_drift(r["lat"], t - r["t_ref"])) % 360.0
            d = float(geometry.great_circle(rc, r["lat"], c, la))
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
    t = np.sort(catalog["start"].to_numpy(dtype="datetime64[ns]").astype(np.int64) / NS_PER_DAY)
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
            date = pd.Timestamp(int(day) * NS_PER_DAY, tz="UTC")
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
        ts = flare_ns[r["idx"]] / NS_PER_DAY
        g_max = float(flare_grade(flare_flux[r["idx"]]).max())
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
        table[col] = np.round(table[col].to_numpy(dtype=float) * NS_PER_DAY).astype(np.int64)
    table["key"] = [_stable_int(rid) for rid in table["region_id"]]
    return RegionModel(table.reset_index(drop=True), list(flare_ns), list(flare_flux), seed, unplaced)
