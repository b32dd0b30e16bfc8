"""The source-agnostic fetcher: a second source is one ``process`` function."""

from __future__ import annotations

import os
import signal
import threading
import time

import pandas as pd
import pytest
from helioviewer_server import FakeHelioviewer, sunpy_jp2_bytes

from flarelens import fetch
from flarelens.errors import FlareLensError

TIMES = pd.date_range("2011-02-15T00:00", periods=4, freq="1h", tz="UTC")


def toy_source(fetcher: fetch.HttpFetcher, base: str, out):
    """A second source in a dozen lines: one file per time, named by the time."""

    def process(requested, previous):
        rel = f"{requested:%Y%m%d_%H%M}.bin"
        dest = out / rel
        if dest.exists():
            return fetch.manifest_row(requested, previous and previous["observed"], rel, "skipped", dest.stat().st_size)
        params = {"date": requested.strftime("%Y-%m-%dT%H:%M:%SZ"), "sourceId": "19"}
        nbytes = fetcher.get_file(base + "getJP2Image/", dest, params, what=f"file {requested}",
                                  check=lambda p: p.stat().st_size > 1000)
        return fetch.manifest_row(requested, requested, rel, "downloaded", nbytes)

    return process


def test_a_second_source_gets_resume_manifest_and_retries(tmp_path):
    with FakeHelioviewer(TIMES) as srv:
        srv.fail("getJP2Image", "503", "drop")
        fetcher = fetch.HttpFetcher(fetch.RetryPolicy(retries=3, backoff=0.001, timeout=5), rate=None)
        summary = fetch.fetch_all(TIMES, toy_source(fetcher, srv.url, tmp_path), tmp_path, fetcher, workers=2,
                                  progress=False)
        assert (summary.downloaded, summary.failed) == (4, 0)
        assert len(srv.requests("getJP2Image")) == 4 + 2
        assert (tmp_path / "20110215_0000.bin").read_bytes() == sunpy_jp2_bytes()
        manifest = fetch.read_manifest(tmp_path / "manifest.csv")
        assert list(manifest.columns) == fetch.MANIFEST_COLUMNS and set(manifest["status"]) == {"downloaded"}
        again = fetch.fetch_all(TIMES, toy_source(fetcher, srv.url, tmp_path), tmp_path, fetcher, progress=False)
        assert (again.downloaded, again.skipped) == (0, 4) and len(srv.requests("getJP2Image")) == 6


def test_an_unexpected_error_is_one_failed_row_not_the_end_of_the_run(tmp_path):
    def process(requested, previous):
        if requested.hour == 1:
            raise RuntimeError("boom")
        return fetch.manifest_row(requested, requested, "", "downloaded", 0)

    fetcher = fetch.HttpFetcher(rate=None)
    summary = fetch.fetch_all(TIMES, process, tmp_path, fetcher, workers=1, progress=False)
    assert (summary.downloaded, summary.failed) == (3, 1)
    row = fetch.read_manifest(tmp_path / "manifest.csv").iloc[1]
    assert row["status"] == "failed" and row["message"] == "unexpected error: RuntimeError: boom"


@pytest.mark.parametrize("settings", [
    dict(workers=0), dict(workers=True), dict(workers=2.5), dict(workers=1000),
    dict(rate=0), dict(rate=-1.0), dict(rate=float("nan")), dict(rate=float("inf")),
    dict(retries=-1), dict(retries=1.5), dict(backoff=-0.1), dict(backoff=float("nan")),
    dict(timeout=0), dict(timeout=float("inf")), dict(timeout="10"),
])
def test_check_settings_refuses(settings):
    values = dict(workers=4, rate=5.0, retries=5, backoff=1.0, timeout=60.0) | settings
    with pytest.raises(FlareLensError, match="--" + next(iter(settings))):
        fetch.check_settings(**values)


def test_check_settings_accepts_the_edges():
    fetch.check_settings(workers=1, rate=None, retries=0, backoff=0.0, timeout=0.001)
    fetch.check_settings(workers=256, rate=1e-3, retries=100, backoff=5, timeout=3600)


def test_rate_limiter_wait_ends_when_stopped():
    limiter = fetch.RateLimiter(rate=0.1)  # one request every 10 s
    stop = threading.Event()
    assert limiter.wait(stop)
    threading.Timer(0.1, stop.set).start()
    began = time.monotonic()
    assert limiter.wait(stop) is False
    assert time.monotonic() - began < 2


def test_deferred_signals_note_then_reraise():
    with fetch.DeferredSignals() as signals:
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.05)  # no KeyboardInterrupt here: it is only noted
        assert signals.received == signal.SIGINT
        with pytest.raises(KeyboardInterrupt):
            signals.reraise()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_read_manifest_of_a_header_only_file(tmp_path):
    path = tmp_path / "manifest.csv"
    path.write_text(",".join(fetch.MANIFEST_COLUMNS) + "\n")
    frame = fetch.read_manifest(path)
    assert frame.empty and list(frame.columns) == fetch.MANIFEST_COLUMNS


def test_a_manifest_elsewhere_cleans_only_its_own_temporaries(tmp_path):
    out, elsewhere = tmp_path / "out", tmp_path / "home"
    (elsewhere / "project").mkdir(parents=True)
    own = elsewhere / ".runs.x7y8z9.part.csv"
    other = elsewhere / "project" / ".report.abc123.part.html"  # another tool's, deeper down
    for path in (own, other):
        path.write_text("x")
    fetcher = fetch.HttpFetcher(rate=None)
    fetch.fetch_all(TIMES[:1], lambda t, prev: fetch.manifest_row(t, t, "", "missing", 0), out, fetcher,
                    manifest=elsewhere / "runs.csv", progress=False)
    assert not own.exists() and other.exists()
    assert len(fetch.read_manifest(elsewhere / "runs.csv")) == 1
