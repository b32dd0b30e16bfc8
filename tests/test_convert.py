"""flarelens convert: JP2 / FITS -> N×N 8-bit images by area averaging, in batch."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest
from astropy.io import fits
from PIL import Image

from flarelens import images
from flarelens.cli import main
from flarelens.convert import area_resize, convert, convert_file, output_path, read_source
from flarelens.errors import FlareLensError

SUNPY_JP2 = "2023_01_31__03_39_23_200__SDO_HMI_HMI_continuum.jp2"
TIMES = pd.date_range("2011-02-15T00:00", periods=3, freq="1h", tz="UTC")


@pytest.fixture(scope="module")
def sunpy_jp2():
    from sunpy.data.test import get_test_filepath

    return get_test_filepath(SUNPY_JP2)


def write_fits(path, gauss):
    path.parent.mkdir(parents=True, exist_ok=True)
    fits.PrimaryHDU(np.asarray(gauss, dtype=np.float32)).writeto(path)
    return path


def reference_area_resize(image, n):
    """INTER_AREA by definition: along each axis, replicate every pixel n/g times
    (g = gcd(size, n)) and average blocks of size/g, so each output pixel is the exact
    overlap-weighted mean of the input (unrounded, float64)."""
    out = image.astype(np.float64)
    for axis in (0, 1):
        size = out.shape[axis]
        g = np.gcd(size, n)
        out = np.repeat(out, n // g, axis=axis)
        out = np.moveaxis(out, axis, 0)
        out = out.reshape(n, size // g, *out.shape[1:]).mean(axis=1)
        out = np.moveaxis(out, 0, axis)
    return out


def assert_rounds_to(actual, exact):
    """uint8 ``actual`` is ``exact`` rounded (ties, where summation order may tip them, either way)."""
    diff = np.abs(actual.astype(np.float64) - exact)
    assert diff.max() <= 0.5 + 1e-9


@pytest.mark.parametrize("size", [128, 512, 100, 37])
def test_sunpy_jp2_converts_to_exactly_n_squared_8bit(sunpy_jp2, tmp_path, size):
    out = convert_file(sunpy_jp2, tmp_path / "out.png", size=size, decode="full")
    with Image.open(out) as im:
        assert im.size == (size, size) and im.mode == "L"
    pixels = images.load(out)
    assert pixels.shape == (size, size) and pixels.dtype == np.uint8
    source = images.load(sunpy_jp2)
    if 512 % size == 0:
        f = 512 // size
        expected = np.rint(source.reshape(size, f, size, f).mean(axis=(1, 3)))
        np.testing.assert_array_equal(pixels, expected)
    else:
        assert_rounds_to(pixels, reference_area_resize(source, size))


def test_reduced_decode_is_close_to_the_full_decode_and_zero_off_disk(sunpy_jp2):
    """sunpy's real Helioviewer JP2 (512², 5 wavelet levels) to 128²: "reduced" decodes the
    256² level (one level), "coarsest" the 128² level (two levels)."""
    assert images.jp2_reduction(sunpy_jp2, 256) == (1, 512)
    assert images.jp2_reduction(sunpy_jp2, 128) == (2, 512)
    assert images.jp2_reduction(sunpy_jp2, 1) == (5, 512)  # no more levels than the codestream has
    full = read_source(sunpy_jp2, 128, decode="full").astype(int)
    cx, cy, r = images.disk_geometry(images.read_header(sunpy_jp2), 128)
    yy, xx = np.mgrid[0:128, 0:128]
    dist = np.hypot(xx - cx, yy - cy)
    on, off = dist <= r - 1, dist > r + 0.71  # wholly on / off the disk
    for decode, tolerance in (("reduced", 1.0), ("coarsest", 2.0)):
        pixels = read_source(sunpy_jp2, 128, decode=decode)
        assert pixels.shape == (128, 128) and pixels.dtype == np.uint8
        assert np.abs(pixels.astype(int) - full)[on].mean() <= tolerance, decode
        assert (pixels[off] == 0).all() and (pixels[dist < r - 2] > 0).all()


def test_reduced_decode_averages_subband_samples_where_the_wavelet_puts_them(tmp_path):
    """A subband sample sits at full-resolution pixel 2**levels * n, not at the centre of a
    block: averaged as if it were, sharp edges land up to half an output pixel off."""
    rng = np.random.default_rng(0)

    def steps():  # piecewise-constant profile, edges at random places
        return np.repeat(rng.integers(-60, 60, 200), rng.integers(3, 20, 200))[:512]

    pixels = np.clip(128 + steps()[None, :] + steps()[:, None] + rng.normal(0, 3, (512, 512)), 0, 255)
    path = tmp_path / "steps.jp2"
    Image.fromarray(pixels.astype(np.uint8)).save(path, irreversible=False, num_resolutions=6)  # lossless
    full = read_source(path, 64, decode="full").astype(int)
    reduced = read_source(path, 64, decode="reduced").astype(int)  # from the 128² level
    assert np.abs(reduced - full).mean() < 4.5  # the misplaced average is ~9 gray levels off here


def test_area_resize_matches_definition_on_random_images():
    rng = np.random.default_rng(1)
    for (h, w), n in [((10, 10), 4), ((12, 12), 5), ((64, 64), 16), ((9, 9), 9), ((6, 6), 6)]:
        image = rng.integers(0, 256, (h, w)).astype(np.uint8)
        assert_rounds_to(area_resize(image, n), reference_area_resize(image, n))
    flat = np.full((30, 30), 128, np.uint8)
    assert set(np.unique(area_resize(flat, 7))) == {128}  # fractional weights keep a flat level exact


def test_fits_known_values_give_helioviewer_levels(tmp_path):
    # 128² FITS with four 64² quadrants (FITS row 0 is the bottom, so the image is flipped):
    # bottom-left 0 G, bottom-right +250 G, top-left -250 G, top-right NaN (off-disk).
    gauss = np.zeros((128, 128), np.float32)
    gauss[:64, 64:] = 250.0
    gauss[64:, :64] = -250.0
    gauss[64:, 64:] = np.nan
    gauss[:8, :8] = 2000.0  # beyond the clip, in the 0-G quadrant's corner
    gauss[120:, :8] = -900.0
    src = write_fits(tmp_path / "src" / images.image_relpath(TIMES[0], ".fits"), gauss)
    for fmt in ("png", "jpg"):
        dst = tmp_path / fmt
        summary = convert(tmp_path / "src", dst, size=32, fmt=fmt, workers=1, progress=False)
        assert summary.converted == 1
        out = images.load(dst / images.image_relpath(TIMES[0], f".{fmt}"))
        assert out.shape == (32, 32) and out.dtype == np.uint8
        top_left, top_right = out[:16, :16], out[:16, 16:]
        bottom_left, bottom_right = out[16:, :16], out[16:, 16:]
        # 16×16 quadrants are whole 8×8 JPEG blocks: even JPEG keeps these levels exactly
        assert set(np.unique(top_left[8:, 8:])) == {0}            # -250 G
        assert set(np.unique(top_right)) == {0}                   # NaN
        assert set(np.unique(bottom_right)) == {255}              # +250 G
        assert set(np.unique(bottom_left[:8, 8:])) <= {127, 128}  # 0 G
        assert out[31, 0] == 255 and out[0, 0] == 0               # +2000 G and -900 G corners, clipped
    assert src.exists()


def test_jpeg_keeps_off_disk_zero_and_zero_gauss_level(tmp_path):
    n = 256
    yy, xx = np.mgrid[0:n, 0:n]
    centre, radius = (n - 1) / 2, 0.42 * n
    on_disk = np.hypot(xx - centre, yy - centre) <= radius
    gauss = np.where(on_disk, 0.0, np.nan).astype(np.float32)
    gauss[100:116, 100:116] = 600.0  # an active region
    gauss[100:116, 116:132] = -600.0
    src = write_fits(tmp_path / "src" / images.image_relpath(TIMES[0], ".fits"), gauss)
    convert(tmp_path / "src", tmp_path / "png", size=128, fmt="png", workers=1, progress=False)
    convert(tmp_path / "src", tmp_path / "jpg", size=128, fmt="jpg", workers=1, progress=False)
    png = images.load(tmp_path / "png" / images.image_relpath(TIMES[0], ".png"))
    jpg = images.load(tmp_path / "jpg" / images.image_relpath(TIMES[0], ".jpg"))
    np.testing.assert_array_equal(png, area_resize(images.load(src), 128))  # PNG: lossless
    blocks = lambda a: a.reshape(16, 8, 16, 8).transpose(0, 2, 1, 3).reshape(16, 16, 64)  # noqa: E731
    png_blocks, jpg_blocks = blocks(png), blocks(jpg)
    off = (png_blocks == 0).all(axis=2)
    quiet = (png_blocks == 128).all(axis=2)
    assert off.sum() > 40 and quiet.sum() > 40
    assert (jpg_blocks[off] == 0).all()      # off-disk stays exactly 0
    assert (jpg_blocks[quiet] == 128).all()  # the 0-G level stays exactly 128
    # blocks the limb or the region crosses ring, but only by a few gray levels
    assert np.abs(jpg.astype(int) - png).max() <= 12


def test_batch_keeps_naming_skips_done_and_reports_corrupt(sunpy_jp2, tmp_path, capsys):
    src, dst = tmp_path / "jp2", tmp_path / "img"
    for t in TIMES:
        path = src / images.image_relpath(t, ".jp2")
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(sunpy_jp2, path)
    bad = src / images.image_relpath(pd.Timestamp("2011-02-16T00:00Z"), ".jp2")
    bad.parent.mkdir(parents=True)
    bad.write_bytes(open(sunpy_jp2, "rb").read()[:30000])  # truncated
    (src / "2011" / "02" / "15" / ".HMI.m2011.02.15_03.00.00.abc.part.jp2").write_bytes(b"partial")
    (src / "manifest.csv").write_text("requested,observed\n")
    write_fits(src / images.image_relpath(TIMES[0], ".fits"), np.zeros((64, 64)))  # same time as a .jp2

    summary = convert(src, dst, size=64, fmt="jpg", workers=2, progress=False)
    assert (summary.converted, summary.skipped, summary.failed, summary.duplicates) == (3, 0, 1, 1)
    assert summary.failures[0][0] == str(bad) and "corrupt" in summary.failures[0][1]
    outputs = sorted(p.relative_to(dst).as_posix() for p in dst.rglob("*") if p.is_file())
    assert outputs == [images.image_relpath(t, ".jpg") for t in TIMES]  # no temp or partial files
    for t in TIMES:
        out = images.load(dst / images.image_relpath(t, ".jpg"))
        assert out.shape == (64, 64) and out.dtype == np.uint8
        assert images.parse_image_time(dst / images.image_relpath(t, ".jpg")) == t

    again = convert(src, dst, size=64, fmt="jpg", workers=2, progress=False)
    assert (again.converted, again.skipped, again.failed) == (0, 3, 1)


def test_cli_convert(sunpy_jp2, tmp_path, capsys):
    src = tmp_path / "jp2"
    path = src / images.image_relpath(TIMES[0], ".jp2")
    path.parent.mkdir(parents=True)
    shutil.copy(sunpy_jp2, path)
    rc = main(["convert", str(src), str(tmp_path / "png"), "--size", "64", "--format", "png", "--workers", "1",
               "--no-progress"])
    assert rc == 0 and "converted 1" in capsys.readouterr().out
    assert images.load(tmp_path / "png" / images.image_relpath(TIMES[0], ".png")).shape == (64, 64)
    (src / "2011" / "02" / "15" / "HMI.m2011.02.15_09.00.00.jp2").write_bytes(b"not a jp2")
    rc = main(["convert", str(src), str(tmp_path / "png"), "--size", "64", "--format", "png", "--no-progress"])
    captured = capsys.readouterr()
    assert rc == 1 and "failed 1" in captured.out and "HMI.m2011.02.15_09.00.00.jp2" in captured.out
    assert "Traceback" not in captured.err


def test_non_magnetogram_and_non_square_sources_are_reported_and_skipped(tmp_path):
    src = tmp_path / "src"
    continuum = src / images.image_relpath(TIMES[0], ".fits")
    write_fits(continuum, np.full((16, 16), 5e4))
    with fits.open(continuum, mode="update") as hdus:
        hdus[0].header["BUNIT"] = "DN/s"
    write_fits(src / images.image_relpath(TIMES[1], ".fits"), np.zeros((16, 32)))
    summary = convert(src, tmp_path / "dst", size=8, fmt="png", workers=1, progress=False)
    assert (summary.converted, summary.failed) == (0, 2)
    reasons = dict(summary.failures)
    assert "BUNIT = 'DN/s'" in reasons[str(continuum)] and "--force-fits" in reasons[str(continuum)]
    assert "32x16 px" in reasons[str(src / images.image_relpath(TIMES[1], ".fits"))]
    forced = convert(src, tmp_path / "dst", size=8, fmt="png", workers=1, progress=False, allow_any_fits=True)
    assert (forced.converted, forced.failed) == (1, 1)
    assert main(["convert", str(src), str(tmp_path / "cli"), "--size", "8", "--format", "png", "--force-fits",
                 "--no-progress", "--workers", "1"]) == 1  # the non-square file still fails
    assert (tmp_path / "cli" / images.image_relpath(TIMES[0], ".png")).is_file()


@pytest.mark.parametrize("kwargs, message", [
    ({"decode": "fast"}, "--decode"),
    ({"size": 0}, "--size"),
    ({"fmt": "gif"}, "--format"),
    ({"workers": 0}, "--workers"),
    ({"quality": 101}, "--quality"),
])
def test_bad_arguments(tmp_path, kwargs, message):
    (tmp_path / "src").mkdir()
    with pytest.raises(FlareLensError, match=message):
        convert(tmp_path / "src", tmp_path / "dst", progress=False, **kwargs)


def test_missing_or_empty_source(tmp_path, capsys):
    assert main(["convert", str(tmp_path / "nope"), str(tmp_path / "dst"), "--no-progress"]) == 1
    assert "no such directory" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    with pytest.raises(FlareLensError, match="no image files"):
        convert(tmp_path / "empty", tmp_path / "dst", progress=False)


def test_output_path_keeps_relative_path():
    assert output_path("/a", "/b", "/a/2011/02/15/HMI.m2011.02.15_01.00.00.jp2", "jpg").as_posix() == \
        "/b/2011/02/15/HMI.m2011.02.15_01.00.00.jpg"
    assert output_path("/a", "/b", "/a/x/HMI.m2011.02.15_01.00.00.fits.gz", "png").as_posix() == \
        "/b/x/HMI.m2011.02.15_01.00.00.png"
