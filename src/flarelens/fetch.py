"""Resumable, polite downloading of one file per requested time, whatever the source.

A source (e.g. :mod:`flarelens.helioviewer`) supplies one function, ``process(requested,
previous) -> manifest row``, that fetches what a requested time needs through an
:class:`HttpFetcher`; :func:`fetch_all` does the rest:

* **resume**: every outcome is appended to a manifest CSV as it happens (columns
  :data:`MANIFEST_COLUMNS`); a later run hands each time its previous row, and the source
  skips files already complete. At the end the manifest is rewritten with one row per time.
* **temporary files**: a file gets its final name only once complete and checked
  (:func:`flarelens.fileio.atomic_path`); temporaries left by a killed run are removed by
  the next one, which holds a lock on the output directory while it runs.
* **retries** with exponential backoff for transient failures (HTTP 5xx and 429, honouring
  ``Retry-After``; timeouts; dropped connections; short or damaged bodies), a **rate
  limit** shared by all workers, and a **time bound on each request as a whole** (connect,
  wait and every byte): a server trickling one byte a second is cut off at the timeout.
* **stopping**: after Ctrl-C or SIGTERM the requests in flight are cut at once, their
  temporaries removed, and the interrupt goes on up to the caller within about a second.

Hand-written on purpose: ``requests`` (and urllib3 under it) bound only the wait for each
network read, not a request's total time; urllib3's documentation recommends a watcher
thread that closes the socket, which is what :class:`HttpFetcher` does.
"""

from __future__ import annotations

import contextlib
import csv
import email.utils
import io
import logging
import os
import random
import re
import socket
import threading
import time
import weakref
from collections import Counter
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd

from flarelens import __version__
from flarelens.errors import FlareLensError
from flarelens.fileio import atomic_path, write_csv

logger = logging.getLogger(__name__)

MANIFEST_COLUMNS = ["requested", "observed", "file", "status", "bytes", "message"]
#: Outcomes of a requested time: fetched now, already complete, nothing to fetch within
#: tolerance, or failed (a later run retries it).
STATUSES = ("downloaded", "skipped", "missing", "failed")

TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
_TIME_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")
# fileio.atomic_path names its temporaries ".<stem>.<random>.part<suffix>".
_TEMPORARY_RE = re.compile(r"^\..+\.part(\.[A-Za-z0-9]+)?$")
LOCK_NAME = ".flarelens-download.lock"


class RetryableError(Exception):
    """A failure worth trying again (server error, rate limiting, timeout, short body)."""

    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


class PermanentError(Exception):
    """A failure that retrying will not fix (HTTP 4xx, an unusable answer, a stop)."""


@dataclass
class RetryPolicy:
    """How hard to try: ``retries`` extra attempts, waiting ``backoff * 2**k`` seconds
    (k = 0, 1, ...; at least the server's ``Retry-After``; at most ``max_backoff``; up to
    10% jitter so parallel workers do not retry in lockstep) before attempt k + 1;
    ``timeout``: seconds one request may take in all (connecting, waiting, every byte)."""

    retries: int = 5
    backoff: float = 1.0
    max_backoff: float = 60.0
    timeout: float = 60.0

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        wait_s = min(self.max_backoff, self.backoff * 2**attempt)
        if retry_after is not None:
            wait_s = max(wait_s, min(retry_after, self.max_backoff))
        return wait_s * (1 + 0.1 * random.random())


def check_settings(workers, rate, retries, backoff, timeout) -> None:
    """Refuse (one :class:`FlareLensError` line) settings a download cannot run with:
    ``workers`` 1-256 and ``retries`` 0-100 (whole numbers), ``rate`` (requests per second,
    None for no limit) and ``timeout`` (seconds) positive, ``backoff`` (seconds) >= 0."""
    def whole(value, low, high) -> bool:
        return isinstance(value, (int, np.integer)) and not isinstance(value, bool) and low <= value <= high

    def number(value, low, strict) -> bool:
        ok = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
        return ok and bool(np.isfinite(value)) and (value > low if strict else value >= low)

    if not whole(workers, 1, 256):
        raise FlareLensError(f"--workers must be a whole number from 1 to 256, got {workers!r}")
    if rate is not None and not number(rate, 0, strict=True):
        raise FlareLensError(f"--rate must be a positive number of requests per second, got {rate!r}")
    if not whole(retries, 0, 100):
        raise FlareLensError(f"--retries must be a whole number from 0 to 100, got {retries!r}")
    if not number(backoff, 0, strict=False):
        raise FlareLensError(f"--backoff must be 0 or more seconds, got {backoff!r}")
    if not number(timeout, 0, strict=True):
        raise FlareLensError(f"--timeout must be a positive number of seconds, got {timeout!r}")


