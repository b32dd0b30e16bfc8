"""flarelens download against a real HTTP server on 127.0.0.1 that answers like Helioviewer."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pandas as pd
import pytest
from helioviewer_server import FakeHelioviewer, Reply, closed_port_url, sunpy_jp2_bytes

from flarelens import fetch, helioviewer, images
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


# ---------------------------------------------------------------------------- status codes and odd answers


def test_rate_limiting_429_is_retried(server, tmp_path):
    server.fail("getClosestImage", "429", "429")
    server.fail("getJP2Image", "429")
    summary = download(START, START, tmp_path, retries=3, **FAST)
    assert (summary.downloaded, summary.failed) == (1, 0)
    assert len(server.requests("getClosestImage")) == 3 and len(server.requests("getJP2Image")) == 2


def test_429_waits_as_long_as_retry_after_says(server, tmp_path):
    server.fail("getClosestImage", Reply(429, {"error": "slow down"}, headers={"Retry-After": "1"}))
    began = time.monotonic()
    summary = download(START, START, tmp_path, retries=2, **FAST)  # backoff alone would wait 1 ms
    assert summary.downloaded == 1
    assert time.monotonic() - began >= 1.0


def test_retry_after_as_seconds_or_http_date():
    from email.utils import formatdate

    assert fetch.parse_retry_after("7") == 7.0
    assert fetch.parse_retry_after(None) is None and fetch.parse_retry_after("soon") is None
    assert 25 <= fetch.parse_retry_after(formatdate(time.time() + 30, usegmt=True)) <= 30
    assert fetch.parse_retry_after(formatdate(time.time() - 30, usegmt=True)) == 0.0


@pytest.mark.parametrize("status", ["400", "404", "403"])
def test_client_errors_are_not_retried(server, tmp_path, status):
    server.fail("getClosestImage", status)
    summary = download(START, START, tmp_path, retries=3, **FAST)
    assert summary.failed == 1 and len(server.requests("getClosestImage")) == 1
    assert f"HTTP {status}" in read_manifest(tmp_path / "manifest.csv")["message"][0]


@pytest.mark.parametrize("answer, fragment, status", [
    (Reply(200, {"date": None, "id": 7}), "no usable image date (None)", "failed"),
    (Reply(200, {"date": "not a date"}), "no usable image date ('not a date')", "failed"),
    (Reply(200, [1, 2, 3]), "unexpected getClosestImage answer", "failed"),
    (Reply(200, b"<html>Bad gateway</html>"), "the answer is not JSON", "failed"),
    (Reply(200, {"error": "No images"}), "No images", "missing"),
])
def test_odd_answers_are_recorded_with_a_clear_message(server, tmp_path, capsys, monkeypatch, answer, fragment, status):
    server.fail("getClosestImage", answer, answer)
    rc = main(["download", "--start", START, "--end", START, "--out", str(tmp_path), "--retries", "1",
               "--backoff", "0.001", "--no-progress"])
    out = capsys.readouterr()
    assert "Traceback" not in out.err + out.out
    assert rc == (1 if status == "failed" else 0)
    row = read_manifest(tmp_path / "manifest.csv").iloc[0]
    assert row["status"] == status and fragment in row["message"]
    assert server.requests("getJP2Image") == []


# ---------------------------------------------------------------------------- the total time of a request


def test_timeout_bounds_the_whole_request_not_the_gap_between_bytes(monkeypatch, tmp_path):
    # The answer (a ~300-byte JSON) comes one byte every 20 ms: never a 0.5 s gap, ~6 s in all.
    with FakeHelioviewer(OBSERVED, trickle_s=0.02) as srv:
        monkeypatch.setenv("HELIOVIEWER_API_URL", srv.url)
        srv.fail("getClosestImage", "slow")
        began = time.monotonic()
        summary = download(START, START, tmp_path, retries=0, **{**FAST, "timeout": 0.5})
        elapsed = time.monotonic() - began
    assert summary.failed == 1 and elapsed < 2.0
    assert "no complete answer within 0.5 s" in read_manifest(tmp_path / "manifest.csv")["message"][0]


def test_slow_image_is_cut_off_retried_and_leaves_no_temporary(monkeypatch, tmp_path):
    with FakeHelioviewer(OBSERVED, trickle_s=0.01) as srv:
        monkeypatch.setenv("HELIOVIEWER_API_URL", srv.url)
        srv.fail("getJP2Image", "slow")  # 85 kB at 100 bytes/s: 14 minutes
        began = time.monotonic()
        summary = download(START, START, tmp_path, retries=1, **{**FAST, "timeout": 0.5})
        assert time.monotonic() - began < 3.0
        assert summary.downloaded == 1 and len(srv.requests("getJP2Image")) == 2
    day = (tmp_path / images.image_relpath(REQUESTED[0], ".jp2")).parent
    assert [p.name for p in day.iterdir()] == [images.image_relpath(REQUESTED[0], ".jp2").split("/")[-1]]


# ---------------------------------------------------------------------------- interrupted runs


def _start_cli_download(srv_url, out, extra=()):
    env = {**os.environ, "HELIOVIEWER_API_URL": srv_url, "PYTHONPATH": os.pathsep.join(sys.path)}
    return subprocess.Popen(
        [sys.executable, "-m", "flarelens", "download", "--start", START, "--end", END, "--out", str(out),
         "--workers", "2", "--rate", "100", "--timeout", "60", *extra],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for(condition, seconds=30.0):
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.02)


@pytest.mark.parametrize("signals, code, word", [
    ([signal.SIGINT], 130, "interrupted"),
    ([signal.SIGINT, signal.SIGINT], 130, "interrupted"),  # a second Ctrl-C while stopping
    ([signal.SIGTERM], 143, "terminated"),
])
def test_ctrl_c_and_sigterm_stop_fast_and_clean(monkeypatch, tmp_path, signals, code, word):
    with FakeHelioviewer(OBSERVED, trickle_s=0.002) as srv:
        # Every image trickles (85 kB at 500 bytes/s: ~3 minutes), so downloads are mid-file.
        srv.fail("getJP2Image", *["slow"] * 12)
        proc = _start_cli_download(srv.url, tmp_path)
        try:
            _wait_for(lambda: len(srv.requests("getJP2Image")) >= 2)
            _wait_for(lambda: any(tmp_path.rglob(".*.part*")))  # bytes are being written
            first_line = []
            reader = threading.Thread(target=lambda: first_line.append((proc.stderr.readline(), time.monotonic())))
            began = time.monotonic()
            reader.start()
            for sig in signals:
                proc.send_signal(sig)
                time.sleep(0.05)
            reader.join(timeout=30)
            out, rest = proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
    line, when = first_line[0]
    err = line + rest
    assert proc.returncode == code, err
    assert when - began < 2.0  # stopped (the interpreter's own exit takes a little longer)
    assert "Traceback" not in err and word in err and len(err.strip().splitlines()) == 1
    assert not list(tmp_path.rglob("*.part*"))  # no temporary left behind
    assert not list(tmp_path.rglob("*.jp2"))  # and no partial image under its final name


def test_stale_temporaries_of_a_killed_run_are_removed(server, tmp_path, caplog):
    day = tmp_path / "2011" / "02" / "15"
    day.mkdir(parents=True)
    stale = [day / ".HMI.m2011.02.15_00.00.00.k3j2x1.part.jp2", tmp_path / ".manifest.a8z.part.csv"]
    for path in stale:
        path.write_bytes(b"\0" * 1000)
    keep = [day / "notes.part.txt", day / "HMI.m2011.02.15_09.00.00.part.jp2"]  # not ours: no leading dot
    for path in keep:
        path.write_text("mine")
    with caplog.at_level(logging.INFO, logger="flarelens"):
        summary = download(START, START, tmp_path, **FAST)
    assert summary.downloaded == 1
    assert not any(p.exists() for p in stale) and all(p.exists() for p in keep)
    assert "removed 2 unfinished temporary file(s)" in caplog.text


def test_a_second_download_into_the_same_directory_is_refused(server, tmp_path):
    with fetch.output_lock(tmp_path):
        with pytest.raises(FlareLensError, match="another download is writing into this directory"):
            download(START, START, tmp_path, **FAST)
    assert server.log == []
    assert download(START, START, tmp_path, **FAST).downloaded == 1  # the lock went with its holder


# ---------------------------------------------------------------------------- the manifest


def test_empty_manifest_is_rebuilt(server, tmp_path):
    (tmp_path / "manifest.csv").write_text("")
    assert download(START, END, tmp_path, **FAST).downloaded == 6
    manifest = read_manifest(tmp_path / "manifest.csv")
    assert len(manifest) == 6 and set(manifest["status"]) == {"downloaded"}


def test_damaged_manifest_is_rebuilt_from_its_readable_rows(server, tmp_path, caplog):
    download(START, "2011-02-15T02:00", tmp_path, **FAST)
    path = tmp_path / "manifest.csv"
    lines = path.read_text().splitlines()
    assert len(lines) == 4
    # A run killed mid-row: a row cut short (no newline), plus a line of garbage before it.
    path.write_text("\n".join([*lines[:3], "\x00\x00garbage", lines[3][:25]]))
    with caplog.at_level(logging.WARNING, logger="flarelens"):
        summary = download(START, END, tmp_path, **FAST)
    assert "2 damaged row(s) left out" in caplog.text
    assert (summary.downloaded, summary.skipped) == (3, 3)
    manifest = read_manifest(tmp_path / "manifest.csv")
    assert list(manifest["requested"]) == [t.strftime("%Y-%m-%dT%H:%M:%SZ") for t in REQUESTED]
    assert manifest["status"].tolist() == ["skipped"] * 3 + ["downloaded"] * 3
    # The rows kept keep what they knew; the lost row's time comes from its file's header.
    expected = [t.strftime("%Y-%m-%dT%H:%M:%SZ") for t in OBSERVED]
    expected[2] = "2023-01-31T03:39:23Z"
    assert list(manifest["observed"]) == expected


def test_binary_file_as_manifest_is_one_line_error(server, tmp_path, capsys):
    (tmp_path / "manifest.csv").write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe" * 20)
    rc = main(["download", "--start", START, "--end", END, "--out", str(tmp_path), "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 1 and "not a download manifest" in err and len(err.strip().splitlines()) == 1
    assert server.log == []


@pytest.mark.parametrize("args, message", [
    (["--workers", "-2"], "--workers"),
    (["--workers", "0"], "--workers"),
    (["--rate", "0"], "--rate"),
    (["--rate", "-1"], "--rate"),
    (["--rate", "nan"], "--rate"),
    (["--retries", "-1"], "--retries"),
    (["--backoff", "-1"], "--backoff"),
    (["--timeout", "0"], "--timeout"),
    (["--timeout", "inf"], "--timeout"),
    (["--tolerance", "0"], "tolerance must be positive"),
    (["--tolerance=-5min"], "tolerance must be positive"),
])
def test_cli_refuses_bad_settings_before_any_work(server, tmp_path, capsys, args, message):
    out = tmp_path / "out"
    rc = main(["download", "--start", START, "--end", END, "--out", str(out), "--no-progress", *args])
    err = capsys.readouterr().err
    assert rc == 1 and message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert server.log == [] and not out.exists()
