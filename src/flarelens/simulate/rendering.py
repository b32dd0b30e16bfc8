"""Drawing a simulated magnetogram: the regions' kernels, ephemeral regions, network and
noise as a line-of-sight field in gauss, and a JPEG whose off-disk pixels decode to exactly
0 (the 8-bit scaling between them is Helioviewer's, :func:`flarelens.images.byte_scale`).

The field is radial, so the line of sight sees it times mu, foreshortened towards the limb.
"""

from __future__ import annotations

import math

import numpy as np

from flarelens import geometry
from flarelens.simulate.evolution import region_states
from flarelens.simulate.regions import RegionModel

#: JPEG quality of written images. 100 keeps the rounding error at 1-2 grey levels, which
#: the off-disk repair (see :func:`encode_jpeg`) can then bring to exactly 0.
JPEG_QUALITY = 100



def add_kernels(out, grid_lon, grid_lat, size, cx, cy, half, lon_c, lat_c, u, v, sigma, amp, px_deg):
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
    lon, lat, mu = geometry.pixel_to_hg_mu(xx, yy, eph, size, clip_limb=True)
    centre = (size - 1) / 2.0
    on = (xx - centre) ** 2 + (yy - centre) ** 2 <= radius_px**2
    lon = np.where(on, lon, np.nan)
    lat = np.where(on, lat, np.nan)
    mu = np.where(on, mu, 0.0)

    radial = np.zeros((size, size))
    for st in region_states(model, t_ns, eph, layouts):
        x, y, z = geometry.heliocentric(st.lon, st.lat, eph.b0)
        cx, cy = geometry.project(x, y, z, eph, size)
        half = st.extent_deg / px_deg + 2.0
        add_kernels(radial, lon, lat, size, cx, cy, half, st.lon, st.lat, st.u, st.v, st.sigma, st.amp, px_deg)

    # Ephemeral regions: small short-lived bipoles all over the disk.
    for _ in range(rng.poisson(20)):
        zz = rng.uniform(0.05, 1.0)
        phi = rng.uniform(0, 2 * np.pi)
        # Uniform on the visible hemisphere in heliocentric coordinates, then to Stonyhurst.
        hx, hy = math.sqrt(1 - zz * zz) * math.cos(phi), math.sqrt(1 - zz * zz) * math.sin(phi)
        b0 = math.radians(eph.b0)
        e_lat = math.degrees(math.asin(hy * math.cos(b0) + zz * math.sin(b0)))
        e_lon = math.degrees(math.atan2(hx, zz * math.cos(b0) - hy * math.sin(b0)))
        cx, cy = geometry.project(hx, hy, zz, eph, size)
        ang = rng.uniform(0, np.pi)
        half_sep = 0.5 * rng.uniform(1.2, 3.0)
        b = rng.uniform(100.0, 350.0)
        u = np.array([half_sep * math.cos(ang), -half_sep * math.cos(ang)])
        v = np.array([half_sep * math.sin(ang), -half_sep * math.sin(ang)])
        sig = np.full(2, rng.uniform(0.4, 0.8))
        add_kernels(radial, lon, lat, size, cx, cy, 5.0 / px_deg + 2.0, e_lon, e_lat, u, v, sig, np.array([b, -b]), px_deg)

    los = radial * mu

    # Network: mixed-polarity elements, uniform on the visible hemisphere; their flux is
    # fixed, so the field a pixel averages falls as the pixel grows (smaller images).
    n_net = 6000
    zz = rng.uniform(0.0, 1.0, n_net)
    phi = rng.uniform(0, 2 * np.pi, n_net)
    rr = np.sqrt(1 - zz * zz)
    ex, ey = geometry.project(rr * np.cos(phi), rr * np.sin(phi), zz, eph, size)
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
