"""flarelens.images: the cases mutation testing found unguarded (see docs/mutation-notes/images.md)."""

from __future__ import annotations

import math
import shutil
import warnings

import numpy as np
import pandas as pd
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


def write_jp2(path, side=100, numres=6, grid_offset=None):
    """A gray JPEG 2000 file written by OpenJPEG (glymur): ``numres - 1`` decomposition levels."""
    import glymur

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # glymur re-reads the file and notes the offset grid
        glymur.Jp2k(str(path), data=np.full((side, side), 90, np.uint8), numres=numres, grid_offset=grid_offset)
    return path


# --- file names ---------------------------------------------------------------------------


def test_relpath_follows_the_study_convention_in_utc():
    """YYYY/MM/DD/HMI.mYYYY.MM.DD_HH.MM.SS.<ext>; naive times are UTC, aware ones converted."""
    assert images.image_relpath("2011-02-15 01:00:00") == "2011/02/15/HMI.m2011.02.15_01.00.00.jpg"
    # 23:30 at -02:00 is 01:30 UTC on the next day
    assert images.image_relpath("2011-02-14T23:30:05-02:00", ".png") == "2011/02/15/HMI.m2011.02.15_01.30.05.png"
    assert images.image_relpath(pd.Timestamp("2011-02-15 01:00", tz="UTC"), "jp2").endswith("_01.00.00.jp2")
    assert images.image_relpath("2011-02-15 01:00", "") == "2011/02/15/HMI.m2011.02.15_01.00.00"


def test_image_time_is_parsed_back_from_the_name_as_utc():
    t = images.parse_image_time("/data/2011/02/15/HMI.m2011.02.15_01.02.03.jp2")
    assert t == pd.Timestamp("2011-02-15T01:02:03Z") and str(t.tz) == "UTC"
    for when in ("2012-12-31 23:59:58", "2016-02-29 12:00:00"):
        assert images.parse_image_time(images.image_relpath(when, ".png")) == pd.Timestamp(when, tz="UTC")
    with pytest.raises(ValueError, match=r"x\.jpg: file name does not follow HMI\.mYYYY\.MM\.DD_HH\.MM\.SS\.<ext>"):
        images.parse_image_time("2011/02/15/x.jpg")


def test_find_image_returns_the_first_existing_extension_or_none(tmp_path):
    t = pd.Timestamp("2011-02-15 01:00", tz="UTC")
    assert images.find_image(tmp_path, t) is None
    png = tmp_path / "2011/02/15/HMI.m2011.02.15_01.00.00.png"
    png.parent.mkdir(parents=True)
    png.write_bytes(b"x")
    assert images.find_image(tmp_path, t) == png
    jpg = png.with_name(png.stem + ".jpg")
    jpg.write_bytes(b"x")
    assert images.find_image(tmp_path, t) == jpg  # .jpg comes first in IMAGE_EXTENSIONS
    assert images.find_image(str(tmp_path), "2011-02-15 01:00", extensions=(".fits", ".png")) == png
    assert images.find_image(tmp_path, "2011-02-15 02:00") is None  # another hour


# --- loading --------------------------------------------------------------------------------


def test_missing_file_names_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"absent\.png: no such image file"):
        images.load(tmp_path / "absent.png")


def test_16_bit_and_float_images_are_refused_not_clipped(tmp_path):
    """Converting them to 8 bits would clip silently; the user is told to convert the FITS."""
    Image.fromarray(np.array([[0, 1000], [40000, 65535]], np.uint16)).save(tmp_path / "deep.png")
    # Pillow opens by content: a float TIFF under a .png name opens in mode "F"
    Image.fromarray(np.ones((2, 2), np.float32)).save(tmp_path / "float.tif")
    shutil.copy(tmp_path / "float.tif", tmp_path / "float.png")
    for name, mode in (("deep.png", "I;16"), ("float.png", "F")):
        with pytest.raises(FlareLensError) as err:
            images.load(tmp_path / name)
        assert str(err.value) == (f"{tmp_path / name}: {mode} image; expected 8-bit grayscale as Helioviewer "
                                  "serves it (convert the source FITS instead)")


