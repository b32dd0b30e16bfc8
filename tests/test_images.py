"""flarelens.images: loading .jp2 / .fits / .jpg / .png as 8-bit magnetograms, and JP2/FITS headers."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from astropy.io import fits
from PIL import Image

from flarelens import images
from flarelens.errors import FlareLensError

SUNPY_JP2 = "2023_01_31__03_39_23_200__SDO_HMI_HMI_continuum.jp2"


@pytest.fixture(scope="module")
def sunpy_jp2():
    from sunpy.data.test import get_test_filepath

    return get_test_filepath(SUNPY_JP2)


def write_fits(path, data, **header):
    hdu = fits.PrimaryHDU(np.asarray(data, dtype=np.float32))
    for key, value in header.items():
        hdu.header[key] = value
    hdu.writeto(path)
    return path


def test_load_helioviewer_jp2_is_8bit_and_matches_pillow(sunpy_jp2, tmp_path):
    pixels = images.load(sunpy_jp2)
    assert pixels.shape == (512, 512) and pixels.dtype == np.uint8
    # The JP2 is lossless-decoded: a PNG written from the same decode reads back identically.
    png = tmp_path / "same.png"
    with Image.open(sunpy_jp2) as im:
        im.save(png)
    np.testing.assert_array_equal(images.load(png), pixels)
    # A real full-disk image: dark outside the disk, bright inside.
    assert pixels[0, 0] < 10 and pixels[256, 256] > 100


def test_read_header_of_helioviewer_jp2(sunpy_jp2):
    header = images.read_header(sunpy_jp2)
    assert header["TELESCOP"] == "SDO"
    assert header["NAXIS1"] == 512 and isinstance(header["NAXIS1"], int)
    assert header["DATE-OBS"].startswith("2023-01-31T03:39:23")
    assert abs(header["RSUN_OBS"] - 973.97) < 0.01


def test_fits_magnetogram_gets_helioviewer_byte_scale(tmp_path):
    gauss = np.array([[0.0, 250.0, 1000.0, -250.0, -3000.0, np.nan, 125.0, -125.0]], dtype=np.float32)
    path = write_fits(tmp_path / "mag.fits", gauss)
    pixels = images.load(path)
    assert pixels.dtype == np.uint8 and pixels.shape == gauss.shape
    zero, plus, strong, minus, very_neg, nan, half, neg_half = pixels[0]
    assert zero in (127, 128)
    assert plus == 255 and strong == 255
    assert minus == 0 and very_neg == 0
    assert nan == 0
    # linear in between: +-125 G sit a quarter of the range from the middle
    assert abs(int(half) - 191) <= 1 and abs(int(neg_half) - 64) <= 1


def test_fits_orientation_north_up_row_zero_on_top(tmp_path):
    data = np.zeros((8, 8), dtype=np.float32)
    data[7, 0] = 250.0  # FITS row 7 is the top of the image when CROTA2 = 0 (row 0 is the bottom)
    upright = images.load(write_fits(tmp_path / "up.fits", data, CROTA2=0.0))
    assert upright[0, 0] == 255 and upright.sum() == 255 + 63 * 128
    # HMI's level-1 data are rolled by ~180 degrees: the same marker then sits at the bottom right
    rolled = images.load(write_fits(tmp_path / "rolled.fits", data, CROTA2=179.95))
    assert rolled[7, 7] == 255 and rolled.sum() == 255 + 63 * 128


def test_fits_quarter_turn_matches_sunpy_rotate(tmp_path):
    import warnings

    import sunpy.map

    data = np.zeros((21, 21), dtype=np.float32)
    data[15, 10], data[10, 15] = 100.0, 200.0
    header = {"CTYPE1": "HPLN-TAN", "CTYPE2": "HPLT-TAN", "CDELT1": 1.0, "CDELT2": 1.0, "CUNIT1": "arcsec",
              "CUNIT2": "arcsec", "CRPIX1": 11.0, "CRPIX2": 11.0, "CRVAL1": 0.0, "CRVAL2": 0.0, "CROTA2": 90.0,
              "DATE-OBS": "2020-01-01T00:00:00"}
    ours = images.north_up(data, header)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = sunpy.map.Map(data, header).rotate(order=0, missing=0.0).data[::-1]
    for value in (100.0, 200.0):
        assert tuple(np.argwhere(ours == value)[0]) == tuple(np.argwhere(theirs == value)[0])


@pytest.mark.filterwarnings("ignore::astropy.io.fits.verify.VerifyWarning")  # the file's BLANK key, read raw here
def test_sunpy_resampled_hmi_fits_has_zero_off_disk(tmp_path):
    from sunpy.data.test import get_test_filepath

    path = get_test_filepath("resampled_hmi.fits")
    with fits.open(path) as hdus:
        nan_count = int(np.isnan(hdus[0].data).sum())
    pixels = images.load(path)
    assert pixels.shape == (100, 100) and pixels.dtype == np.uint8
    assert nan_count > 0 and (pixels == 0).sum() >= nan_count
    assert pixels[0, 0] == 0 and pixels[50, 50] > 0
    assert images.read_header(path)["NAXIS1"] == 100


def test_png_and_jpg_still_load(tmp_path):
    ramp = np.tile(np.arange(0, 256, 4, dtype=np.uint8), (16, 1))
    Image.fromarray(ramp).save(tmp_path / "a.png")
    np.testing.assert_array_equal(images.load(tmp_path / "a.png"), ramp)
    Image.fromarray(ramp).save(tmp_path / "a.jpg", quality=95)
    assert np.abs(images.load(tmp_path / "a.jpg").astype(int) - ramp).max() <= 3


def test_corrupt_and_missing_files(sunpy_jp2, tmp_path):
    truncated = tmp_path / "cut.jp2"
    truncated.write_bytes(open(sunpy_jp2, "rb").read()[:20000])
    with pytest.raises(FlareLensError, match="cut.jp2"):
        images.load(truncated)
    garbage = tmp_path / "bad.fits"
    garbage.write_bytes(b"this is not FITS at all" * 10)
    with pytest.raises(FlareLensError, match="bad.fits"):
        images.load(garbage)
    with pytest.raises(FileNotFoundError):
        images.load(tmp_path / "absent.jp2")
    other = tmp_path / "x.tif"
    shutil.copy(sunpy_jp2, other)
    with pytest.raises(FlareLensError, match="unknown image format"):
        images.load(other)
