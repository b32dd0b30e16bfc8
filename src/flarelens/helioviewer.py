"""Download HMI magnetograms (JPEG 2000) from the Helioviewer API.

For each requested UTC time the API is asked for the closest image of the data source
(``getClosestImage``); an image further away than the tolerance is recorded as missing,
otherwise its JP2 file (``getJP2Image``) is saved under the image root with the naming
convention of :mod:`flarelens.images`, named by the *requested* time (the observed time
goes to the manifest). Built for long unattended runs: complete files are skipped, a file
only gets its final name once it is complete and a valid JP2, a few requests run at once
under a polite rate limit, transient failures (HTTP 5xx / 429, timeouts, dropped
connections) are retried with exponential backoff, and every outcome is appended to a
manifest CSV as it happens.

The request parameters and endpoint URLs come from hvpy (the Helioviewer project's
client): its parameter models validate the source id and format the dates as the API
expects. The HTTP calls themselves are made here with ``requests`` because hvpy's
``execute_api_call`` sets no timeout (a stalled server would hang a worker forever),
does not stream (a 4096² JP2 is held in memory and a dropped connection cannot be told
from a short file) and does not retry.
"""

from __future__ import annotations

import csv
import os
import random
import threading
import time
from collections import Counter
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from flarelens import __version__
from flarelens.errors import FlareLensError
from flarelens.fileio import atomic_path, write_csv
from flarelens.images import image_relpath
from flarelens.labels import sample_times

#: Helioviewer's source id of SDO/HMI line-of-sight magnetograms.
HMI_MAGNETOGRAM_SOURCE_ID = 19

MANIFEST_COLUMNS = ["requested", "observed", "file", "status", "bytes", "message"]
STATUSES = ("downloaded", "skipped", "missing", "failed")

_JP2_SIGNATURE = b"\x00\x00\x00\x0cjP  \r\n\x87\n"
_TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


class _Retryable(Exception):
    """A failure worth trying again (server error, timeout, dropped connection, short body)."""

    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


class _Permanent(Exception):
    """A failure that retrying will not fix (HTTP 4xx, an unusable answer)."""


@dataclass
class RetryPolicy:
    """How hard to try: ``retries`` extra attempts, waiting ``backoff * 2**k`` seconds
    (k = 0, 1, ...; at most ``max_backoff``; up to 10% jitter so parallel workers do not
    retry in lockstep) before attempt k + 1; ``timeout`` seconds to connect and between
    bytes received."""

    retries: int = 5
    backoff: float = 1.0
    max_backoff: float = 60.0
    timeout: float = 60.0

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        wait_s = min(self.max_backoff, self.backoff * 2**attempt)
        if retry_after is not None:
            wait_s = max(wait_s, min(retry_after, self.max_backoff))
        return wait_s * (1 + 0.1 * random.random())


class RateLimiter:
    """At most ``rate`` request starts per second, shared by all threads (None: no limit)."""

    def __init__(self, rate: float | None):
        self.interval = 1.0 / rate if rate else 0.0
        self._lock = threading.Lock()
        self._next = time.monotonic()

    def wait(self) -> None:
        if not self.interval:
            return
        with self._lock:
            now = time.monotonic()
            start = max(now, self._next)
            self._next = start + self.interval
        if start > now:
            time.sleep(start - now)


@dataclass
class DownloadSummary:
    """Counts of a download run (per requested time) and where the manifest is."""

    downloaded: int = 0
    skipped: int = 0
    missing: int = 0
    failed: int = 0
    bytes: int = 0
    seconds: float = 0.0
    manifest: Path | None = None
    not_attempted: int = 0
    aborted: str = ""
    failures: list = field(default_factory=list)  # (requested time, message), first few

    @property
    def total(self) -> int:
        return self.downloaded + self.skipped + self.missing + self.failed

    def format(self) -> str:
        lines = [
            f"downloaded {self.downloaded}, skipped {self.skipped} (already complete), "
            f"missing {self.missing} (no image within tolerance), failed {self.failed}"
            f" — {self.bytes / 1e6:.1f} MB in {self.seconds:.1f} s",
        ]
        for when, message in self.failures[:5]:
            lines.append(f"  failed {when}: {message}")
        if self.failed > 5:
            lines.append(f"  ... and {self.failed - 5} more (see the manifest)")
        if self.aborted:
            lines.append(f"stopped early: {self.aborted}; {self.not_attempted} times not attempted")
        if self.failed or self.not_attempted:
            lines.append("run the same command again to retry what failed (complete files are kept)")
        if self.manifest is not None:
            lines.append(f"manifest: {self.manifest}")
        return "\n".join(lines)