def test_colour_image_is_loaded_as_luma(tmp_path):
    rgb = np.array([[[255, 0, 0], [0, 255, 0]], [[0, 0, 255], [200, 200, 200]]], np.uint8)
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    got = images.load(tmp_path / "rgb.png")
    assert got.shape == (2, 2) and got.dtype == np.uint8
    luma = rgb.astype(float) @ [0.299, 0.587, 0.114]  # ITU-R 601 luma, Pillow's "L"
    assert np.abs(got - luma).max() <= 1


def test_reduced_jp2_decode_is_the_low_pass_subband(sunpy_jp2):
    """reduce=2 quarters the side; sample n lies at full-resolution pixel 4n, not at a block centre."""
    full = images.load(sunpy_jp2).astype(float)
    small = images.load(sunpy_jp2, reduce=2).astype(float)
    assert small.shape == (128, 128)
    at_corner = np.abs(small - full[::4, ::4]).mean()
    assert at_corner < 4 and at_corner < np.abs(small - full[2::4, 2::4]).mean()


def test_non_square_message_says_what_to_do(tmp_path):
    hdu = fits.PrimaryHDU(np.zeros((4, 8), np.float32))
    hdu.writeto(tmp_path / "wide.fits")
    with pytest.raises(FlareLensError) as err:
        images.load(tmp_path / "wide.fits")
    assert str(err.value) == (f"{tmp_path / 'wide.fits'}: 8x4 px image; a full-disk magnetogram is square and "
                              "flarelens does not squash it (crop or pad it to a square first)")


def test_fits_image_after_a_cube_and_files_without_an_image(tmp_path):
    """The first 2-D image HDU is read: a 3-D cube before it is skipped; no 2-D image is an error."""
    gauss = np.zeros((4, 4), np.float32)
    gauss[-1, 0] = 250.0  # FITS' last row is the top
    cube = fits.PrimaryHDU(np.zeros((2, 4, 4), np.float32))
    fits.HDUList([cube, fits.ImageHDU(gauss)]).writeto(tmp_path / "ext.fits")
    pixels = images.load(tmp_path / "ext.fits")
    assert pixels[0, 0] == 255 and (pixels.ravel()[1:] == 128).all()
    assert images.read_header(tmp_path / "ext.fits")["NAXIS"] == 2

    table = fits.BinTableHDU.from_columns([fits.Column(name="a", format="E", array=np.zeros(3))])
    fits.HDUList([fits.PrimaryHDU(), table]).writeto(tmp_path / "table.fits")
    with pytest.raises(FlareLensError) as err:
        images.load(tmp_path / "table.fits")
    assert str(err.value) == f"{tmp_path / 'table.fits'}: no 2-D image in this FITS file"


# --- byte scale -----------------------------------------------------------------------------


def test_byte_scale_keeps_float64_precision():
    """100 G maps to exactly 178.5 (rounds up to 179); 1e-9 G less must round down in float64.

    In float32 the two inputs are the same number, so a float32 computation gives 179 for both.
    """
    assert images.byte_scale(np.array([100.0, 100.0 - 1e-9])).tolist() == [179, 178]
    assert images.byte_scale(np.array([100, -100, 250, 300], np.int16)).tolist() == [179, 77, 255, 255]


@pytest.mark.skipif(np.finfo(np.longdouble).eps >= np.finfo(np.float64).eps, reason="no extended precision")
def test_byte_scale_keeps_extended_precision():
    """The documented rule: computed in the input's float precision (not cut down to float32)."""
    g = np.array([np.longdouble(100) - np.longdouble(1e-16)], dtype=np.longdouble)
    assert images.byte_scale(g).tolist() == [178]


