"""flarelens download against a real HTTP server on 127.0.0.1 that answers like Helioviewer."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest
from helioviewer_server import FakeHelioviewer, closed_port_url, sunpy_jp2_bytes

from flarelens import helioviewer, images
from flarelens.cli import main
from flarelens.errors import FlareLensError
from flarelens.helioviewer import download, is_complete_jp2, read_manifest

START, END = "2011-02-15T00:00", "2011-02-15T05:00"
REQUESTED = pd.date_range(START, END, freq="1h", tz="UTC")
# Observed 2 min after each requested hour, like HMI's 45 s / 12 min cadences drifting off the hour.
OBSERVED = REQUESTED + pd.Timedelta("2min")
FAST = dict(backoff=0.001, rate=None, progress=False, timeout=5.0)  # keep retries instant in tests


@pytest.fixture
def server(monkeypatch):
    with FakeHelioviewer(OBSERVED) as srv:
        monkeypatch.setenv("HELIOVIEWER_API_URL", srv.url)
        yield srv


def test_normal_run_names_by_requested_time_and_records_observed(server, tmp_path):
    summary = download(START, END, tmp_path, workers=3, **FAST)
    assert (summary.downloaded, summary.skipped, summary.missing, summary.failed) == (6, 0, 0, 0)
    jp2 = sunpy_jp2_bytes()
    for t in REQUESTED:
        path = tmp_path / images.image_relpath(t, ".jp2")
        assert path.read_bytes() == jp2
        assert images.load(path).shape == (512, 512)
    manifest = read_manifest(tmp_path / "manifest.csv")
    assert list(manifest.columns) == helioviewer.MANIFEST_COLUMNS
    assert list(manifest["requested"]) == [t.strftime("%Y-%m-%dT%H:%M:%SZ") for t in REQUESTED]
    assert list(manifest["observed"]) == [t.strftime("%Y-%m-%dT%H:%M:%SZ") for t in OBSERVED]
    assert set(manifest["status"]) == {"downloaded"}
    assert list(manifest["bytes"]) == [len(jp2)] * 6
    assert list(manifest["file"]) == [images.image_relpath(t, ".jp2") for t in REQUESTED]
    # hvpy's parameter formats reach the server: ISO date with Z, the HMI source id.
    asked = server.requests("getClosestImage")
    assert {p["date"] for p in asked} == {t.strftime("%Y-%m-%dT%H:%M:%SZ") for t in REQUESTED}
    assert {p["sourceId"] for p in asked} == {"19"}
    # The JP2 is fetched for the observed time, so it is the image that passed the tolerance.
    assert {p["date"] for p in server.requests("getJP2Image")} == {t.strftime("%Y-%m-%dT%H:%M:%SZ") for t in OBSERVED}


def test_image_outside_tolerance_is_missing(monkeypatch, tmp_path):
    observed = OBSERVED.delete(3)  # no image near 03:00: the closest is 02:02 or 04:02, ~1 h away
    with FakeHelioviewer(observed) as srv:
        monkeypatch.setenv("HELIOVIEWER_API_URL", srv.url)
        summary = download(START, END, tmp_path, tolerance="12min", workers=2, **FAST)
        assert (summary.downloaded, summary.missing, summary.failed) == (5, 1, 0)
        assert not (tmp_path / images.image_relpath(REQUESTED[3], ".jp2")).exists()
        row = read_manifest(tmp_path / "manifest.csv").set_index("requested").loc["2011-02-15T03:00:00Z"]
        assert row["status"] == "missing" and row["file"] == "" and row["bytes"] == 0
        assert row["observed"] in ("2011-02-15T02:02:00Z", "2011-02-15T04:02:00Z")
        assert "tolerance" in row["message"]
        assert len(srv.requests("getJP2Image")) == 5  # nothing fetched for the missing time
    # The boundary: an image exactly `tolerance` away is accepted, one a minute further is not.
    with FakeHelioviewer(OBSERVED[:1]) as srv:
        monkeypatch.setenv("HELIOVIEWER_API_URL", srv.url)
        assert download(START, START, tmp_path / "b", tolerance="2min", **FAST).downloaded == 1
        assert download(START, START, tmp_path / "c", tolerance="1min", **FAST).missing == 1


def test_no_image_at_all_is_missing(monkeypatch, tmp_path):
    with FakeHelioviewer([]) as srv:
        monkeypatch.setenv("HELIOVIEWER_API_URL", srv.url)
        summary = download(START, START, tmp_path, **FAST)
    assert summary.missing == 1
    assert "No images" in read_manifest(tmp_path / "manifest.csv")["message"][0]


def test_server_errors_and_timeouts_are_retried(server, tmp_path):
    server.hang_s = 1.0
    server.fail("getClosestImage", "500", "503")
    server.fail("getJP2Image", "500", "hang")
    summary = download(START, END, tmp_path, workers=1, retries=3, **{**FAST, "timeout": 0.3})
    assert (summary.downloaded, summary.failed) == (6, 0)
    assert len(server.requests("getClosestImage")) == 6 + 2
    assert len(server.requests("getJP2Image")) == 6 + 2
    assert all(is_complete_jp2(tmp_path / images.image_relpath(t, ".jp2")) for t in REQUESTED)


def test_retries_back_off_exponentially(server, tmp_path):
    server.fail("getClosestImage", "500", "500", "500")
    began = time.monotonic()
    summary = download(START, START, tmp_path, retries=3, backoff=0.05, rate=None, progress=False)
    elapsed = time.monotonic() - began
    assert summary.downloaded == 1
    assert elapsed >= 0.05 + 0.1 + 0.2  # waits of backoff * 2**k before each retry


def test_dropped_connection_leaves_no_partial_file_and_next_run_completes(server, tmp_path):
    target = tmp_path / images.image_relpath(REQUESTED[0], ".jp2")
    # One drop is retried within the run.
    server.fail("getJP2Image", "drop")
    assert download(START, START, tmp_path, retries=2, **FAST).downloaded == 1
    assert is_complete_jp2(target)
    target.unlink()
    # Drops beyond the retries: the time fails, and nothing (final or temporary) is left behind.
    server.fail("getJP2Image", "drop", "drop")
    summary = download(START, START, tmp_path, retries=1, **FAST)
    assert (summary.downloaded, summary.failed) == (0, 1)
    assert not target.exists()
    assert [p.name for p in target.parent.iterdir()] == []
    row = read_manifest(tmp_path / "manifest.csv").iloc[0]
    assert row["status"] == "failed" and row["file"] == ""
    assert "gave up after 2 attempts" in row["message"]
    # The next run completes it.
    summary = download(START, START, tmp_path, retries=1, **FAST)
    assert summary.downloaded == 1 and target.read_bytes() == sunpy_jp2_bytes()
    assert read_manifest(tmp_path / "manifest.csv").iloc[0]["status"] == "downloaded"


def test_second_run_downloads_nothing(server, tmp_path):
    download(START, END, tmp_path, workers=2, **FAST)
    mtimes = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*.jp2")}
    server.log.clear()
    summary = download(START, END, tmp_path, workers=2, **FAST)
    assert (summary.downloaded, summary.skipped, summary.missing, summary.failed) == (0, 6, 0, 0)
    assert server.log == []  # complete files are recognised without asking the server
    assert {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*.jp2")} == mtimes
    manifest = read_manifest(tmp_path / "manifest.csv")
    assert len(manifest) == 6 and set(manifest["status"]) == {"skipped"}
    # what the first run learnt is kept
    assert list(manifest["observed"]) == [t.strftime("%Y-%m-%dT%H:%M:%SZ") for t in OBSERVED]


def test_a_corrupt_file_under_the_final_name_is_downloaded_again(server, tmp_path):
    target = tmp_path / images.image_relpath(REQUESTED[0], ".jp2")
    target.parent.mkdir(parents=True)
    target.write_bytes(sunpy_jp2_bytes()[:5000])  # e.g. copied from an interrupted tool
    summary = download(START, START, tmp_path, **FAST)
    assert summary.downloaded == 1 and is_complete_jp2(target)


def test_manifest_is_written_as_it_goes(server, tmp_path):
    manifest = tmp_path / "manifest.csv"
    seen = []
    server.on_request = lambda endpoint, params: seen.append(
        manifest.read_text().count("\n") if manifest.exists() else 0)
    download(START, END, tmp_path, workers=1, **FAST)
    # The header alone is one line; rows appear while later images are still being fetched.
    assert max(seen) >= 1 + 4


def test_concurrency_is_bounded_by_workers(monkeypatch, tmp_path):
    with FakeHelioviewer(OBSERVED, latency=0.15) as srv:
        monkeypatch.setenv("HELIOVIEWER_API_URL", srv.url)
        download(START, END, tmp_path, workers=3, **FAST)
        assert 2 <= srv.max_in_flight <= 3  # parallel, and never more than --workers


def test_rate_limiter_spaces_requests():
    limiter = helioviewer.RateLimiter(rate=50)
    began = time.monotonic()
    for _ in range(6):
        limiter.wait()
    assert time.monotonic() - began >= 5 / 50 * 0.95


def test_unreachable_server_is_recorded_as_failed(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("HELIOVIEWER_API_URL", closed_port_url())
    rc = main(["download", "--start", START, "--end", "2011-02-15T01:00", "--out", str(tmp_path),
               "--retries", "1", "--backoff", "0.001", "--rate", "1000", "--no-progress"])
    out = capsys.readouterr()
    assert rc == 1
    assert "failed 2" in out.out and "Traceback" not in out.err + out.out
    manifest = read_manifest(tmp_path / "manifest.csv")
    assert list(manifest["status"]) == ["failed", "failed"]
    assert manifest["message"].str.contains("gave up after 2 attempts").all()


def test_stops_early_when_everything_fails(monkeypatch, tmp_path):
    monkeypatch.setenv("HELIOVIEWER_API_URL", closed_port_url())
    summary = download("2011-02-15", "2011-02-16", tmp_path, retries=0, workers=1,
                       max_consecutive_failures=3, **FAST)
    # work already in flight (a window of 2 x workers) still finishes; nothing new starts
    assert 3 <= summary.failed <= 4 and summary.not_attempted == 25 - summary.failed
    assert "in a row failed" in summary.format()
    assert len(read_manifest(tmp_path / "manifest.csv")) == summary.failed


def test_cli_normal_run_and_summary(server, tmp_path, capsys):
    rc = main(["download", "--start", START, "--end", END, "--cadence", "2h", "--out", str(tmp_path),
               "--workers", "2", "--rate", "100", "--no-progress"])
    assert rc == 0
    assert "downloaded 3, skipped 0 (already complete), missing 0 (no image within tolerance), failed 0" in capsys.readouterr().out
    assert len(list(tmp_path.rglob("*.jp2"))) == 3


@pytest.mark.parametrize("args, message", [
    (["--start", "2011-02-15T05:00", "--end", "2011-02-15T00:00"], "before start"),
    (["--start", START, "--end", END, "--cadence", "soon"], "cadence"),
    (["--start", START, "--end", END, "--cadence=-1h"], "cadence must be positive"),
    (["--start", "yesterday-ish", "--end", END], "cannot read start"),
    (["--start", START, "--end", END, "--tolerance=-5min"], "tolerance"),
    (["--start", START, "--end", END, "--workers", "0"], "--workers"),
    (["--start", START, "--end", END, "--source-id", "99999"], "unknown Helioviewer source id"),
])
def test_cli_bad_input_is_one_line_error(server, tmp_path, capsys, args, message):
    rc = main(["download", *args, "--out", str(tmp_path), "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 1 and message in err and len(err.strip().splitlines()) == 1
    assert server.log == []


def test_malformed_api_url_is_one_line_error(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("HELIOVIEWER_API_URL", "api.helioviewer.org/v2/")
    assert main(["download", "--start", START, "--end", END, "--out", str(tmp_path), "--no-progress"]) == 1
    assert "HELIOVIEWER_API_URL" in capsys.readouterr().err


def test_foreign_csv_as_manifest_is_refused(server, tmp_path):
    (tmp_path / "manifest.csv").write_text("a,b\n1,2\n")
    with pytest.raises(FlareLensError, match="not a download manifest"):
        download(START, END, tmp_path, **FAST)


def test_api_url_follows_environment_at_call_time(monkeypatch):
    import hvpy

    monkeypatch.delenv("HELIOVIEWER_API_URL", raising=False)
    assert helioviewer.api_url() == hvpy.config.get_api_url()
    monkeypatch.setenv("HELIOVIEWER_API_URL", "http://127.0.0.1:9/v2")
    assert helioviewer.api_url() == "http://127.0.0.1:9/v2/"
    assert helioviewer.api_url("http://example.test/api/v2/") == "http://example.test/api/v2/"


def test_is_complete_jp2(tmp_path):
    data = sunpy_jp2_bytes()
    cases = {"whole": data, "half": data[: len(data) // 2], "no_tail": data[:-2], "html": b"<html>oops</html>",
             "padded": data + b"\0" * 10, "empty": b""}
    for name, content in cases.items():
        (tmp_path / name).write_bytes(content)
    assert is_complete_jp2(tmp_path / "whole")
    for name in ("half", "no_tail", "html", "padded", "empty"):
        assert not is_complete_jp2(tmp_path / name), name
    assert not is_complete_jp2(tmp_path / "absent")
    # a corrupt file never reaches the decoder under the final name, but the decoder agrees
    with pytest.raises(FlareLensError):
        images.load(_with_suffix(tmp_path / "half", ".jp2"))
    assert np.asarray(images.load(_with_suffix(tmp_path / "whole", ".jp2"))).shape == (512, 512)


def _with_suffix(path, suffix):
    target = path.with_suffix(suffix)
    path.rename(target)
    return target


def test_files_already_in_place_are_skipped_with_time_from_their_header(server, tmp_path):
    target = tmp_path / images.image_relpath(REQUESTED[0], ".jp2")
    target.parent.mkdir(parents=True)
    target.write_bytes(sunpy_jp2_bytes())  # e.g. copied from another archive, no manifest row
    summary = download(START, START, tmp_path, **FAST)
    assert summary.skipped == 1 and server.log == []
    row = read_manifest(tmp_path / "manifest.csv").iloc[0]
    assert (row["status"], row["observed"], row["bytes"]) == ("skipped", "2023-01-31T03:39:23Z", len(sunpy_jp2_bytes()))