class RateLimiter:
    """At most ``rate`` request starts per second, shared by all threads (None: no limit)."""

    def __init__(self, rate: float | None):
        self.interval = 1.0 / rate if rate else 0.0
        self._lock = threading.Lock()
        self._next = time.monotonic()

    def wait(self, stop: threading.Event | None = None) -> bool:
        """Sleep until this thread may start a request; False if ``stop`` was set meanwhile."""
        if not self.interval:
            return not (stop is not None and stop.is_set())
        with self._lock:
            now = time.monotonic()
            start = max(now, self._next)
            self._next = start + self.interval
        if start > now:
            if stop is not None:
                return not stop.wait(start - now)
            time.sleep(start - now)
        return not (stop is not None and stop.is_set())


class _Sockets:
    """The sockets each thread has opened, so that a watcher can cut that thread's request."""

    def __init__(self):
        self._lock = threading.Lock()
        self._by_thread: dict[int, weakref.WeakSet] = {}

    def add(self, sock) -> None:
        with self._lock:
            self._by_thread.setdefault(threading.get_ident(), weakref.WeakSet()).add(sock)

    def cut(self, thread: int | None = None) -> None:
        """Shut down the sockets of ``thread`` (all threads: None); a read blocked on one returns."""
        with self._lock:
            groups = list(self._by_thread.values()) if thread is None else [self._by_thread.get(thread, ())]
            socks = [s for group in groups for s in list(group)]
        for sock in socks:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


class _Deadline:
    """Cuts the current thread's sockets if the block has not ended ``seconds`` after it began."""

    def __init__(self, seconds: float, sockets: _Sockets):
        self.seconds, self.sockets = seconds, sockets
        self.expired = False
        self._lock = threading.Lock()
        self._done = False
        self._thread = threading.get_ident()
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True

    def _expire(self) -> None:
        with self._lock:
            if self._done:
                return
            self.expired = True
        self.sockets.cut(self._thread)

    def __enter__(self) -> _Deadline:
        self._timer.start()
        return self

    def __exit__(self, *exc) -> None:
        with self._lock:
            self._done = True
        self._timer.cancel()


def _tracking_adapter(sockets: _Sockets):
    """A requests adapter whose connections register their sockets with ``sockets``."""
    from requests.adapters import HTTPAdapter
    from urllib3.connection import HTTPConnection, HTTPSConnection
    from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

    class TrackedHTTPConnection(HTTPConnection):
        def connect(self):
            super().connect()
            sockets.add(self.sock)

    class TrackedHTTPSConnection(HTTPSConnection):
        def connect(self):
            super().connect()
            sockets.add(self.sock)

    class TrackedHTTPPool(HTTPConnectionPool):
        ConnectionCls = TrackedHTTPConnection

    class TrackedHTTPSPool(HTTPSConnectionPool):
        ConnectionCls = TrackedHTTPSConnection

    class TrackedAdapter(HTTPAdapter):
        def init_poolmanager(self, *args, **kwargs):
            super().init_poolmanager(*args, **kwargs)
            self.poolmanager.pool_classes_by_scheme = {"http": TrackedHTTPPool, "https": TrackedHTTPSPool}

    return TrackedAdapter()


def parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from an HTTP ``Retry-After`` header (seconds or an HTTP date); None if absent or unreadable."""
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - time.time())


class HttpFetcher:
    """HTTP GETs with retries, a bound on each request's total time, a shared rate limit
    and a stop switch. Thread-safe: each thread gets its own ``requests.Session``."""

    def __init__(self, policy: RetryPolicy | None = None, rate: float | None = 5.0, user_agent: str | None = None):
        self.policy = policy or RetryPolicy()
        self.limiter = RateLimiter(rate)
        self.user_agent = user_agent or f"flarelens/{__version__} (research download)"
        self._local = threading.local()
        self._stop = threading.Event()
        self._sockets = _Sockets()

    def stop(self) -> None:
        """Stop: requests in flight are cut, waits end, and nothing new starts."""
        self._stop.set()
        self._sockets.cut()

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    def _session(self):
        import requests

        session = getattr(self._local, "session", None)
        if session is None:
            session = requests.Session()
            adapter = _tracking_adapter(self._sockets)
            session.mount("http://", adapter)
            session.mount("https://", adapter)
            session.headers["User-Agent"] = self.user_agent
            self._local.session = session
        return session

    def retrying(self, what: str, call: Callable):
        """Run ``call()`` (one request, bounded by the policy's timeout) until it succeeds,
        retrying transient failures with backoff; raise :class:`PermanentError` otherwise."""
        import requests

        attempt = 0
        while True:
            try:
                return self._attempt(call)
            except RetryableError as exc:
                error, retry_after = exc, exc.retry_after
            except (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError) as exc:
                # Refused or reset connections, bodies cut short, reads that timed out.
                error, retry_after = exc, None
            except PermanentError as exc:
                raise PermanentError(f"{what}: {exc}") from None
            except requests.RequestException as exc:  # a malformed URL, too many redirects, ...
                raise PermanentError(f"{what}: {short_error(exc)}") from None
            if attempt >= self.policy.retries:
                raise PermanentError(f"{what}: gave up after {attempt + 1} attempts: {short_error(error)}")
            logger.debug("%s: %s; retrying", what, short_error(error))
            if self._stop.wait(self.policy.delay(attempt, retry_after)):
                raise PermanentError(f"{what}: interrupted")
            attempt += 1

    def _attempt(self, call: Callable):
        if not self.limiter.wait(self._stop):
            raise PermanentError("interrupted")
        deadline = _Deadline(self.policy.timeout, self._sockets)
        try:
            with deadline:
                return call()
        except Exception:
            if self._stop.is_set():
                raise PermanentError("interrupted") from None
            if deadline.expired:
                raise RetryableError(f"no complete answer within {self.policy.timeout:g} s") from None
            raise

    def get(self, url: str, params: dict | None = None, stream: bool = False):
        """One GET (no retry): the response of a 2xx/3xx answer; :class:`RetryableError` for
        HTTP 5xx and 429 (with the server's ``Retry-After``), :class:`PermanentError` for other 4xx."""
        if self._stop.is_set():
            raise PermanentError("interrupted")
        response = self._session().get(url, params=params, stream=stream,
                                       timeout=(self.policy.timeout, self.policy.timeout))
        status = response.status_code
        if status >= 500 or status == 429:
            retry_after = parse_retry_after(response.headers.get("Retry-After"))
            response.close()
            raise RetryableError(f"HTTP {status} from {url}", retry_after)
        if status >= 400:
            response.close()
            raise PermanentError(f"HTTP {status} from {url}")
        return response

    def get_json(self, url: str, params: dict | None = None, what: str = "request"):
        """The JSON answer of a GET, retried as :meth:`retrying` does (a body that is not
        JSON counts as transient: proxies and overloaded servers send HTML error pages)."""
        def call():
            response = self.get(url, params)
            try:
                return response.json()
            except ValueError:
                raise RetryableError(f"the answer is not JSON ({response.text[:80]!r})") from None

        return self.retrying(what, call)

    def get_file(self, url: str, dest: str | os.PathLike, params: dict | None = None, what: str = "request",
                 check: Callable[[Path], bool] | None = None, kind: str = "file") -> int:
        """Save the body of a GET to ``dest``; return its size in bytes. The bytes go to a
        temporary file beside ``dest``, renamed to ``dest`` only when the body is whole
        (``Content-Length``) and ``check(path)`` accepts it (else retried as transient)."""
        dest = Path(dest)

        def call():
            with atomic_path(dest) as tmp:
                response = self.get(url, params, stream=True)
                with response, open(tmp, "wb") as fh:
                    expected = response.headers.get("Content-Length")
                    received = 0
                    for chunk in response.iter_content(chunk_size=1 << 16):
                        fh.write(chunk)
                        received += len(chunk)
                if expected is not None and expected.isdigit() and received != int(expected):
                    raise RetryableError(f"connection closed after {received} of {expected} bytes")
                if check is not None and not check(tmp):
                    head = Path(tmp).read_bytes()[:80]
                    raise RetryableError(f"the answer is not a complete {kind} ({received} bytes, starts {head!r})")
                return received

        return self.retrying(what, call)


def short_error(error: Exception) -> str:
    """A failure in one short line (urllib3 nests the reason in long reprs)."""
    text = str(error) or type(error).__name__
    if "Caused by" in text:
        text = text[text.index("Caused by"):]
    return " ".join(text.split())[:200]


# ---------------------------------------------------------------------------- manifest


def format_time(stamp) -> str:
    """A manifest time: ISO 8601 UTC to the second (``2011-02-15T00:00:00Z``); "" for none."""
    return "" if stamp is None or pd.isna(stamp) else pd.Timestamp(stamp).strftime(TIME_FORMAT)


def manifest_row(requested, observed=None, file: str = "", status: str = "failed", nbytes: int = 0,
                 message: str = "") -> dict:
    """One manifest row: requested and observed time (UTC), file (relative to the output
    root; "" when none), status (one of :data:`STATUSES`), bytes, message."""
    return {"requested": format_time(requested), "observed": format_time(observed), "file": file,
            "status": status, "bytes": int(nbytes), "message": message}


def _parse_manifest(path: Path) -> tuple[list[dict], int, bool]:
    """The readable rows of a manifest, how many damaged rows were left out, and whether the
    file needs rewriting (damaged, or its last line cut short). Refuses a file that is not a
    manifest (it may be something of the user's, given by mistake)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise FlareLensError(f"{path}: no such manifest (it is written by `flarelens download`)") from None
    except OSError as exc:
        raise FlareLensError(f"{path}: cannot read the manifest ({exc})") from None
    if not data.strip():
        return [], 0, True  # empty (e.g. killed before the header was flushed): start again
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise FlareLensError(f"{path}: not a download manifest (not text); move it away or pass another --manifest") from None
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = [c.strip() for c in next(reader)]
    except (csv.Error, StopIteration):
        header = []
    if not set(MANIFEST_COLUMNS) <= set(header):
        missing = [c for c in MANIFEST_COLUMNS if c not in header]
        raise FlareLensError(f"{path}: not a download manifest (missing column(s) {', '.join(missing)}); "
                             "move it away or pass another --manifest")
    rows, bad = [], 0
    while True:
        try:
            record = next(reader)
        except StopIteration:
            break
        except csv.Error:
            bad += 1
            continue
        if not record:
            continue
        row = dict(zip(header, record)) if len(record) == len(header) else None
        if (row is None or row["status"] not in STATUSES or not _TIME_RE.match(row["requested"])
                or not row["bytes"].isdigit() or (row["observed"] and not _TIME_RE.match(row["observed"]))):
            bad += 1
            continue
        rows.append({c: int(row[c]) if c == "bytes" else row[c] for c in MANIFEST_COLUMNS})
    return rows, bad, bool(bad) or not text.endswith("\n") or header != MANIFEST_COLUMNS


def _manifest_frame(rows: list[dict]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=MANIFEST_COLUMNS)
    frame = frame.drop_duplicates("requested", keep="last")
    frame["bytes"] = frame["bytes"].astype(int)
    return frame.sort_values("requested").reset_index(drop=True)


def read_manifest(path: str | os.PathLike) -> pd.DataFrame:
    """A download manifest: one row per requested time (the latest outcome), columns
    :data:`MANIFEST_COLUMNS` (times ISO 8601 UTC, ``bytes`` an integer). Damaged rows (a
    run killed while writing one) are left out with a warning; a file that is not a
    manifest raises :class:`FlareLensError`."""
    path = Path(path)
    rows, bad, _ = _parse_manifest(path)
    if bad:
        logger.warning("%s: %d damaged row(s) left out", path, bad)
    return _manifest_frame(rows)


def remove_stale_temporaries(root: str | os.PathLike) -> int:
    """Delete the temporary files (``.NAME.XXXX.part.EXT``) a killed run left under ``root``;
    return how many. Call only while holding :func:`output_lock` on ``root``."""
    removed = 0
    for folder, _dirs, files in os.walk(root):
        for name in files:
            if _TEMPORARY_RE.match(name):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(os.path.join(folder, name))
                    removed += 1
    return removed


@contextlib.contextmanager
def output_lock(root: str | os.PathLike):
    """Hold an exclusive lock on the output directory ``root`` (a lock file in it, released
    by the system when the process ends, even killed); a second run into it is refused."""
    root = Path(root)
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX: no lock, and no cleaning of temporaries
        yield False
        return
    path = root / LOCK_NAME
    try:
        fh = open(path, "a+")
    except OSError as exc:
        raise FlareLensError(f"{root}: cannot write into the output directory ({exc})") from None
    with fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise FlareLensError(f"{root}: another download is writing into this directory; "
                                 "wait for it to finish or use another --out") from None
        try:
            yield True
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


# ---------------------------------------------------------------------------- the run


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


class DeferredSignals:
    """Within the block, Ctrl-C (SIGINT) and SIGTERM are only noted (``received``) instead of
    raising wherever the main thread happens to be; the block polls ``received``, stops its
    work, and :meth:`reraise` then does what the original handler would have done
    (``KeyboardInterrupt``, the CLI's exit 143). A second signal while unwinding is absorbed.
    The handler takes no lock (it may run while the main thread holds one). Outside the
    main thread (where handlers cannot be set) it does nothing."""

    def __init__(self):
        self.received: int | None = None
        self._previous: dict = {}

    def __enter__(self) -> DeferredSignals:
        import signal

        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                current = signal.getsignal(sig)
                if current in (signal.SIG_IGN, None):
                    continue  # ignored (or set outside Python): leave it so
                with contextlib.suppress(ValueError, OSError):
                    self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        if self.received is None:
            self.received = signum

    def _restore(self) -> None:
        import signal

        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous = {}

    def __exit__(self, *exc) -> None:
        self._restore()

    def reraise(self) -> None:
        """Restore the handlers; if a signal came, act on it as its original handler would."""
        import signal

        handler = self._previous.get(self.received)
        self._restore()
        if self.received is None:
            return
        if callable(handler):
            handler(self.received, None)
        if self.received == signal.SIGINT:
            raise KeyboardInterrupt
        signal.raise_signal(self.received)  # the default action (SIGTERM: end the process)


def fetch_all(keys: Sequence[pd.Timestamp], process: Callable[[pd.Timestamp, dict | None], dict], out,
              fetcher: HttpFetcher, manifest=None, workers: int = 4, max_consecutive_failures: int = 25,
              progress: bool = True, desc: str = "download") -> DownloadSummary:
    """Run ``process(key, previous_row)`` for every requested time of ``keys`` on ``workers``
    threads and record each returned manifest row (:func:`manifest_row`) in ``manifest``
    (default ``out/manifest.csv``) as it comes.

    Holds :func:`output_lock` on ``out`` and first removes temporaries a killed run left
    there. A damaged manifest (a run killed mid-row) is rebuilt from its readable rows.
    After ``max_consecutive_failures`` failed times in a row the run stops starting new
    ones. On Ctrl-C / SIGTERM, ``fetcher`` is stopped within 0.2 s (requests in flight are cut),
    workers unwind (removing their temporaries), nothing more is recorded, and the
    interrupt is raised (``KeyboardInterrupt``; SIGTERM as its handler says). An unexpected
    error of ``process`` is a failed row, not the end of a long run.
    """
    from flarelens.progress import bar as progress_bar

    out = Path(out)
    manifest = Path(manifest) if manifest else out / "manifest.csv"
    try:
        out.mkdir(parents=True, exist_ok=True)
        manifest.parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise FlareLensError(f"{out}: exists and is not a directory") from None
    except OSError as exc:
        raise FlareLensError(f"cannot create {out}: {exc}") from None
    if manifest.is_dir():
        raise FlareLensError(f"--manifest {manifest}: is a directory")
    summary = DownloadSummary(manifest=manifest)
    with DeferredSignals() as signals:
        with output_lock(out) as locked:
            if locked:
                stale = remove_stale_temporaries(out)
                if manifest.parent.resolve() != out.resolve():
                    # Elsewhere (the home directory, say) only the manifest's own temporaries.
                    for tmp in manifest.parent.glob(f".{manifest.stem}.*.part{manifest.suffix}"):
                        tmp.unlink(missing_ok=True)
                        stale += 1
                if stale:
                    logger.info("removed %d unfinished temporary file(s) left by an interrupted run", stale)
            previous: dict[str, dict] = {}
            if manifest.exists():
                rows, bad, rewrite = _parse_manifest(manifest)
                previous = {row["requested"]: row for row in rows}
                if rewrite:
                    if bad:
                        logger.warning("%s: %d damaged row(s) left out; the manifest is rebuilt from the other %d",
                                       manifest, bad, len(rows))
                    write_csv(_manifest_frame(rows), manifest)
            if signals.received is None:
                bar = progress_bar(total=len(keys), unit="img", desc=desc, progress=progress, dynamic_ncols=True)
                _run(keys, process, fetcher, manifest, previous, int(workers), max_consecutive_failures, bar,
                     summary, signals)
            if signals.received is None:
                # One row per time (the latest outcome), sorted: what a later run and a user read.
                write_csv(read_manifest(manifest), manifest)
        signals.reraise()
    summary.not_attempted = len(keys) - summary.total
    return summary


def _run(keys, process, fetcher: HttpFetcher, manifest: Path, previous: dict, workers: int,
         max_consecutive_failures: int, bar, summary: DownloadSummary, signals: DeferredSignals) -> None:
    counts: Counter = Counter()
    began = time.monotonic()
    pending = iter(keys)
    consecutive_failures = 0

    def safely(key, before):
        try:
            return process(key, before)
        except PermanentError as exc:
            return manifest_row(key, status="failed", message=str(exc))
        except Exception as exc:  # noqa: BLE001 - one odd answer must not end a run of thousands
            if fetcher.stopped:
                return manifest_row(key, status="failed", message="interrupted")
            logger.debug("unexpected error for %s", format_time(key), exc_info=True)
            return manifest_row(key, status="failed", message=f"unexpected error: {type(exc).__name__}: {short_error(exc)}")

    new_file = not manifest.exists() or manifest.stat().st_size == 0
    try:
        fh = open(manifest, "a", newline="", encoding="utf-8")
    except OSError as exc:
        raise FlareLensError(f"cannot write the manifest {manifest}: {exc}") from None
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="fetch")
    in_flight: set = set()
    try:
        with fh, bar:
            writer = csv.DictWriter(fh, fieldnames=MANIFEST_COLUMNS)
            if new_file:
                writer.writeheader()
                fh.flush()

            def submit_next() -> bool:
                key = next(pending, None)
                if key is None:
                    return False
                in_flight.add(pool.submit(safely, key, previous.get(format_time(key))))
                return True

            # A bounded window of work in flight, so a stop leaves little queued.
            for _ in range(2 * workers):
                if not submit_next():
                    break
            while in_flight and signals.received is None:
                # A timeout, so that a signal (which only sets a flag) is seen promptly.
                done, _ = wait(in_flight, timeout=0.2, return_when=FIRST_COMPLETED)
                for future in done:
                    if signals.received is not None:
                        break  # what was cut short by the stop is not an outcome to record
                    in_flight.discard(future)
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
        _unwind(fetcher, in_flight, pool)  # a local failure, or Ctrl-C outside the main thread
        raise
    if signals.received is not None:
        _unwind(fetcher, in_flight, pool)
    pool.shutdown(wait=True)
    for status in STATUSES:
        setattr(summary, status, counts[status])
    summary.seconds = time.monotonic() - began


def _unwind(fetcher: HttpFetcher, futures, pool: ThreadPoolExecutor, seconds: float = 5.0) -> None:
    """Stop ``fetcher`` (requests in flight are cut), drop queued work and wait up to
    ``seconds`` for the workers to unwind, so that they remove their temporaries; deaf to a
    further interrupt meanwhile, which would leave them mid-write."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            fetcher.stop()
            # Queued work is cancelled; a cancelled future never counts as done for wait().
            running = [future for future in futures if not future.cancel()]
            pool.shutdown(wait=False, cancel_futures=True)
            wait(running, timeout=max(0.0, deadline - time.monotonic()))
            return
        except BaseException:  # noqa: BLE001 - a second Ctrl-C while unwinding
            if time.monotonic() >= deadline:
                return


__all__ = [
    "MANIFEST_COLUMNS", "STATUSES", "DeferredSignals", "DownloadSummary", "HttpFetcher", "PermanentError", "RateLimiter",
    "RetryPolicy", "RetryableError", "check_settings", "fetch_all", "format_time", "manifest_row",
    "output_lock", "parse_retry_after", "read_manifest", "remove_stale_temporaries", "short_error",
]