# --- FITS headers ---------------------------------------------------------------------------


@pytest.mark.parametrize("header, what", [
    ({"BUNIT": "DN/s"}, "BUNIT = 'DN/s'"),
    ({"CONTENT": "CONTINUUM INTENSITY"}, "CONTENT = 'CONTINUUM INTENSITY'"),
])
def test_header_check_reads_a_plain_dict_as_read_header_gives_it(tmp_path, header, what):
    """read_header returns a dict with upper-case keys (case-sensitive, unlike astropy's Header)."""
    hdu = fits.PrimaryHDU(np.zeros((4, 4), np.float32))
    hdu.header.update(header)
    hdu.writeto(tmp_path / "c.fits")
    as_dict = images.read_header(tmp_path / "c.fits")
    assert isinstance(as_dict, dict)
    with pytest.raises(FlareLensError) as err:
        images.check_magnetogram_header(as_dict, "c.fits")
    assert str(err.value) == (f"c.fits: its header says {what}: not a line-of-sight magnetogram in gauss, so the "
                              "+-250 G scale does not apply (convert --force-fits to convert it anyway)")
    images.check_magnetogram_header({"BUNIT": "Gauss", "CONTENT": "MAGNETOGRAM"}, "m.fits")  # accepted


def test_fits_read_header_drops_commentary_cards(tmp_path):
    hdu = fits.PrimaryHDU(np.zeros((4, 4), np.float32))
    hdu.header["BUNIT"] = "Gauss"
    hdu.header["COMMENT"] = "a comment"
    hdu.header["HISTORY"] = "a history line"
    hdu.header.add_blank("")
    hdu.writeto(tmp_path / "c.fits")
    header = images.read_header(tmp_path / "c.fits")
    assert header["BUNIT"] == "Gauss" and header["NAXIS1"] == 4
    assert not {"", "COMMENT", "HISTORY"} & set(header)


def test_jpx_and_j2k_names_are_read_as_jpeg_2000(sunpy_jp2, tmp_path):
    for ext in (".jpx", ".j2k"):
        shutil.copy(sunpy_jp2, tmp_path / f"copy{ext}")
        assert images.read_header(tmp_path / f"copy{ext}")["TELESCOP"] == "SDO"
    (tmp_path / "copy.png").write_bytes(b"")
    assert images.read_header(tmp_path / "copy.png") == {}


def _add_xml(path, text):
    import glymur
    from lxml import etree

    glymur.Jp2k(str(path)).append(glymur.jp2box.XMLBox(xml=etree.ElementTree(etree.fromstring(text))))


def test_jp2_fits_box_is_found_after_another_xml_box(tmp_path):
    """An XMP (or other) XML box before Helioviewer's does not hide the FITS header; HISTORY and
    COMMENT are dropped as for FITS files."""
    path = write_jp2(tmp_path / "x.jp2")
    _add_xml(path, '<x:xmpmeta xmlns:x="adobe:ns:meta/"><a>1</a></x:xmpmeta>')
    _add_xml(path, "<meta><fits><NAXIS1>100</NAXIS1><CDELT1>0.6</CDELT1><TELESCOP>SDO</TELESCOP>"
                   "<HISTORY>h</HISTORY><COMMENT>c</COMMENT></fits></meta>")
    assert images.read_header(path) == {"NAXIS1": 100, "CDELT1": 0.6, "TELESCOP": "SDO"}


def test_jp2_lower_case_history_and_comment_tags_are_dropped_too(sunpy_jp2):
    header = images.read_header(sunpy_jp2)  # this file's tags are lower case
    assert header["TELESCOP"] == "SDO"
    assert "HISTORY" not in header and "COMMENT" not in header


