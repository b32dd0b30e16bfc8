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
    gauss = np.zeros((8, 8), np.float32)
    gauss[-1] = [0.0, 250.0, 1000.0, -250.0, -3000.0, np.nan, 125.0, -125.0]  # FITS' last row is the top
    path = write_fits(tmp_path / "mag.fits", gauss, BUNIT="Gauss", CONTENT="MAGNETOGRAM")
    pixels = images.load(path)
    assert pixels.dtype == np.uint8 and pixels.shape == gauss.shape
    zero, plus, strong, minus, very_neg, nan, half, neg_half = pixels[0]
    assert zero == 128  # 127.5 rounds half up
    assert plus == 255 and strong == 255
    assert minus == 0 and very_neg == 0
    assert nan == 0
    # linear in between: +-125 G sit a quarter of the range from the middle
    assert half == 191 and neg_half == 64


def test_byte_scale_is_the_helioviewer_formula():
    rng = np.random.default_rng(0)
    gauss = rng.normal(0, 200, 10_000).astype(np.float32)
    gauss[:4] = [np.nan, np.inf, -np.inf, 0.0]
    clipped = np.clip(gauss.astype(np.float64), -250, 250)
    expected = np.floor(clipped / 250 * 127.5 + 127.5 + 0.5)
    expected[:3] = 0  # invalid pixels are off-disk
    got = images.byte_scale(gauss)
    assert got.dtype == np.uint8
    # float32 arithmetic may tip a value lying within rounding of x.5: at most one level there
    assert np.abs(got.astype(int) - expected).max() <= 1 and (got == expected).mean() > 0.999
    assert images.byte_scale(np.array([125.0, -125.0, 0.0, -250.0, 251.0])).tolist() == [191, 64, 128, 0, 255]


@pytest.mark.parametrize("header, what", [
    ({"BUNIT": "DN/s", "CONTENT": "CONTINUUM INTENSITY"}, "BUNIT = 'DN/s'"),
    ({"CONTENT": "CONTINUUM INTENSITY"}, "CONTENT = 'CONTINUUM INTENSITY'"),
    ({"BUNIT": "Gauss", "CONTENT": "DOPPLERGRAM"}, "CONTENT = 'DOPPLERGRAM'"),
])
def test_fits_that_says_it_is_no_magnetogram_is_refused(tmp_path, header, what):
    path = write_fits(tmp_path / "other.fits", np.full((8, 8), 40000.0), **header)
    with pytest.raises(FlareLensError, match=f"other.fits: its header says {what}.*--force-fits") as err:
        images.load(path)
    assert "\n" not in str(err.value)
    assert images.load(path, allow_any_fits=True).shape == (8, 8)  # forced: scaled as if in gauss


def test_magnetogram_headers_are_accepted(tmp_path):
    for header in ({"BUNIT": "Gauss", "CONTENT": "MAGNETOGRAM"}, {"BUNIT": "Mx/cm^2"}, {}):
        assert images.load(write_fits(tmp_path / f"m{len(header)}.fits", np.zeros((4, 4)), **header)).shape == (4, 4)


def test_non_square_fits_and_jp2_are_refused_not_squashed(tmp_path):
    with pytest.raises(FlareLensError, match="wide.fits: 8x4 px image.*square"):
        images.load(write_fits(tmp_path / "wide.fits", np.zeros((4, 8))))
    Image.fromarray(np.zeros((16, 24), np.uint8)).save(tmp_path / "wide.jp2")
    with pytest.raises(FlareLensError, match="wide.jp2: 24x16 px image.*square"):
        images.load(tmp_path / "wide.jp2")


def test_non_quarter_roll_is_undone_like_sunpy(tmp_path):
    """CROTA2 = 30 degrees: the residual roll is undone in sunpy's sense (GenericMap.rotate)."""
    import warnings

    import sunpy.map

    data = np.zeros((41, 41), dtype=np.float32)
    data[30, 20] = 200.0  # 10 px above the centre in FITS (row 0 at the bottom)
    data[20, 32] = 100.0  # 12 px right of the centre
    header = {"CTYPE1": "HPLN-TAN", "CTYPE2": "HPLT-TAN", "CDELT1": 1.0, "CDELT2": 1.0, "CUNIT1": "arcsec",
              "CUNIT2": "arcsec", "CRPIX1": 21.0, "CRPIX2": 21.0, "CRVAL1": 0.0, "CRVAL2": 0.0, "CROTA2": 30.0,
              "DATE-OBS": "2020-01-01T00:00:00"}
    ours = images.north_up(data, header)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rotated = sunpy.map.Map(data, header).rotate(order=1, missing=np.nan)
    # sunpy pads the rotated array: compare offsets from each image's reference (centre) pixel,
    # rows counted from the top as flarelens shows them.
    theirs = rotated.data[::-1]
    ref_x, ref_y = (float(v.value) for v in rotated.reference_pixel)
    ref_theirs = np.array([theirs.shape[0] - 1 - ref_y, ref_x])

    def spot(a, value):
        return np.array(np.unravel_index(np.nanargmax(np.where(np.abs(a - value) < value / 2, a, -1)), a.shape))

    for value in (100.0, 200.0):
        assert np.hypot(*((spot(ours, value) - [20, 20]) - (spot(theirs, value) - ref_theirs))) <= 1, value
    # and by the definition: a point at angle phi from north ends at phi + CROTA2, seen north up
    y, x = np.unravel_index(np.nanargmax(ours), ours.shape)  # the 200 spot, 10 px from the centre
    assert (y, x) == (round(20 - 10 * np.cos(np.radians(30))), round(20 - 10 * np.sin(np.radians(30))))


def test_disk_geometry_of_a_helioviewer_header_and_off_disk_zero(sunpy_jp2):
    header = images.read_header(sunpy_jp2)
    cx, cy, r = images.disk_geometry(header, 128)
    # 512 px with CRPIX 256.5 (the centre) and RSUN_OBS / CDELT px, scaled to 128
    assert (cx, cy) == pytest.approx((63.5, 63.5)) and r == pytest.approx(973.96844 / 4.80000016 / 4)
    shifted = dict(header, CRPIX1=300.5, CRPIX2=200.5, CRVAL1=48.0)
    cx, cy, _ = images.disk_geometry(shifted, 512)
    assert (cx, cy) == pytest.approx((299.5 - 10.0, 511 - 199.5))  # rows counted from the top
    assert images.disk_geometry({"NAXIS1": 4}, 4) is None
    pixels = np.full((9, 9), 50, np.uint8)
    zeroed = images.zero_off_disk(pixels, (4.0, 4.0, 2.6))
    assert zeroed[4, 4] == 50 and zeroed[4, 7] == 50  # the limb crosses pixel (4, 7): kept
    assert zeroed[4, 8] == 0 and zeroed[0, 0] == 0 and zeroed[1, 1] == 0  # wholly outside
    assert zeroed[2, 2] == 50  # its nearest corner (2.5, 2.5) lies 2.12 px from the centre


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
    with pytest.raises(FlareLensError, match="DN/s"):  # a continuum image, not a magnetogram
        images.load(path)
    pixels = images.load(path, allow_any_fits=True)
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
