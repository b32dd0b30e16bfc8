"""flarelens.simulate and ``flarelens simulate``: content, ground truth, files, determinism."""

from __future__ import annotations

import io
import time

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from flarelens import geometry, images
from flarelens import simulate as sim
from flarelens.catalog import read_catalog
from flarelens.cli import main
from flarelens.errors import FlareLensError
from flarelens.images import image_relpath, load, parse_image_time

T = pd.Timestamp("2011-03-01T06:00", tz="UTC")


def one_region(time, lon, lat, flares=(), flux=1.0, base=0.0, region_id="AR99999", seed=0):
    """A model with one region at Stonyhurst (lon, lat) at ``time``; flares: (time, W/m²)."""
    day = geometry.to_days(time)
    row = {
        "region_id": region_id, "noaa_ar": region_id[2:], "kind": "flaring",
        "carr": float(geometry.carrington_lon(lon, time)), "lat": lat, "t_ref": day,
        "t_begin": day - 5, "t_end": day + 5, "flux": flux, "base_complexity": base, "anti_hale": False,
    }
    f_ns = np.array([pd.Timestamp(t).value for t, _ in flares], dtype=np.int64)
    f_flux = np.array([f for _, f in flares], dtype=float)
    return sim.make_model([row], [f_ns], [f_flux], seed)


EMPTY = sim.make_model([], [], [])


def region_field(model, time, size):
    """The line-of-sight field (gauss) of the model's regions alone: the same image without
    them (same seed and time, so the same quiet Sun) subtracted."""
    t = pd.Timestamp(time)
    eph = geometry.ephemeris(t)
    empty = sim.make_model([], [], [], model.seed)
    return np.nan_to_num(sim.render_field(t.value, eph, size, model) - sim.render_field(t.value, eph, size, empty))


def weighted_centre(weights):
    yy, xx = np.mgrid[0:weights.shape[0], 0:weights.shape[1]]
    return (weights * xx).sum() / weights.sum(), (weights * yy).sum() / weights.sum()


def write_catalog(path, rows):
    """A small catalog in the bundled format: (start, class, lon, lat, noaa)."""
    lines = ["event_starttime,event_peaktime,event_endtime,goes_class,hgs_lon,hgs_lat,noaa_ar"]
    for start, cls, lon, lat, noaa in rows:
        lines.append(f"{start},,,{cls},{'' if lon is None else lon},{'' if lat is None else lat},{noaa}")
    path.write_text("\n".join(lines) + "\n")
    return path


SMALL_CATALOG = [
    ("2011-03-01 10:00", "M2.0", 10, -15, "11111"),
    ("2011-03-01 20:00", "C3.0", 16, -16, ""),       # unnumbered, next to AR 11111: joins it
    ("2011-03-02 08:00", "C5.0", 23, -15, "11111"),
    ("2011-03-01 12:00", "C2.0", -40, 25, ""),       # unnumbered, alone: its own region
    ("2011-03-01 14:00", "X1.0", None, None, ""),    # no position, no number: not drawn
    ("2011-04-02 09:00", "C1.0", -30, -14, "11111"),  # same number a month later: another passage
]


# ---------------------------------------------------------------------------- regions


def test_catalog_regions_group_by_number_and_position(tmp_path):
    cat = read_catalog(write_catalog(tmp_path / "cat.csv", SMALL_CATALOG))
    regions, unplaced = sim.catalog_regions(cat)
    by_id = {r["region_id"]: r for r in regions}
    assert set(by_id) == {"AR11111", "AR11111-2", "U20110301T1200"}
    assert unplaced == 1
    flares = lambda r: sorted(cat["goes_class"].iloc[r["idx"]])  # noqa: E731
    assert flares(by_id["AR11111"]) == ["C3.0", "C5.0", "M2.0"]
    assert flares(by_id["U20110301T1200"]) == ["C2.0"]
    # The region's position, carried to its first flare, is where that flare was.
    r = by_id["AR11111"]
    t = cat["start"].iloc[0]
    lon = geometry.stonyhurst_lon(r["carr"] + geometry.carrington_drift(r["lat"], geometry.to_days(t) - r["t_ref"]), t)
    assert abs(lon - 10) < 1.5 and r["lat"] == -15


