"""``flarelens convert``: JP2 / FITS magnetograms -> N×N 8-bit JPEG or PNG images."""

from __future__ import annotations

from flarelens.convert import DECODES, DEFAULT_DECODE, FORMATS, JPEG_QUALITY, convert


def register(sub) -> None:
    p = sub.add_parser(
        "convert",
        help="convert JP2 / FITS magnetograms to N×N 8-bit images (area averaging)",
        description="Convert every image under SRC (Helioviewer .jp2, HMI .fits in gauss, .jpg, .png) to a "
        "SIZE×SIZE 8-bit image under DST with the same relative path and the new extension. FITS magnetograms "
        "get Helioviewer's scaling (clip to ±250 G, 0 G -> 128, off-disk/NaN -> 0, north up); a FITS whose header "
        "says it is not a magnetogram in gauss is refused (--force-fits). JPEG 2000 is decoded at the coarsest "
        "resolution level with at least SIZE px and off-disk pixels set to 0 from its header (--decode full: "
        "decode 4096² and average). Shrinking averages areas (like OpenCV's INTER_AREA); non-square images are "
        "refused, not squashed. Existing outputs are skipped; bad inputs are reported and skipped. Exit status 1 "
        "when some inputs failed.",
    )
    p.add_argument("src", metavar="SRC", help="image root to read (e.g. what `flarelens download` wrote)")
    p.add_argument("dst", metavar="DST", help="image root to write")
    p.add_argument("--size", type=int, default=512, help="output width and height in pixels (default: 512)")
    p.add_argument("--format", choices=FORMATS, default="jpg", help="output format (default: jpg)")
    p.add_argument("--workers", type=int, default=None, help="processes (default: all CPU cores)")
    p.add_argument("--quality", type=int, default=JPEG_QUALITY,
                   help=f"JPEG quality 1-100 (default: {JPEG_QUALITY}; flat areas stay exact, the limb rings a little; "
                   "use --format png for lossless)")
    p.add_argument("--decode", choices=DECODES, default=DEFAULT_DECODE,
                   help=f"JPEG 2000: reduced = at the resolution level nearest SIZE (fast), full = full resolution "
                   f"then area average (default: {DEFAULT_DECODE})")
    p.add_argument("--force-fits", action="store_true",
                   help="convert FITS files whose header says they are not line-of-sight magnetograms in gauss "
                   "(BUNIT, CONTENT) as if they were")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args) -> int:
    summary = convert(args.src, args.dst, size=args.size, fmt=args.format, workers=args.workers, quality=args.quality,
                      progress=not args.no_progress, decode=args.decode, allow_any_fits=args.force_fits)
    print(summary.format())
    return 1 if summary.failed else 0
