"""A simulated region's magnetic layout and how it evolves: growth, decay and the
complexity that rises ahead of its flares.

A region is a bipole (leading spot and a more diffuse following polarity, Hale's polarity
law, Joy's tilt) with plage around it, plus complexity features (parasitic and delta-like
opposite-polarity pairs) that switch on as its complexity rises; the largest flare
starting in the next 24 h sets the complexity, graded by size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from flarelens import geometry
from flarelens.simulate.regions import NS_PER_DAY, NS_PER_HOUR, RegionModel, flare_grade, leading_polarity

_WINDOW_NS = np.int64(24 * NS_PER_HOUR)
# Number of complexity features each region carries (switched on as its complexity rises).
_N_FEATURES = 8



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
    hours = (flare_ns - t_ns) / NS_PER_HOUR
    weight = np.select(
        [hours <= -18, hours <= 0, hours <= 24, hours <= 72],
        [0.0, 0.6 * (1 + hours / 18.0), 1.0, (72.0 - hours) / 48.0],
        0.0,
    )
    return float(max(base, (weight * flare_grade(flare_flux)).max()))


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
        dt = (t_ns - row["t_ref"]) / NS_PER_DAY
        lon = float(geometry.wrap_lon(row["carr"] + geometry.carrington_drift(row["lat"], dt) - eph.l0))
        if abs(lon) > 110.0:
            continue
        key = row["key"]
        if key not in layouts:
            layouts[key] = region_layout(int(key), model.seed, float(row["lat"]), float(row["flux"]),
                                         bool(row["anti_hale"]), row["t_ref"] / NS_PER_DAY)
        lay = layouts[key]
        c = complexity(float(row["base_complexity"]), model.flare_ns[i], model.flare_flux[i], t_ns)
        # Growth over the first day, decay (spreading, fading) over the last two.
        age = (t_ns - row["t_begin"]) / NS_PER_DAY
        left = (row["t_end"] - t_ns) / NS_PER_DAY
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