def test_bundled_catalog_places_ar11158_before_its_x_flare():
    model = sim.build_regions(read_catalog(), "2011-02-14T12:00", "2011-02-14T12:00")
    truth = sim.ground_truth(model, pd.DatetimeIndex([pd.Timestamp("2011-02-14T12:00", tz="UTC")]), 512)
    row = truth.set_index("region_id").loc["AR11158"]
    # X2.2 at 01:44 on 2011-02-15 (S20W10 at the time of the flare).
    assert row["max_class_24h"] == "X2.2" and row["max_flux_24h"] == pytest.approx(2.2e-4)
    assert abs(row["lat"] + 20) < 1.5 and -10 < row["lon"] < 10
    assert (truth["mu"] > 0).all()
    assert set(truth["file"]) == {image_relpath("2011-02-14T12:00")}
    # Flare-quiet distractors are on the disk too.
    assert (truth["max_class_24h"] == "").sum() >= 2


def test_complexity_is_graded_by_flare_size_and_timing():
    t = T.value
    hour = 3_600 * 10**9
    c = lambda flux, dt_h, base=0.05: sim.complexity(base, np.array([t + int(dt_h * hour)]), np.array([flux]), t)  # noqa: E731
    assert c(1e-6, 12) == pytest.approx(0.15)
    assert c(1e-5, 12) == pytest.approx(0.5)
    assert c(1e-4, 12) == pytest.approx(0.85)
    assert c(1e-6, 12) < c(5e-6, 12) < c(1e-5, 12) < c(5e-5, 12) < c(1e-4, 12) < c(3e-4, 12)
    assert c(1e-4, 48) == pytest.approx(0.85 * 0.5)  # ramping up ahead of the window
    assert c(1e-4, 100) == c(1e-4, -30) == 0.05       # far ahead or long after: base level
    assert 0.05 < c(1e-4, -6) < 0.85                   # relaxing after the flare
    assert sim.complexity(0.3, np.zeros(0, np.int64), np.zeros(0), t) == 0.3


def test_leading_polarity_follows_hale_and_swaps_each_cycle():
    d2011, d2022 = geometry.to_days("2011-06-01"), geometry.to_days("2022-06-01")
    assert sim.leading_polarity(20, d2011) == -1 and sim.leading_polarity(-20, d2011) == 1
    assert sim.leading_polarity(20, d2022) == 1 and sim.leading_polarity(-20, d2022) == -1


@pytest.mark.parametrize("lat, lead_sign", [(20.0, -1), (-20.0, 1)])
def test_rendered_bipole_obeys_hale_and_joy(lat, lead_sign):
    tilts = []
    for k in range(8):
        field = region_field(one_region(T, 0.0, lat, region_id=f"AR9{k:04d}"), T, 256)
        strong = np.abs(field) > 100
        lead = np.where(strong & (np.sign(field) == lead_sign), np.abs(field), 0)
        follow = np.where(strong & (np.sign(field) == -lead_sign), np.abs(field), 0)
        (lx, ly), (fx, fy) = weighted_centre(lead), weighted_centre(follow)
        assert lx > fx  # leading polarity to the west (right)
        # Joy: the leading part nearer the equator (y grows downward, south is down).
        toward_equator = (ly - fy) if lat > 0 else (fy - ly)
        tilts.append(np.degrees(np.arctan2(toward_equator, lx - fx)))
    assert np.mean(tilts) > 3 and np.mean(np.array(tilts) > 0) >= 0.6


def test_region_centroid_is_its_projected_position_and_foreshortens_to_the_limb():
    size = 256
    centre = region_field(one_region(T, 0.0, 10.0), T, size)
    limb = region_field(one_region(T, 65.0, 10.0), T, size)
    for field, lon in ((centre, 0.0), (limb, 65.0)):
        x, y = geometry.hg_to_pixel(lon, 10.0, T, size)
        cx, cy = weighted_centre(np.abs(field))
        assert np.hypot(cx - x, cy - y) < 2.0

    def spread(field):
        w = np.abs(field)
        cx, cy = weighted_centre(w)
        yy, xx = np.mgrid[0:size, 0:size]
        return np.sqrt((w * (xx - cx) ** 2).sum() / w.sum()), np.sqrt((w * (yy - cy) ** 2).sum() / w.sum())

    (sx0, sy0), (sx1, sy1) = spread(centre), spread(limb)
    mu = geometry.mu(65.0, 10.0, T) / geometry.mu(0.0, 10.0, T)
    assert mu < sx1 / sx0 < 0.65                      # squeezed east-west (the sphere curves away)
    assert sy1 / sy0 == pytest.approx(1.0, abs=0.2)   # not north-south
    # Line-of-sight field: B times mu, spread over mu times fewer pixels.
    assert np.abs(limb).sum() / np.abs(centre).sum() == pytest.approx(mu * mu, rel=0.25)
    assert np.abs(limb).max() / np.abs(centre).max() == pytest.approx(mu, rel=0.25)