def test_corrupt_jp2_names_the_file(tmp_path):
    bad = tmp_path / "bad.jp2"
    bad.write_bytes(b"not a jpeg 2000 file" * 20)
    with pytest.raises(FlareLensError, match=r"bad\.jp2: cannot parse JPEG 2000 boxes \(.*\)$"):
        images.read_header(bad)
    with pytest.raises(FlareLensError, match=r"bad\.jp2: cannot parse the JPEG 2000 codestream \(.*\); the file is corrupt$"):
        images.jp2_reduction(bad, 8)


# --- JPEG 2000 resolution levels ------------------------------------------------------------


def test_jp2_reduction_rounds_the_reduced_side_up_and_stops_at_the_levels(tmp_path):
    """Side 100 with 5 levels: the reduced sides are ceil(100 / 2**k) = 50, 25, 13, 7, 4."""
    path = write_jp2(tmp_path / "odd.jp2", side=100, numres=6)
    assert images.jp2_reduction(path, 100) == (0, 100)
    assert images.jp2_reduction(path, 50) == (1, 100)  # 50 >= 50
    assert images.jp2_reduction(path, 26) == (1, 100)  # 25 < 26
    assert images.jp2_reduction(path, 13) == (3, 100)  # ceil(12.5) = 13, as OpenJPEG decodes it
    assert images.jp2_reduction(path, 2) == (5, 100)  # not more than the 5 levels of the codestream
    assert np.asarray(images.load(path, reduce=3)).shape == (13, 13)  # the rounding the count relies on


def test_jp2_reduction_side_excludes_the_image_offset(tmp_path):
    """An image offset on the reference grid (XOsiz) is not part of the image's side."""
    path = write_jp2(tmp_path / "off.jp2", side=100, numres=6, grid_offset=(3, 7))
    assert images.jp2_reduction(path, 26) == (1, 100)


def test_codestream_without_cod_segment_gets_no_reduction_then_a_clean_error(tmp_path):
    """A corrupt codestream that lacks its COD segment (glymur still parses the header): no level is
    assumed, and decoding then reports the corrupt file as a FlareLensError, not a traceback."""
    import struct

    write_jp2(tmp_path / "ok.j2k", side=64)  # a raw codestream: SOC, SIZ, COD, ...
    raw = (tmp_path / "ok.j2k").read_bytes()
    at = raw.find(b"\xff\x52")  # the COD marker
    assert at > 0
    (tmp_path / "nocod.j2k").write_bytes(raw[:at] + raw[at + 2 + struct.unpack(">H", raw[at + 2:at + 4])[0]:])
    assert images.jp2_reduction(tmp_path / "ok.j2k", 8) == (3, 64)
    assert images.jp2_reduction(tmp_path / "nocod.j2k", 8) == (0, 64)
    with pytest.raises(FlareLensError, match=r"nocod\.j2k: cannot decode image"):
        images.load(tmp_path / "nocod.j2k")


def test_jp2_reduction_reads_only_the_header(sunpy_jp2, tmp_path):
    """No decoding: the count works even when the tile data of the file is cut off."""
    cut = tmp_path / "cut.jp2"
    cut.write_bytes(open(sunpy_jp2, "rb").read()[:20000])
    assert images.jp2_reduction(cut, 128) == (2, 512)


# --- disk geometry and off-disk pixels ------------------------------------------------------


def test_disk_centre_uses_crval_in_both_axes():
    """The disk centre (0", 0") lies CRVAL / CDELT pixels before the reference pixel CRPIX."""
    base = {"NAXIS1": 512, "NAXIS2": 512, "CRPIX1": 256.5, "CRPIX2": 256.5, "CDELT1": 2.0, "CDELT2": 2.0,
            "RSUN_OBS": 960.0}
    assert images.disk_geometry(base, 512) == pytest.approx((255.5, 255.5, 480.0))  # no CRVAL: 0
    shifted = dict(base, CRVAL1=20.0, CRVAL2=-30.0)
    # x: 255.5 - 20/2 = 245.5; y (FITS, from the bottom): 255.5 + 30/2 = 270.5, i.e. row 511 - 270.5 from the top
    assert images.disk_geometry(shifted, 512) == pytest.approx((245.5, 240.5, 480.0))
    assert images.disk_geometry(shifted, 128) == pytest.approx(((245.5 + 0.5) / 4 - 0.5, (240.5 + 0.5) / 4 - 0.5, 120.0))