def api_url(url: str | None = None) -> str:
    """The Helioviewer API base URL (ending in ``/``) to use now.

    ``url`` if given; else ``HELIOVIEWER_API_URL`` if set in the environment now (read
    through hvpy's own settings model, so it means exactly what it means to hvpy, which
    reads it only once, at import); else hvpy's current URL (its default, or what
    ``hvpy.set_api_url`` set).
    """
    from hvpy import config as hvpy_config

    if not url:
        if any(key.upper() == "HELIOVIEWER_API_URL" for key in os.environ):
            url = hvpy_config.Settings().api_url
        else:
            url = hvpy_config.get_api_url()
    return url if url.endswith("/") else url + "/"


def _endpoint(params, base: str) -> str:
    """hvpy's endpoint URL for ``params``, rebased on ``base``."""
    from hvpy.config import get_api_url

    url = params.url
    hvpy_base = get_api_url()
    hvpy_base = hvpy_base if hvpy_base.endswith("/") else hvpy_base + "/"
    if not url.startswith(hvpy_base):  # pragma: no cover - hvpy always builds base + name + "/"
        raise RuntimeError(f"unexpected hvpy endpoint URL {url!r}")
    return base + url[len(hvpy_base):]


def _naive_utc(stamp: pd.Timestamp):
    """A naive datetime in UTC, whole seconds: hvpy appends the "Z" itself, and the API
    takes ``YYYY-MM-DDTHH:MM:SSZ`` (no fraction)."""
    stamp = pd.Timestamp(stamp)
    stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
    return stamp.floor("s").tz_localize(None).to_pydatetime()