def test_regions_before_big_flares_look_more_complex():
    """Sign changes between strong neighbouring pixels (a proxy for polarity inversion lines
    with strong gradients) grow with the size of the coming flare."""

    def pil_pixels(flux):
        flares = [(T + pd.Timedelta(hours=10), flux)] if flux else []
        counts = []
        for k in range(6):
            f = region_field(one_region(T, 0.0, -15.0, flares, region_id=f"AR8{k:04d}"), T, 256)
            strong = np.abs(f) > 150
            h = strong[:, 1:] & strong[:, :-1] & (np.sign(f[:, 1:]) != np.sign(f[:, :-1]))
            v = strong[1:, :] & strong[:-1, :] & (np.sign(f[1:, :]) != np.sign(f[:-1, :]))
            counts.append(h.sum() + v.sum())
        return np.mean(counts)

    quiet, c5, m2, x3 = pil_pixels(0), pil_pixels(5e-6), pil_pixels(2e-5), pil_pixels(3e-4)
    assert quiet <= c5 < m2 < x3
    assert x3 > 3 * max(quiet, 1)


# ---------------------------------------------------------------------------- images


def test_images_look_like_hmi(tmp_path):
    size = 128
    times = pd.date_range("2011-02-14T00:00", periods=3, freq="8h", tz="UTC")
    sim.simulate(times[0], times[-1], "8h", size, tmp_path, workers=1, progress=False)
    truth = pd.read_csv(tmp_path / "regions.csv")
    for t in times:
        img = load(tmp_path / image_relpath(t))
        assert img.shape == (size, size) and img.dtype == np.uint8
        d = geometry.disk(t, size)
        yy, xx = np.mgrid[0:size, 0:size]
        r = np.hypot(xx - d.cx, yy - d.cy)
        assert (img[r > d.radius] == 0).all()                 # off-disk exactly 0
        inner = r < d.radius - 1
        assert (img[inner] > 0).mean() > 0.97                 # the disk is lit (0 only at -250 G)
        # The disk's size in the image is the geometry's radius.
        measured = np.sqrt((img > 0).sum() / np.pi)
        assert abs(measured - d.radius) < 1.0
        # Quiet Sun (away from every region): mixed polarity around 0 G = 128.
        quiet = inner.copy()
        for _, row in truth[truth["timestamp"] == t.strftime("%Y-%m-%dT%H:%M:%SZ")].iterrows():
            quiet &= np.hypot(xx - row["x"], yy - row["y"]) > row["radius_px"] + 3
        values = img[quiet].astype(int)
        assert abs(np.median(values) - 128) <= 1
        assert values.std() > 0.5 and np.percentile(np.abs(values - 128), 99) < 60
        # Active regions saturate, but only a small part of the disk.
        assert 0.001 < ((img[inner] >= 250) | (img[inner] <= 5)).mean() < 0.05


def test_ground_truth_centroids_match_the_written_image(tmp_path):
    size = 256
    sim.simulate("2011-02-14T12:00", "2011-02-14T12:00", "1h", size, tmp_path, workers=1, progress=False)
    truth = pd.read_csv(tmp_path / "regions.csv", keep_default_na=False)
    t = pd.Timestamp("2011-02-14T12:00", tz="UTC")
    img = load(tmp_path / image_relpath(t)).astype(float)
    x, y = geometry.hg_to_pixel(truth["lon"].to_numpy(), truth["lat"].to_numpy(), t, size)
    assert np.allclose(truth["x"], x, atol=0.01) and np.allclose(truth["y"], y, atol=0.01)
    assert np.allclose(truth["mu"], geometry.mu(truth["lon"].to_numpy(), truth["lat"].to_numpy(), t), atol=1e-3)
    yy, xx = np.mgrid[0:size, 0:size]
    checked = 0
    for _, row in truth.iterrows():
        others = truth[truth["region_id"] != row["region_id"]]
        isolated = (np.hypot(others["x"] - row["x"], others["y"] - row["y"]) > row["radius_px"] + others["radius_px"] + 4).all()
        if row["mu"] < 0.5 or not isolated:
            continue
        inside = np.hypot(xx - row["x"], yy - row["y"]) <= row["radius_px"]
        dev = np.abs(img - 128) * inside
        weights = np.where(dev > 40, dev, 0)  # above the quiet Sun: the region's own field
        cx, cy = weighted_centre(weights)
        assert np.hypot(cx - row["x"], cy - row["y"]) < 2.0, row["region_id"]
        checked += 1
    assert checked >= 2


