"""``flarelens download``: HMI magnetogram JP2 files from the Helioviewer API.

Every setting is checked by :func:`flarelens.helioviewer.download` before anything is
fetched or written (a bad one is one line and exit status 1)."""

from __future__ import annotations

from flarelens.helioviewer import HMI_MAGNETOGRAM_SOURCE_ID, download


def register(sub) -> None:
    p = sub.add_parser(
        "download",
        help="download HMI magnetograms (JPEG 2000, 4096²) from the Helioviewer API",
        description="For every CADENCE from START to END (UTC), ask Helioviewer (through hvpy; base URL from "
        "HELIOVIEWER_API_URL, default https://api.helioviewer.org/v2/) for the closest image of the source and "
        "save it as OUT/YYYY/MM/DD/HMI.mYYYY.MM.DD_HH.MM.SS.jp2, named by the requested time. Images further "
        "than TOLERANCE are recorded as missing. Complete files are skipped, so an interrupted run resumes; "
        "OUT/manifest.csv records requested and observed time, file, status and bytes as it goes. Transient "
        "failures (HTTP 5xx and 429, timeouts, dropped connections) are retried with backoff. Ctrl-C or SIGTERM "
        "stops at once and leaves no partial file; temporaries of a killed run are removed by the next one. "
        "Exit status 1 when some times failed (run again to retry them).",
    )
    p.add_argument("--start", required=True, help="first time, UTC (e.g. 2011-02-15 or 2011-02-15T01:00)")
    p.add_argument("--end", required=True, help="last time, UTC, inclusive")
    p.add_argument("--cadence", default="1h", help="time between requested images (default: 1h)")
    p.add_argument("--out", required=True, help="image root to write the JP2 files into")
    p.add_argument("--tolerance", default="12min",
                   help="largest accepted |observed - requested| time (> 0); further is 'missing' (default: 12min)")
    p.add_argument("--workers", type=int, default=4, help="requests in flight at once (default: 4)")
    p.add_argument("--source-id", type=int, default=HMI_MAGNETOGRAM_SOURCE_ID,
                   help=f"Helioviewer data source (default: {HMI_MAGNETOGRAM_SOURCE_ID}, HMI line-of-sight magnetogram)")
    p.add_argument("--manifest", help="manifest CSV (default: OUT/manifest.csv)")
    p.add_argument("--rate", type=float, default=5.0,
                   help="at most this many requests started per second, all workers together (default: 5)")
    p.add_argument("--retries", type=int, default=5,
                   help="retries of a request after a server error, timeout or dropped connection (default: 5)")
    p.add_argument("--backoff", type=float, default=1.0,
                   help="seconds before the first retry, doubled at each further one (default: 1)")
    p.add_argument("--timeout", type=float, default=60.0,
                   help="seconds one request may take in all: connecting, waiting and every byte (default: 60)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args) -> int:
    summary = download(
        start=args.start, end=args.end, out=args.out, cadence=args.cadence, tolerance=args.tolerance,
        workers=args.workers, source_id=args.source_id, manifest=args.manifest, rate=args.rate,
        retries=args.retries, backoff=args.backoff, timeout=args.timeout, progress=not args.no_progress,
    )
    print(summary.format())
    return 1 if summary.failed or summary.not_attempted else 0
