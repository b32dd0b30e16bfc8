"""Download concurrency against the loopback fake Helioviewer server.

Each request to the server takes ``--latency`` seconds (the round trip and server time
of the real API, which dominate a download of a few MB on a good link), so the run time
shows how many requests the workers keep in flight. Also shows the polite default rate
limit (5 requests/s, two per image) capping throughput whatever the worker count.

    python benchmarks/bench_download.py [--n 24] [--latency 0.2] [--workers 1 4 8]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from helioviewer_server import FakeHelioviewer  # noqa: E402

from flarelens.helioviewer import download  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=24, help="images to download (default: 24)")
    parser.add_argument("--latency", type=float, default=0.2, help="seconds per request at the server (default: 0.2)")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 4, 8])
    parser.add_argument("--rates", type=float, nargs="+", default=[0, 5], help="0: no rate limit (default: 0 5)")
    args = parser.parse_args()

    times = pd.date_range("2011-02-15", periods=args.n, freq="1h", tz="UTC")
    work = Path(tempfile.mkdtemp(prefix="bench_download_"))
    print(f"{args.n} images, {args.latency:.2f} s per request (2 requests per image: getClosestImage + getJP2Image)")
    print(f"{'rate/s':>7} {'workers':>7} {'seconds':>8} {'images/s':>9} {'max in flight':>13}")
    try:
        with FakeHelioviewer(times + pd.Timedelta("1min"), latency=args.latency) as server:
            os.environ["HELIOVIEWER_API_URL"] = server.url
            for rate in args.rates:
                for workers in args.workers:
                    out = work / f"r{rate}_w{workers}"
                    server.max_in_flight = 0
                    t0 = time.perf_counter()
                    summary = download(times[0], times[-1], out, workers=workers, rate=rate or None,
                                       progress=False)
                    seconds = time.perf_counter() - t0
                    assert summary.downloaded == args.n, summary.format()
                    label = "none" if not rate else f"{rate:g}"
                    print(f"{label:>7} {workers:>7} {seconds:>8.2f} {args.n / seconds:>9.2f} {server.max_in_flight:>13}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