def test_encode_jpeg_makes_off_disk_exactly_zero():
    import torch
    from torchvision.io import decode_jpeg

    rng = np.random.default_rng(0)
    for size in (50, 64, 100, 200):
        d = geometry.disk("2012-07-01", size)
        yy, xx = np.mgrid[0:size, 0:size]
        on = np.hypot(xx - d.cx, yy - d.cy) <= d.radius
        pixels = np.where(on, np.clip(128 + rng.normal(0, 20, (size, size)), 0, 255), 0).astype(np.uint8)
        pixels[size // 3:size // 2, size // 3:size // 2] = 255
        data = sim.encode_jpeg(pixels, ~on, rng)
        decoded = np.asarray(Image.open(io.BytesIO(data)))
        assert (decoded[~on] == 0).all()
        assert np.abs(decoded.astype(int) - pixels)[on].mean() < 1.0
        tv = decode_jpeg(torch.frombuffer(bytearray(data), dtype=torch.uint8)).numpy()[0]
        assert (tv[~on] == 0).all()


def test_a_512_image_takes_well_under_a_second():
    cat = read_catalog()
    t = pd.Timestamp("2014-02-25T00:00", tz="UTC")  # a busy disk
    model = sim.build_regions(cat, t, t)
    eph = geometry.ephemeris(t)
    sim.render_field(t.value, eph, 512, model)  # warm-up (imports)
    # CPU time of this process: other jobs sharing the cores do not count (~0.2 s here).
    start = time.process_time()
    field = sim.render_field(t.value, eph, 512, model)
    sim.encode_jpeg(images.byte_scale(field), np.isnan(field))
    assert time.process_time() - start < 1.0


def test_simulated_images_use_helioviewer_scale():
    # clip(B) / 250 * 127.5 + 127.5, rounded half up; off-disk (NaN) 0. Simulated fields are float32.
    field = np.array([[0.0, 250.0, -250.0, 1000.0, -1000.0, 125.0, np.nan]], dtype=np.float32)
    assert images.byte_scale(field).tolist() == [[128, 255, 0, 255, 0, 191, 0]]
    pixels, _ = sim.simulate_image("2011-02-14T12:00", 64, catalog=None)
    assert pixels.dtype == np.uint8 and pixels[0, 0] == 0 and 100 < pixels[32, 32] < 156


# ---------------------------------------------------------------------------- runs and the CLI


def test_cli_writes_named_images_and_regions_csv(tmp_path, capsys):
    cat = write_catalog(tmp_path / "cat.csv", SMALL_CATALOG)
    out = tmp_path / "sim"
    rc = main(["simulate", "--start", "2011-03-01T00:00", "--end", "2011-03-01T03:00", "--cadence", "1h",
               "--size", "64", "--out", str(out), "--catalog", str(cat), "--workers", "2", "--quiet"])
    assert rc == 0
    text = capsys.readouterr().out
    assert "4 images (4 written, 0 already there)" in text
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.jpg"))
    assert files == [image_relpath(t) for t in pd.date_range("2011-03-01T00:00", periods=4, freq="1h", tz="UTC")]
    assert [parse_image_time(f).hour for f in files] == [0, 1, 2, 3]
    truth = pd.read_csv(out / "regions.csv", keep_default_na=False, dtype={"noaa_ar": str})
    assert list(truth.columns) == sim.REGION_COLUMNS
    first = truth[truth["timestamp"] == "2011-03-01T00:00:00Z"].set_index("region_id")
    assert first.loc["AR11111", "max_class_24h"] == "M2.0"
    assert first.loc["AR11111", "max_flux_24h"] == pytest.approx(2e-5)
    assert first.loc["AR11111", "noaa_ar"] == "11111"
    assert first.loc["U20110301T1200", "max_class_24h"] == "C2.0"
    assert "AR11111-2" not in set(truth["region_id"])  # a month later: not on the disk yet
    # Quiet distractors carry no flares.
    quiet = truth[truth["region_id"].str.startswith("Q")]
    assert (quiet["max_class_24h"] == "").all() and (quiet["max_flux_24h"] == 0).all()


def test_same_seed_same_images_whatever_the_workers_and_resume(tmp_path):
    args = ("2011-06-07T00:00", "2011-06-07T10:00", "2h", 48)
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    sim.simulate(*args, a, seed=3, workers=1, progress=False)
    sim.simulate(*args, b, seed=3, workers=2, progress=False)
    sim.simulate(*args, c, seed=4, workers=1, progress=False)
    files = sorted(p.relative_to(a) for p in a.rglob("*.jpg"))
    assert len(files) == 6
    assert all((a / f).read_bytes() == (b / f).read_bytes() for f in files)
    assert any((a / f).read_bytes() != (c / f).read_bytes() for f in files)
    assert (a / "regions.csv").read_text() == (b / "regions.csv").read_text()

    # Resume: a missing image is drawn again, identical; the others are left alone.
    victim = a / files[2]
    original = victim.read_bytes()
    victim.unlink()
    stamp = (a / files[0]).stat().st_mtime_ns
    summary = sim.simulate(*args, a, seed=3, workers=1, progress=False)
    assert (summary.written, summary.skipped) == (1, 5)
    assert victim.read_bytes() == original
    assert (a / files[0]).stat().st_mtime_ns == stamp
    # Extending the range keeps the earlier rows of regions.csv.
    sim.simulate("2011-06-07T12:00", "2011-06-07T12:00", "2h", 48, a, seed=3, workers=1, progress=False)
    assert pd.read_csv(a / "regions.csv")["timestamp"].nunique() == 7
    assert not list(a.rglob(".*.part*"))


def test_other_settings_into_the_same_directory_are_refused(tmp_path, capsys):
    sim.simulate("2011-06-07T00:00", "2011-06-07T00:00", "1h", 32, tmp_path, seed=0, progress=False)
    with pytest.raises(FlareLensError, match="size"):
        sim.simulate("2011-06-07T01:00", "2011-06-07T01:00", "1h", 64, tmp_path, seed=0, progress=False)
    rc = main(["simulate", "--start", "2011-06-07", "--end", "2011-06-07", "--out", str(tmp_path), "--size", "32", "--seed", "5", "--quiet"])
    assert rc == 1
    assert "seed" in capsys.readouterr().err
    # A damaged record refuses too (one line), and is left as it was.
    (tmp_path / "simulate.json").write_text("{not json")
    with pytest.raises(FlareLensError, match="simulate.json: damaged settings"):
        sim.simulate("2011-06-07T00:00", "2011-06-07T00:00", "1h", 32, tmp_path, seed=0, progress=False)
    assert (tmp_path / "simulate.json").read_text() == "{not json"


@pytest.mark.parametrize("argv, message", [
    (["--size", "8"], "size"),
    (["--cadence", "0h"], "cadence"),
    (["--cadence", "soon"], "cadence"),
    (["--workers", "0"], "workers"),
    (["--catalog", "/nonexistent/cat.csv"], "no such catalog"),
    (["--end", "2011-01-01"], "before start"),
])
def test_cli_errors_are_one_line(tmp_path, capsys, argv, message):
    base = ["simulate", "--start", "2011-06-07", "--end", "2011-06-07T02:00", "--out", str(tmp_path / "o"), "--quiet"]
    assert main(base + argv) == 1
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_regions_are_drawn_whole_not_cut_at_a_box():
    """Drawing each region in a box around it (for speed) must lose nothing: compare with the
    same kernels evaluated over the whole image."""
    size = 256
    flares = [(T + pd.Timedelta(hours=6), 5e-4)]
    for lon, flux in ((0.0, 3.0), (70.0, 2.0)):
        model = one_region(T, lon, -12.0, flares, flux=flux)
        eph = geometry.ephemeris(T)
        boxed = region_field(model, T, size)
        lon_g, lat_g, mu = geometry.disk_grid(T, size)
        (st,) = sim.region_states(model, T.value, eph)
        px_deg = 180.0 / (np.pi * geometry.disk(T, size).radius)
        whole = np.zeros((size, size))
        sim.add_kernels(whole, lon_g, lat_g, size, size / 2, size / 2, size, st.lon, st.lat, st.u, st.v, st.sigma, st.amp, px_deg)
        whole = np.nan_to_num(whole * mu)
        assert np.abs(boxed - whole).max() < 2.0  # gauss