def is_complete_jp2(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a whole JPEG 2000 file: the JP2 signature box first, a ``ftyp``
    box, boxes with printable type names whose lengths add up to the file size, and a
    codestream box (``jp2c``) ending with the end-of-codestream marker (FF D9). Reads only box headers and the last
    two bytes, so checking a whole archive is cheap; a download cut short fails it."""
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as fh:
            if fh.read(12) != _JP2_SIGNATURE:
                return False
            offset, boxes = 12, []
            while offset < size:
                fh.seek(offset)
                head = fh.read(8)
                if len(head) < 8:
                    return False
                length, box_type = int.from_bytes(head[:4], "big"), head[4:]
                if length == 1:
                    extra = fh.read(8)
                    if len(extra) < 8:
                        return False
                    length = int.from_bytes(extra, "big")
                elif length == 0:
                    length = size - offset
                if length < 8 or offset + length > size or not all(32 <= c < 127 for c in box_type):
                    return False
                boxes.append(box_type)
                offset += length
                if box_type == b"jp2c":
                    fh.seek(offset - 2)
                    if fh.read(2) != b"\xff\xd9":
                        return False
            return offset == size and boxes[:1] == [b"ftyp"] and b"jp2c" in boxes
    except OSError:
        return False


class HelioviewerClient:
    """The two Helioviewer calls the download needs, with retries, timeouts and a rate limit.

    Thread-safe: each thread gets its own ``requests.Session`` (connection reuse).
    """

    def __init__(self, url: str | None = None, policy: RetryPolicy | None = None,
                 rate: float | None = 5.0):
        self.base = api_url(url)
        if not self.base.startswith(("http://", "https://")):
            raise FlareLensError(f"Helioviewer API URL {self.base!r} must start with http:// or https:// "
                                 "(check HELIOVIEWER_API_URL)")
        self.policy = policy or RetryPolicy()
        self.limiter = RateLimiter(rate)
        self._local = threading.local()
        self._stop = threading.Event()

    def stop(self) -> None:
        """Make waiting retries give up at once (after Ctrl-C), so workers finish quickly."""
        self._stop.set()

    def _session(self):
        import requests

        session = getattr(self._local, "session", None)
        if session is None:
            session = requests.Session()
            session.headers["User-Agent"] = f"flarelens/{__version__} (hvpy; research download)"
            self._local.session = session
        return session

    def _retrying(self, what: str, call):
        """Run ``call()`` until it succeeds, retrying :class:`_Retryable` failures with backoff."""
        import requests

        attempt = 0
        while True:
            try:
                return call()
            except _Retryable as exc:
                error, retry_after = exc, exc.retry_after
            except (requests.ConnectionError, requests.Timeout) as exc:
                # ConnectionError covers refused/reset connections and bodies cut short
                # (ChunkedEncodingError is raised as its own type, handled below).
                error, retry_after = exc, None
            except requests.exceptions.ChunkedEncodingError as exc:
                error, retry_after = exc, None
            except requests.RequestException as exc:  # a malformed URL, too many redirects, ...
                raise _Permanent(f"{what}: {_short(exc)}") from None
            if attempt >= self.policy.retries:
                raise _Permanent(f"{what}: gave up after {attempt + 1} attempts: {_short(error)}")
            if self._stop.wait(self.policy.delay(attempt, retry_after)):
                raise _Permanent(f"{what}: interrupted")
            attempt += 1

    def _get(self, url: str, params: dict, stream: bool = False):
        self.limiter.wait()
        response = self._session().get(url, params=params, stream=stream, timeout=self.policy.timeout)
        if response.status_code >= 500 or response.status_code == 429:
            retry_after = response.headers.get("Retry-After")
            response.close()
            try:
                retry_after = float(retry_after) if retry_after is not None else None
            except ValueError:
                retry_after = None
            raise _Retryable(f"HTTP {response.status_code} from {url}", retry_after)
        if response.status_code >= 400:
            response.close()
            raise _Permanent(f"HTTP {response.status_code} from {url}")
        return response

    def closest_image(self, when, source_id: int = HMI_MAGNETOGRAM_SOURCE_ID) -> dict:
        """``getClosestImage`` for a UTC time: the API's JSON (id, date, name, scale, width,
        height, ...), or a dict with an ``error`` key when the API says it has no image."""
        from hvpy.parameters import getClosestImageInputParameters

        params = getClosestImageInputParameters(date=_naive_utc(pd.Timestamp(when)), sourceId=source_id)
        url = _endpoint(params, self.base)

        def call():
            response = self._get(url, params.model_dump())
            try:
                return response.json()
            except ValueError:
                raise _Retryable(f"getClosestImage returned something other than JSON ({response.text[:80]!r})") from None

        return self._retrying(f"getClosestImage {when:%Y-%m-%d %H:%M:%S}", call)

    def download_jp2(self, observed, dest: str | os.PathLike,
                     source_id: int = HMI_MAGNETOGRAM_SOURCE_ID) -> int:
        """Save the JP2 observed at ``observed`` (UTC, as ``closest_image`` reported it) to
        ``dest``; return its size in bytes. The bytes go to a temporary file beside ``dest``
        that is renamed to ``dest`` only when complete and a valid JP2; an interrupted
        download is retried from the start."""
        from hvpy.parameters import getJP2ImageInputParameters

        params = getJP2ImageInputParameters(date=_naive_utc(pd.Timestamp(observed)), sourceId=source_id)
        url = _endpoint(params, self.base)
        dest = Path(dest)

        def call():
            with atomic_path(dest) as tmp:
                response = self._get(url, params.model_dump(), stream=True)
                with response, open(tmp, "wb") as fh:
                    expected = response.headers.get("Content-Length")
                    received = 0
                    for chunk in response.iter_content(chunk_size=1 << 16):
                        fh.write(chunk)
                        received += len(chunk)
                if expected is not None and received != int(expected):
                    raise _Retryable(f"connection closed after {received} of {expected} bytes")
                if not is_complete_jp2(tmp):
                    head = Path(tmp).read_bytes()[:80]
                    raise _Retryable(f"the answer is not a complete JP2 file ({received} bytes, starts {head!r})")
                return received

        return self._retrying(f"getJP2Image {pd.Timestamp(observed):%Y-%m-%d %H:%M:%S}", call)


def _short(error: Exception) -> str:
    text = str(error) or type(error).__name__
    # urllib3 nests the reason in long reprs ("HTTPConnectionPool(...): Max retries exceeded ...")
    if "Caused by" in text:
        text = text[text.index("Caused by"):]
    return text[:200]


def _fmt(stamp) -> str:
    return "" if stamp is None or pd.isna(stamp) else pd.Timestamp(stamp).strftime(_TIME_FORMAT)


def _row(requested, observed=None, file="", status="failed", nbytes=0, message="") -> dict:
    return {"requested": _fmt(requested), "observed": _fmt(observed), "file": file,
            "status": status, "bytes": int(nbytes), "message": message}


def read_manifest(path: str | os.PathLike) -> pd.DataFrame:
    """A download manifest: one row per requested time (the latest outcome), columns
    requested, observed (UTC, ISO 8601), file (relative to the image root; empty when none),
    status (downloaded / skipped / missing / failed), bytes, message."""
    path = Path(path)
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    except FileNotFoundError:
        raise FlareLensError(f"{path}: no such manifest (it is written by `flarelens download`)") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise FlareLensError(f"{path}: cannot read the manifest ({exc}); move it away to start a new one") from None
    missing = [c for c in MANIFEST_COLUMNS if c not in frame.columns]
    if missing:
        raise FlareLensError(f"{path}: not a download manifest (missing column(s) {', '.join(missing)}); "
                             "move it away or pass another --manifest")
    frame = frame[MANIFEST_COLUMNS].drop_duplicates("requested", keep="last")
    frame["bytes"] = pd.to_numeric(frame["bytes"], errors="coerce").fillna(0).astype(int)
    return frame.sort_values("requested").reset_index(drop=True)


def _process_time(client: HelioviewerClient, requested: pd.Timestamp, out: Path, tolerance: pd.Timedelta,
                  source_id: int, previous: dict | None) -> dict:
    """The manifest row of one requested time, after doing whatever it needs."""
    rel = image_relpath(requested, ".jp2")
    dest = out / rel
    if is_complete_jp2(dest):
        observed = (previous or {}).get("observed") or _observed_from_header(dest)
        return _row(requested, observed, rel, "skipped", dest.stat().st_size)
    try:
        answer = client.closest_image(requested, source_id)
        if not isinstance(answer, dict):
            return _row(requested, status="failed", message=f"unexpected getClosestImage answer {str(answer)[:80]!r}")
        if "error" in answer or "date" not in answer:
            return _row(requested, status="missing", message=str(answer.get("error", "no image in the answer"))[:200])
        try:
            observed = pd.Timestamp(answer["date"])
        except (ValueError, TypeError):
            return _row(requested, status="failed", message=f"cannot read the image date {answer['date']!r}")
        observed = observed.tz_localize("UTC") if observed.tzinfo is None else observed.tz_convert("UTC")
        gap = abs(observed - requested)
        if gap > tolerance:
            return _row(requested, observed, status="missing",
                        message=f"closest image is {_minutes(gap)} away (tolerance {_minutes(tolerance)})")
        nbytes = client.download_jp2(observed, dest, source_id)
        return _row(requested, observed, rel, "downloaded", nbytes)
    except _Permanent as exc:
        return _row(requested, status="failed", message=str(exc))
    except OSError as exc:  # the local disk (full, permissions): the server is not to blame
        return _row(requested, status="failed", message=f"cannot write {dest}: {exc}")


def _observed_from_header(path: Path):
    """DATE-OBS of a JP2 put there by something other than this manifest (None if unreadable)."""
    from flarelens.images import read_header

    try:
        return pd.Timestamp(read_header(path)["DATE-OBS"]).tz_localize("UTC")
    except Exception:  # noqa: BLE001 - the time is a nicety for the manifest, never worth failing over
        return None


def _minutes(delta: pd.Timedelta) -> str:
    return f"{delta.total_seconds() / 60:.1f} min"


def download(start, end, out, cadence="1h", tolerance="12min", workers: int = 4,
             source_id: int = HMI_MAGNETOGRAM_SOURCE_ID, manifest=None, url: str | None = None,
             rate: float | None = 5.0, retries: int = 5, backoff: float = 1.0, timeout: float = 60.0,
             max_consecutive_failures: int = 25, progress: bool = True) -> DownloadSummary:
    """Download the Helioviewer JP2 image closest to every ``cadence`` from ``start`` to
    ``end`` (UTC, inclusive) into ``out`` (``YYYY/MM/DD/HMI.mYYYY.MM.DD_HH.MM.SS.jp2``,
    the requested time in the name).

    ``tolerance``: the largest |observed - requested| accepted; beyond it the time is
    recorded as missing. ``workers``: requests in flight at once; ``rate``: at most this
    many requests started per second overall (None: no limit). ``retries`` / ``backoff``
    (seconds, doubled each retry) / ``timeout`` (seconds) govern transient failures;
    after ``max_consecutive_failures`` times in a row fail (the server is down, say) the run
    stops early. Every outcome is appended to ``manifest`` (default ``out/manifest.csv``)
    as it happens; at the end the manifest is rewritten with one row per time. Running
    the same call again skips complete files and retries the rest.
    """
    times = sample_times(start, end, cadence)
    tolerance = _parse_tolerance(tolerance)
    if int(workers) < 1:
        raise FlareLensError(f"--workers must be at least 1, got {workers}")
    if rate is not None and rate <= 0:
        raise FlareLensError(f"--rate must be positive (requests per second), got {rate}")
    if retries < 0:
        raise FlareLensError(f"--retries must be 0 or more, got {retries}")
    if timeout <= 0:
        raise FlareLensError(f"--timeout must be positive (seconds), got {timeout}")
    _check_source(source_id)
    out = Path(out)
    manifest = Path(manifest) if manifest else out / "manifest.csv"
    out.mkdir(parents=True, exist_ok=True)
    manifest.parent.mkdir(parents=True, exist_ok=True)
    previous = {}
    if manifest.exists():
        previous = {row["requested"]: row for row in read_manifest(manifest).to_dict("records")}

    client = HelioviewerClient(url, RetryPolicy(retries=retries, backoff=backoff, timeout=timeout), rate)
    summary = DownloadSummary(manifest=manifest)
    counts: Counter = Counter()
    began = time.monotonic()
    new_file = not manifest.exists() or manifest.stat().st_size == 0
    from tqdm.auto import tqdm

    pending_times = iter(times)
    consecutive_failures = 0
    with open(manifest, "a", newline="", encoding="utf-8") as fh, \
            ThreadPoolExecutor(max_workers=int(workers), thread_name_prefix="helioviewer") as pool, \
            tqdm(total=len(times), unit="img", desc="download", disable=not progress, dynamic_ncols=True) as bar:
        writer = csv.DictWriter(fh, fieldnames=MANIFEST_COLUMNS)
        if new_file:
            writer.writeheader()
            fh.flush()

        def submit_next() -> bool:
            requested = next(pending_times, None)
            if requested is None:
                return False
            in_flight.add(pool.submit(_process_time, client, requested, out, tolerance, source_id,
                                      previous.get(_fmt(requested))))
            return True

        # Keep a bounded window of work in flight, so a stop (or Ctrl-C) leaves little queued.
        in_flight: set = set()
        try:
            for _ in range(2 * int(workers)):
                if not submit_next():
                    break
            while in_flight:
                done, in_flight = wait(in_flight, return_when=FIRST_COMPLETED)
                for future in done:
                    row = future.result()
                    writer.writerow(row)
                    fh.flush()
                    counts[row["status"]] += 1
                    summary.bytes += row["bytes"] if row["status"] == "downloaded" else 0
                    if row["status"] == "failed":
                        consecutive_failures += 1
                        if len(summary.failures) < 5:
                            summary.failures.append((row["requested"], row["message"]))
                    else:
                        consecutive_failures = 0
                    bar.set_postfix({k: counts[k] for k in STATUSES if counts[k]}, refresh=False)
                    bar.update(1)
                    if consecutive_failures >= max_consecutive_failures and not summary.aborted:
                        summary.aborted = f"{consecutive_failures} times in a row failed (last: {row['message']})"
                    if not summary.aborted:
                        submit_next()
        except BaseException:
            client.stop()
            for future in in_flight:
                future.cancel()
            raise
    for status in STATUSES:
        setattr(summary, status, counts[status])
    summary.not_attempted = len(times) - summary.total
    summary.seconds = time.monotonic() - began
    # One row per time (the latest outcome), sorted: what a later run and a user read.
    write_csv(read_manifest(manifest), manifest)
    return summary


def _parse_tolerance(value) -> pd.Timedelta:
    try:
        delta = pd.Timedelta(value)
    except (ValueError, TypeError):
        raise FlareLensError(f"cannot read tolerance {value!r} (expected e.g. 12min, 30s, 1h)") from None
    if delta is pd.NaT or delta < pd.Timedelta(0):
        raise FlareLensError(f"tolerance must be 0 or more, got {value!r}")
    return delta


def _check_source(source_id) -> None:
    from hvpy.datasource import DataSource

    try:
        DataSource(int(source_id))
    except (ValueError, TypeError):
        raise FlareLensError(
            f"unknown Helioviewer source id {source_id!r} (HMI magnetogram = {HMI_MAGNETOGRAM_SOURCE_ID}; "
            "see hvpy.DataSource for the others)"
        ) from None


__all__ = [
    "HMI_MAGNETOGRAM_SOURCE_ID", "MANIFEST_COLUMNS", "DownloadSummary", "HelioviewerClient", "RateLimiter",
    "RetryPolicy", "api_url", "download", "is_complete_jp2", "read_manifest",
]
