"""flarelens.convert: the cases mutation testing found unguarded (see docs/mutation-notes/convert.md).

Small synthetic sources (PNG, FITS, lossless JPEG 2000 of a few dozen pixels), so the
whole file runs in a few seconds.
"""

from __future__ import annotations

import io
import logging
import os
import re
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from astropy.io import fits
from PIL import Image

from flarelens import convert as convert_module
from flarelens import images, progress
from flarelens.cli import build_parser
from flarelens.convert import (
    ConvertSummary,
    _convert_task,
    area_resize,
    convert,
    convert_file,
    find_sources,
    output_path,
    read_source,
)
from flarelens.errors import FlareLensError

T0 = "2011-02-15T00:00Z"
T1 = "2011-02-15T01:00Z"
T2 = "2011-02-15T02:00Z"

SQUARE_MESSAGE = "px image; a full-disk magnetogram is square and flarelens does not squash it " \
                 "(crop or pad it to a square first)"


def write_png(path, pixels):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(pixels, dtype=np.uint8), mode="L").save(path)
    return path


def write_fits(path, gauss, **header):
    path.parent.mkdir(parents=True, exist_ok=True)
    hdu = fits.PrimaryHDU(np.asarray(gauss, dtype=np.float32))
    for key, value in header.items():
        hdu.header[key] = value
    hdu.writeto(path)
    return path


def png_source(root, time, pixels):
    return write_png(root / images.image_relpath(time, ".png"), pixels)