def _square_meets_disk(i, j, cx, cy, r):
    """Whether the unit square around pixel centre (x=j, y=i) meets the closed disk: the centre
    lies in the square, or one of its four edges comes within r of the centre."""
    if abs(cx - j) <= 0.5 and abs(cy - i) <= 0.5:
        return True
    corners = [(j - 0.5, i - 0.5), (j + 0.5, i - 0.5), (j + 0.5, i + 0.5), (j - 0.5, i + 0.5)]
    for (ax, ay), (bx, by) in zip(corners, corners[1:] + corners[:1]):
        t = min(max(((cx - ax) * (bx - ax) + (cy - ay) * (by - ay)) / ((bx - ax) ** 2 + (by - ay) ** 2), 0), 1)
        if math.hypot(ax + t * (bx - ax) - cx, ay + t * (by - ay) - cy) <= r:
            return True
    return False


@pytest.mark.parametrize("disk", [(10.3, 9.7, 6.45), (10.0, 10.0, 7.3), (8.6, 11.2, 4.05), (10.0, 10.0, 9.8)])
def test_zero_off_disk_zeroes_exactly_the_pixels_that_miss_the_disk(disk):
    pixels = np.full((21, 21), 50, np.uint8)
    got = images.zero_off_disk(pixels, disk)
    expected = np.array([[50 if _square_meets_disk(i, j, *disk) else 0 for j in range(21)] for i in range(21)])
    np.testing.assert_array_equal(got, expected)
    assert got.dtype == np.uint8
    floats = images.zero_off_disk(pixels.astype(np.float32), disk)
    assert floats.dtype == np.float32


def test_pixel_touching_the_limb_at_one_point_is_kept():
    """Off the disk means the square's nearest point is *farther* than the radius."""
    got = images.zero_off_disk(np.full((9, 9), 7, np.uint8), (4.0, 4.0, 2.5))
    assert got[1, 4] == 7 and got[4, 1] == 7 and got[4, 7] == 7  # nearest points exactly 2.5 px away
    assert got[0, 4] == 0


# --- orientation ----------------------------------------------------------------------------


def _blob(n=81, north=30, sigma=2.0):
    """FITS-ordered (row 0 at the bottom) image with a Gaussian spot ``north`` px above the centre."""
    yy, xx = np.mgrid[0:n, 0:n]
    c = (n - 1) / 2
    return np.exp(-((xx - c) ** 2 + (yy - c - north) ** 2) / (2 * sigma**2)).astype(np.float32)


def _centroid(a):
    a = np.nan_to_num(a)
    yy, xx = np.mgrid[0:a.shape[0], 0:a.shape[1]]
    return (a * yy).sum() / a.sum(), (a * xx).sum() / a.sum()


def test_north_up_without_a_header_only_flips_the_rows():
    data = np.arange(12, dtype=np.float32).reshape(3, 4)
    np.testing.assert_array_equal(images.north_up(data), data[::-1])


def test_a_one_degree_roll_is_undone_and_a_tenth_of_a_degree_is_left():
    """Rolls above 0.1 deg are resampled: a spot 30 px north moves to angle CROTA2 east of north,
    i.e. 30 sin(1 deg) = 0.52 px to the left. A roll of 0.1 deg or less is left alone (no resampling)."""
    data = _blob()
    y, x = _centroid(images.north_up(data, {"CROTA2": 1.0}))
    assert y == pytest.approx(40 - 30 * math.cos(math.radians(1)), abs=0.05)
    assert x == pytest.approx(40 - 30 * math.sin(math.radians(1)), abs=0.05)
    for small in (0.1, 0.05, -0.1):
        np.testing.assert_array_equal(images.north_up(data, {"CROTA2": small}), data[::-1])


def test_residual_roll_is_bilinear_with_nan_outside():
    """Bilinear rotation never leaves the input's range (a spline would overshoot a step), and
    the parts of the output that were outside the input are NaN (off-disk), also for integer data."""
    step = np.zeros((41, 41), np.float32)
    step[:, 20:] = 250.0
    rotated = images.north_up(step, {"CROTA2": 30.0})
    inner = rotated[12:29, 12:29]
    assert np.isfinite(inner).all() and inner.min() >= 0.0 and inner.max() <= 250.0
    assert 0 < ((inner > 0) & (inner < 250)).sum()  # interpolated along the rotated edge
    ints = images.north_up(np.full((21, 21), 100, np.int16), {"CROTA2": 30.0})
    assert np.isnan(ints[0, 0]) and np.isnan(ints[-1, -1]) and ints[10, 10] == pytest.approx(100.0)


def test_rotated_fits_corners_are_off_disk_zero_not_zero_gauss(tmp_path):
    hdu = fits.PrimaryHDU(np.zeros((21, 21), np.float32))
    hdu.header["CROTA2"] = 30.0
    hdu.writeto(tmp_path / "rolled.fits")
    pixels = images.load(tmp_path / "rolled.fits")
    assert pixels[0, 0] == 0 and pixels[-1, -1] == 0  # no data there
    assert pixels[10, 10] == 128  # 0 G


def _rotation(theta):
    c, s = math.cos(math.radians(theta)), math.sin(math.radians(theta))
    return {"PC1_1": c, "PC1_2": -s, "PC2_1": s, "PC2_2": c}


@pytest.mark.parametrize("theta", [90.0, -90.0, 30.0])
def test_roll_from_crota_or_the_pc_matrix_is_the_same_as_crota2(theta):
    """CROTA (the older keyword) and a PC rotation matrix give the roll CROTA2 would (plain dict headers)."""
    data = _blob()
    want = images.north_up(data, {"CROTA2": theta})
    np.testing.assert_allclose(images.north_up(data, {"CROTA": theta}), want, equal_nan=True)
    np.testing.assert_allclose(images.north_up(data, _rotation(theta)), want, atol=1e-5, equal_nan=True)
    assert not np.allclose(want, data[::-1], equal_nan=True)  # a real roll


def test_identity_pc_diagonal_without_off_diagonal_terms_is_no_roll():
    """PC2_1 may be left out when it is 0 (the FITS default); PC1_1 = PC2_2 = 1 is then no roll."""
    data = _blob()
    np.testing.assert_array_equal(images.north_up(data, {"PC1_1": 1.0, "PC2_2": 1.0}), data[::-1])


def test_pc_matrix_of_a_half_turn_without_off_diagonal_terms_is_a_half_turn():
    data = _blob()
    np.testing.assert_array_equal(images.north_up(data, {"PC1_1": -1.0, "PC2_2": -1.0}),
                                  images.north_up(data, {"CROTA2": 180.0}))


def test_pc_matrix_with_only_the_off_diagonal_term_takes_pc1_1_as_one():
    # FITS: a missing diagonal PC term is 1. PC2_1 = tan(20 deg) alone is then a 20-degree
    # roll (atan2(PC2_1, 1)), the same as CROTA2 = 20 — not "no roll".
    data = _blob()
    np.testing.assert_array_equal(images.north_up(data, {"PC2_1": math.tan(math.radians(20.0))}),
                                  images.north_up(data, {"CROTA2": 20.0}))
    assert not np.array_equal(images.north_up(data, {"CROTA2": 20.0}), images.north_up(data, {}))