def area_reference(image, rows, cols):
    """INTER_AREA by definition, independent of the code: along each axis replicate every
    pixel n/g times (g = gcd) and average blocks, so each output is the exact overlap-weighted
    mean (float64, unrounded)."""
    out = np.asarray(image, dtype=np.float64)
    for axis, n in ((0, rows), (1, cols)):
        size = out.shape[axis]
        g = np.gcd(size, n)
        out = np.moveaxis(np.repeat(out, n // g, axis=axis), axis, 0)
        out = out.reshape(n, size // g, *out.shape[1:]).mean(axis=1)
        out = np.moveaxis(out, 0, axis)
    return out


def assert_rounds_to(actual, exact):
    assert actual.shape == exact.shape and actual.dtype == np.uint8
    assert np.abs(actual.astype(np.float64) - exact).max() <= 0.5 + 1e-9


# ---------------------------------------------------------------- area_resize


@pytest.mark.parametrize("shape, size", [
    ((10, 12), (5, 5)),   # rows divide, columns do not
    ((12, 10), (5, 5)),   # columns divide, rows do not
    ((11, 10), (5, 5)),   # rows leave remainder 1
    ((10, 11), (5, 5)),   # columns leave remainder 1
    ((12, 9), (4, 6)),    # (rows, cols) size, each axis its own factor
])
def test_area_resize_when_only_one_axis_divides(shape, size):
    """The exact block-mean shortcut applies only when BOTH axes divide; otherwise the
    weighted path must be taken (taking the shortcut would reshape into the wrong blocks)."""
    image = np.random.default_rng(3).integers(0, 256, shape).astype(np.uint8)
    assert_rounds_to(area_resize(image, size), area_reference(image, *size))


@pytest.mark.parametrize("shape, size", [((6, 8), (1, 4)), ((6, 8), (3, 1)), ((6, 8), (1, 1)), ((5, 7), 1)])
def test_area_resize_to_a_single_row_or_column(shape, size):
    """An output side of 1 px is a valid size (the whole axis averaged), not an error."""
    image = np.random.default_rng(4).integers(0, 256, shape).astype(np.uint8)
    rows, cols = (size, size) if np.isscalar(size) else size
    assert_rounds_to(area_resize(image, size), area_reference(image, rows, cols))


def test_area_resize_integer_factor_is_the_exact_block_mean_with_ties_to_even():
    """For integer factors the docstring promises the plain block mean, rounded to nearest.
    Block means that are exactly k + 1/2 must round the same way every time (numpy's
    half-to-even), not tip with the rounding error of fractional weights such as 1/6."""
    rng = np.random.default_rng(5)
    ties = 0
    for (h, w), (oh, ow) in [((12, 18), (2, 3)), ((12, 12), (6, 4)), ((30, 30), (5, 5)), ((36, 36), (6, 6))]:
        fh, fw = h // oh, w // ow
        for _ in range(20):
            image = rng.integers(0, 256, (h, w)).astype(np.uint8)
            sums = np.zeros((oh, ow), np.int64)  # exact integer block sums, by loops
            for i in range(oh):
                for j in range(ow):
                    sums[i, j] = int(image[i * fh:(i + 1) * fh, j * fw:(j + 1) * fw].astype(np.int64).sum())
            n = fh * fw
            floor, rem = np.divmod(sums, n)
            expected = floor + (2 * rem > n) + ((2 * rem == n) & (floor % 2 == 1))  # half to even
            np.testing.assert_array_equal(area_resize(image, (oh, ow)), expected)
            ties += int((2 * rem == n).sum())
    assert ties > 20  # the cases do contain exact ties (else this test could not see the rounding)


def test_area_resize_same_size_returns_a_copy():
    """At the same size the result must be a new array: editing it (zeroing the off-disk
    pixels, say) must not change the caller's image."""
    image = np.arange(16, dtype=np.uint8).reshape(4, 4)
    out = area_resize(image, 4)
    assert out.dtype == np.uint8 and not np.shares_memory(out, image)
    out[:] = 0
    assert image[3, 3] == 15


def test_area_resize_errors_name_the_problem():
    with pytest.raises(ValueError, match=re.escape("expected a 2-D image, got shape (4, 4, 3)")):
        area_resize(np.zeros((4, 4, 3), np.uint8), 2)
    with pytest.raises(ValueError, match=re.escape("output size must be positive, got (0, 5)")):
        area_resize(np.zeros((10, 10), np.uint8), (0, 5))
    with pytest.raises(ValueError, match=re.escape("output size must be positive, got (5, 0)")):
        area_resize(np.zeros((10, 10), np.uint8), (5, 0))


# ---------------------------------------------------------------- read_source


def test_read_source_flat_areas_stay_exact_in_the_reduced_decode(tmp_path):
    """A lossless JP2 with a black half (-250 G and beyond: a real strong negative field, 0)
    and a white half (255): far from the edge the reduced decode's weighted average must give
    exactly 0 and 255 (rounded half up, weights summing to 1), as the full decode does. The
    file has no FITS header, so nothing is zeroed afterwards."""
    pixels = np.zeros((64, 64), np.uint8)
    pixels[:, 32:] = 255
    path = tmp_path / "halves.jp2"
    Image.fromarray(pixels).save(path, irreversible=False, num_resolutions=4)
    assert images.read_header(path) == {} and images.jp2_reduction(path, 32) == (1, 64)
    for decode in ("reduced", "coarsest", "full"):
        out = read_source(path, 16, decode=decode)
        assert out.shape == (16, 16) and out.dtype == np.uint8
        assert (out[:, :6] == 0).all() and (out[:, 10:] == 255).all(), decode


def test_read_source_decodes_j2k_and_jpx_like_jp2(tmp_path):
    """The reduced decode applies to every JPEG 2000 flavour (.j2k raw codestream, .jpx),
    not only to .jp2: the same pixels give the same result whatever the extension."""
    rng = np.random.default_rng(0)

    def steps():
        return np.repeat(rng.integers(-60, 60, 40), rng.integers(2, 9, 40))[:64]

    pixels = np.clip(128 + steps()[None, :] + steps()[:, None], 0, 255).astype(np.uint8)
    for ext in ("jp2", "j2k", "jpx"):
        Image.fromarray(pixels).save(tmp_path / f"p.{ext}", irreversible=False, num_resolutions=4)
    assert (tmp_path / "p.j2k").read_bytes()[:2] == b"\xff\x4f"  # a raw codestream, no JP2 boxes
    reduced = read_source(tmp_path / "p.jp2", 16, decode="reduced")
    assert (reduced != read_source(tmp_path / "p.jp2", 16, decode="full")).any()  # the two decodes differ here
    for ext in ("j2k", "jpx", "J2K"):
        path = tmp_path / f"p.{ext}"
        if ext == "J2K":
            path = (tmp_path / "p.j2k").rename(tmp_path / "q.J2K")
        np.testing.assert_array_equal(read_source(path, 16, decode="reduced"), reduced, err_msg=ext)


def test_read_source_refuses_a_non_square_png_with_its_size(tmp_path):
    """PNG and JPEG are not checked on loading (only FITS and JP2 are): read_source must
    refuse a non-square one rather than squash it, and say W x H."""
    src = write_png(tmp_path / "wide.png", np.zeros((16, 32)))
    with pytest.raises(FlareLensError, match=re.escape(f"{src}: 32x16 {SQUARE_MESSAGE}")):
        read_source(src, 8)
    tall = write_png(tmp_path / "tall.png", np.zeros((12, 4)))
    with pytest.raises(FlareLensError, match=re.escape(f"{tall}: 4x12 {SQUARE_MESSAGE}")):
        read_source(tall, 4, decode="full")


def test_read_source_bad_decode_lists_the_choices(tmp_path):
    with pytest.raises(FlareLensError, match=re.escape("--decode must be one of reduced, coarsest, full, got 'fast'")):
        read_source(tmp_path / "x.png", 8, decode="fast")


def test_fits_that_is_not_a_magnetogram_is_refused_by_default(tmp_path):
    """A continuum FITS (BUNIT DN/s) would be byte-scaled as if in gauss: refused unless asked."""
    src = write_fits(tmp_path / "continuum.fits", np.full((8, 8), 5e4), BUNIT="DN/s")
    with pytest.raises(FlareLensError, match="not a line-of-sight magnetogram"):
        read_source(src, 4)
    with pytest.raises(FlareLensError, match="not a line-of-sight magnetogram"):
        convert_file(src, tmp_path / "out.png", 4)
    assert not (tmp_path / "out.png").exists()
    assert set(np.unique(read_source(src, 4, allow_any_fits=True))) == {255}  # 5e4 "G" clips to white


def test_library_defaults_match_the_cli_defaults(tmp_path):
    """convert / convert_file / read_source called without options do what the CLI does by
    default: 512 px, JPEG, the reduced decode. Expected values come from the CLI parser."""
    args = build_parser("convert").parse_args(["convert", "a", "b"])
    assert (args.size, args.format) == (512, "jpg")
    src_root = tmp_path / "src"
    src = png_source(src_root, T0, np.full((16, 16), 128))
    pixels = read_source(src)
    assert pixels.shape == (args.size, args.size) and set(np.unique(pixels)) == {128}
    out = convert_file(src, tmp_path / "one.png")
    with Image.open(out) as im:
        assert im.size == (args.size, args.size)
    summary = convert(src_root, tmp_path / "dst", workers=1, progress=False)
    assert summary.converted == 1
    produced = tmp_path / "dst" / images.image_relpath(T0, "." + args.format)
    with Image.open(produced) as im:
        assert im.format == "JPEG" and im.size == (args.size, args.size)
    assert output_path(src_root, tmp_path / "dst", src) == produced


# ---------------------------------------------------------------- convert_file


def test_convert_file_format_follows_fmt_over_the_extension(tmp_path):
    """``fmt`` decides the encoding even when the destination's name says nothing (or
    something else); without ``fmt`` the extension decides, .jpeg included."""
    src = write_png(tmp_path / "src.png", np.random.default_rng(1).integers(0, 256, (16, 16)))
    cases = [("a.img", "jpg", "JPEG"), ("b.img", "png", "PNG"), ("c.png", "jpg", "JPEG"),
             ("d.jpeg", None, "JPEG"), ("e.JPG", None, "JPEG"), ("f.png", None, "PNG")]
    for name, fmt, expected in cases:
        out = convert_file(src, tmp_path / name, 8, fmt=fmt)
        with Image.open(out) as im:
            assert (im.format, im.mode, im.size) == (expected, "L", (8, 8)), name


@pytest.mark.parametrize("name", ["out.gif", "out.Xpng", "out"])
def test_convert_file_refuses_an_unknown_extension(tmp_path, name):
    src = write_png(tmp_path / "src.png", np.zeros((8, 8)))
    fmt = name.rpartition(".")[2].lower() if "." in name else ""
    with pytest.raises(ValueError, match=re.escape(f"unknown output format {fmt!r} (expected jpg or png)")):
        convert_file(src, tmp_path / name, 4)
    assert not (tmp_path / name).exists() and list(tmp_path.iterdir()) == [src]  # no temporary left


# ---------------------------------------------------------------- the worker


def test_worker_reports_a_vanished_file(tmp_path):
    src = str(tmp_path / "gone.png")
    assert _convert_task(src, str(tmp_path / "out.png"), 8, "png", 95, "reduced", False) == \
        (src, "file disappeared before it could be read")


def test_worker_reports_value_errors_with_their_type(tmp_path):
    src = str(write_png(tmp_path / "src.png", np.zeros((8, 8))))
    assert _convert_task(src, str(tmp_path / "out.gif"), 4, "gif", 95, "reduced", False) == \
        (src, "ValueError: unknown output format 'gif' (expected jpg or png)")


def test_failure_reasons_drop_the_repeated_file_name_and_are_logged(tmp_path):
    """The summary lists "failed SRC: reason", so the reason must not start with SRC again;
    each failure is also logged as a warning naming the file."""
    src_root = tmp_path / "src"
    wide = png_source(src_root, T0, np.zeros((16, 32)))
    corrupt = src_root / images.image_relpath(T1, ".jp2")
    corrupt.write_bytes(b"not a jpeg 2000 file")
    records = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = records.append
    logger = logging.getLogger("flarelens.convert")
    logger.addHandler(handler)
    try:
        summary = convert(src_root, tmp_path / "dst", size=8, fmt="png", workers=1, progress=False)
    finally:
        logger.removeHandler(handler)
    assert (summary.converted, summary.failed) == (0, 2)
    reasons = dict(summary.failures)
    assert reasons[str(wide)] == f"32x16 {SQUARE_MESSAGE}"
    assert not reasons[str(corrupt)].startswith(str(corrupt)) and "corrupt" in reasons[str(corrupt)]
    assert [r.getMessage() for r in records] == [f"convert: skipped {src}: {reason}" for src, reason in summary.failures]
    assert f"  failed {wide}: 32x16 px image" in summary.format()


# ---------------------------------------------------------------- convert: arguments


@pytest.mark.parametrize("kwargs, message", [
    ({"fmt": "gif"}, "--format must be one of jpg, png, got 'gif'"),
    ({"decode": "fast"}, "--decode must be one of reduced, coarsest, full, got 'fast'"),
    ({"size": 0}, "--size must be a positive number of pixels, got 0"),
    ({"quality": 0}, "--quality must be between 1 and 100, got 0"),
    ({"quality": 101}, "--quality must be between 1 and 100, got 101"),
    ({"workers": 0}, "--workers must be at least 1, got 0"),
])
def test_bad_arguments_say_what_is_allowed(tmp_path, kwargs, message):
    (tmp_path / "src").mkdir()
    with pytest.raises(FlareLensError, match=re.escape(message)):
        convert(tmp_path / "src", tmp_path / "dst", progress=False, **kwargs)


def test_format_spellings_jpeg_and_dotted_upper_case(tmp_path):
    """--format accepts "jpeg" (written as .jpg files, the naming convention) and ".PNG"."""
    src_root = tmp_path / "src"
    png_source(src_root, T0, np.full((8, 8), 200))
    for fmt, ext, kind in (("jpeg", ".jpg", "JPEG"), ("JPEG", ".jpg", "JPEG"), (".PNG", ".png", "PNG"),
                           (".jpg", ".jpg", "JPEG")):
        dst = tmp_path / f"dst{fmt}"
        assert convert(src_root, dst, size=4, fmt=fmt, workers=1, progress=False).converted == 1, fmt
        files = [p for p in dst.rglob("*") if p.is_file()]
        assert files == [dst / images.image_relpath(T0, ext)], fmt
        with Image.open(files[0]) as im:
            assert im.format == kind, fmt


def test_size_one_is_the_mean_of_the_whole_image(tmp_path):
    """--size 1 is a positive size: one pixel, the mean of the source (10·(0+…+15)/16 = 75)."""
    src_root = tmp_path / "src"
    png_source(src_root, T0, (np.arange(16) * 10).reshape(4, 4))
    assert convert(src_root, tmp_path / "dst", size=1, fmt="png", workers=1, progress=False).converted == 1
    out = images.load(tmp_path / "dst" / images.image_relpath(T0, ".png"))
    assert out.shape == (1, 1) and out[0, 0] == 75


def test_jpeg_quality_limits_1_and_100_are_accepted(tmp_path):
    """The documented range 1-100 is inclusive; 100 is much closer to lossless than 1."""
    src_root = tmp_path / "src"
    noisy = np.random.default_rng(2).integers(0, 256, (32, 32))
    png_source(src_root, T0, noisy)
    errors = {}
    for quality in (1, 100):
        dst = tmp_path / f"q{quality}"
        assert convert(src_root, dst, size=32, fmt="jpg", quality=quality, workers=1, progress=False).converted == 1
        out = images.load(dst / images.image_relpath(T0, ".jpg"))
        errors[quality] = np.abs(out.astype(int) - noisy).mean()
    assert errors[100] < 2 < 20 < errors[1]


# ---------------------------------------------------------------- convert: the batch


def test_each_extra_source_of_the_same_time_counts_as_a_duplicate(tmp_path):
    """Three files of one time (.fits, .jpeg, .png): one is converted, two are duplicates."""
    src_root = tmp_path / "src"
    write_fits(src_root / images.image_relpath(T0, ".fits"), np.zeros((8, 8)))
    write_png(src_root / images.image_relpath(T0, ".png"), np.zeros((8, 8)))
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(src_root / images.image_relpath(T0, ".jpeg"), format="JPEG")
    summary = convert(src_root, tmp_path / "dst", size=4, fmt="png", workers=1, progress=False)
    assert (summary.converted, summary.duplicates, summary.failed) == (1, 2, 0)
    assert "2 source files ignored: another file of the same time and name (e.g. both .jp2 and .fits) was used" \
        in summary.format()
    # the first in sorted order (.fits: 0 G -> 128) is the one used
    assert set(np.unique(images.load(tmp_path / "dst" / images.image_relpath(T0, ".png")))) == {128}


def test_find_sources_skips_hidden_folders_and_finds_compressed_fits(tmp_path):
    """Hidden folders (.cache, a sync tool's .trash) are not searched; tile-compressed FITS
    (.fits.fz) are found although their extension is not one of the image extensions."""
    keep = png_source(tmp_path, T0, np.zeros((4, 4)))
    write_png(tmp_path / ".cache" / "HMI.m2011.02.15_05.00.00.png", np.zeros((4, 4)))
    write_png(tmp_path / "2011" / ".trash" / "HMI.m2011.02.15_06.00.00.png", np.zeros((4, 4)))
    fz = tmp_path / images.image_relpath(T1, ".fits.fz")
    fits.HDUList([fits.PrimaryHDU(), fits.CompImageHDU(np.zeros((8, 8), np.float32))]).writeto(fz)
    assert find_sources(tmp_path) == sorted([keep, fz])


def test_compressed_fits_converts_to_the_image_of_its_time(tmp_path):
    """A .fits.fz magnetogram must become HMI.m<time>.png, the name `label` looks for."""
    src_root = tmp_path / "src"
    fz = src_root / images.image_relpath(T1, ".fits.fz")
    fz.parent.mkdir(parents=True)
    fits.HDUList([fits.PrimaryHDU(), fits.CompImageHDU(np.zeros((8, 8), np.float32))]).writeto(fz)
    assert convert(src_root, tmp_path / "dst", size=4, fmt="png", workers=1, progress=False).converted == 1
    assert images.find_image(tmp_path / "dst", T1) == tmp_path / "dst" / images.image_relpath(T1, ".png")


def test_summary_seconds_is_the_elapsed_time(tmp_path):
    src_root = tmp_path / "src"
    png_source(src_root, T0, np.zeros((8, 8)))
    began = time.monotonic()
    summary = convert(src_root, tmp_path / "dst", size=4, fmt="png", workers=1, progress=False)
    assert 0 < summary.seconds <= time.monotonic() - began


class _RecordingPool(ThreadPoolExecutor):
    """Stands in for the process pool: records max_workers, runs the jobs in threads."""

    made: list = []

    def __init__(self, max_workers=None):
        _RecordingPool.made.append(max_workers)
        super().__init__(max_workers=max_workers)


@pytest.fixture
def pools(monkeypatch):
    _RecordingPool.made = []
    monkeypatch.setattr(convert_module, "ProcessPoolExecutor", _RecordingPool)
    return _RecordingPool.made


def _sources(root, n):
    for k in range(n):
        png_source(root, f"2011-02-15T{k:02d}:00Z", np.full((8, 8), 10 * k))
    return root


@pytest.mark.parametrize("workers, n_files, pool", [
    (4, 2, [2]),      # never more processes than files
    (2, 3, [2]),
    (1, 3, []),       # --workers 1: in this process, no pool
    (4, 1, []),       # a single file: no pool to start
])
def test_workers_and_pool_size(tmp_path, pools, workers, n_files, pool):
    summary = convert(_sources(tmp_path / "src", n_files), tmp_path / "dst", size=4, fmt="png", workers=workers,
                      progress=False)
    assert summary.converted == n_files and pools == pool
    for k in range(n_files):
        out = images.load(tmp_path / "dst" / images.image_relpath(f"2011-02-15T{k:02d}:00Z", ".png"))
        assert set(np.unique(out)) == {10 * k}


@pytest.mark.parametrize("cores, pool", [(3, [3]), (None, [])])
def test_default_workers_are_the_cpu_cores_or_one_when_unknown(tmp_path, pools, monkeypatch, cores, pool):
    monkeypatch.setattr(os, "cpu_count", lambda: cores)
    summary = convert(_sources(tmp_path / "src", 5), tmp_path / "dst", size=4, fmt="png", progress=False)
    assert summary.converted == 5 and pools == pool


class _Terminal(io.StringIO):
    def isatty(self):
        return True


@pytest.fixture
def private_tqdm_lock(monkeypatch):
    """A thread lock of this test's own for tqdm, and no monitor thread. tqdm's default lock
    includes a multiprocessing lock shared with every process forked later (mutmut's workers);
    a bar that fails while drawing (as some mutants make it) would leave that lock held, and
    every later worker would hang on its first bar."""
    import threading

    from tqdm import std
    from tqdm.auto import tqdm as auto_tqdm

    for cls in {std.tqdm, auto_tqdm}:
        monkeypatch.setattr(cls, "_lock", threading.RLock(), raising=False)
        monkeypatch.setattr(cls, "monitor_interval", 0, raising=False)


def test_progress_bar_counts_images_on_a_terminal(tmp_path, monkeypatch, private_tqdm_lock):
    """On a terminal the bar is on by default: "convert: 100%| ... | 2/2 ... img/s" (or s/img
    when slow), one step per image; progress=False draws nothing."""
    src_root = _sources(tmp_path / "src", 2)
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    monkeypatch.setattr(progress, "QUIET", False)
    assert convert(src_root, tmp_path / "dst", size=4, fmt="png", workers=1).converted == 2
    text = terminal.getvalue()
    assert "convert: 100%" in text and " 2/2 " in text, text
    assert re.search(r"[\d?](img/s|s/img)\]", text), text
    quiet = _Terminal()
    monkeypatch.setattr(sys, "stderr", quiet)
    assert convert(src_root, tmp_path / "dst2", size=4, fmt="png", workers=1, progress=False).converted == 2
    assert quiet.getvalue() == ""


# ---------------------------------------------------------------- ConvertSummary.format


def test_summary_rate_and_zero_time():
    assert ConvertSummary(converted=10, seconds=4.0).format() == \
        "converted 10 (2.5 images/s), skipped 0 (already done), failed 0"
    assert ConvertSummary(converted=3, seconds=0.5).format().startswith("converted 3 (6.0 images/s)")
    assert ConvertSummary(converted=5, seconds=0.0).format().startswith("converted 5 (0.0 images/s)")


@pytest.mark.parametrize("n_failed, listed, more", [(10, 10, None), (11, 10, 1), (12, 10, 2)])
def test_summary_lists_at_most_ten_failures(n_failed, listed, more):
    failures = [(f"f{k}.jp2", f"reason {k}") for k in range(n_failed)]
    summary = ConvertSummary(converted=1, skipped=2, failed=n_failed, duplicates=1, failures=failures)
    lines = summary.format().split("\n")
    assert lines[0] == f"converted 1 (0.0 images/s), skipped 2 (already done), failed {n_failed}"
    assert lines[1] == ("1 source files ignored: another file of the same time and name (e.g. both .jp2 and .fits) "
                        "was used")
    assert lines[2:2 + listed] == [f"  failed f{k}.jp2: reason {k}" for k in range(listed)]
    assert lines[2 + listed:] == ([] if more is None else [f"  ... and {more} more"])
