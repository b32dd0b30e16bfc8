"""Download HMI magnetograms (JPEG 2000) from the Helioviewer API.

For each requested UTC time the API is asked for the closest image of the data source
(``getClosestImage``); an image further away than the tolerance is recorded as missing,
otherwise its JP2 file (``getJP2Image``) is saved under the image root with the naming
convention of :mod:`flarelens.images`, named by the *requested* time (the observed time
goes to the manifest). A file already there and a complete JP2 is skipped.

Only what is Helioviewer's lives here: the two API calls, their answers and the JP2 check.
The running — resume from the manifest, retries with backoff, rate limit, a bound on each
request's total time, temporary files, stopping on Ctrl-C — is :mod:`flarelens.fetch`'s,
shared with any other source.

The request parameters and endpoint URLs come from hvpy (the Helioviewer project's
client): its parameter models validate the source id and format the dates as the API
expects. The HTTP calls themselves go through :class:`flarelens.fetch.HttpFetcher`
because hvpy's ``execute_api_call`` sets no timeout (a stalled server would hang a worker
forever), does not stream (a 4096² JP2 is held in memory and a dropped connection cannot
be told from a short file) and does not retry.
"""

from __future__ import annotations

import logging
import os
from functools import partial
from pathlib import Path

import pandas as pd

from flarelens import __version__
from flarelens.errors import FlareLensError
from flarelens.fetch import (
    MANIFEST_COLUMNS,
    STATUSES,
    DownloadSummary,
    HttpFetcher,
    PermanentError,
    RateLimiter,
    RetryPolicy,
    check_settings,
    fetch_all,
    manifest_row,
    read_manifest,
)
from flarelens.images import image_relpath
from flarelens.labels import sample_times

logger = logging.getLogger(__name__)

#: Helioviewer's source id of SDO/HMI line-of-sight magnetograms.
HMI_MAGNETOGRAM_SOURCE_ID = 19

_JP2_SIGNATURE = b"\x00\x00\x00\x0cjP  \r\n\x87\n"


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
    """The two Helioviewer calls the download needs, through an :class:`HttpFetcher`
    (retries, a bound on each request's total time, the rate limit). Thread-safe."""

    def __init__(self, url: str | None = None, policy: RetryPolicy | None = None,
                 rate: float | None = 5.0, fetcher: HttpFetcher | None = None):
        self.base = api_url(url)
        if not self.base.startswith(("http://", "https://")):
            raise FlareLensError(f"Helioviewer API URL {self.base!r} must start with http:// or https:// "
                                 "(check HELIOVIEWER_API_URL)")
        self.fetcher = fetcher or HttpFetcher(policy, rate, user_agent=f"flarelens/{__version__} (hvpy; research download)")

    def stop(self) -> None:
        """Cut the requests in flight and make waiting retries give up at once (after Ctrl-C)."""
        self.fetcher.stop()

    def closest_image(self, when, source_id: int = HMI_MAGNETOGRAM_SOURCE_ID):
        """``getClosestImage`` for a UTC time: the API's JSON (id, date, name, scale, width,
        height, ...), a dict with an ``error`` key when the API says it has no image, or
        whatever else the server sent as JSON (the caller checks it)."""
        from hvpy.parameters import getClosestImageInputParameters

        params = getClosestImageInputParameters(date=_naive_utc(pd.Timestamp(when)), sourceId=source_id)
        return self.fetcher.get_json(_endpoint(params, self.base), params.model_dump(),
                                     what=f"getClosestImage {pd.Timestamp(when):%Y-%m-%d %H:%M:%S}")

    def download_jp2(self, observed, dest: str | os.PathLike,
                     source_id: int = HMI_MAGNETOGRAM_SOURCE_ID) -> int:
        """Save the JP2 observed at ``observed`` (UTC, as ``closest_image`` reported it) to
        ``dest``; return its size in bytes. The bytes go to a temporary file beside ``dest``
        that is renamed to ``dest`` only when complete and a valid JP2; an interrupted
        download is retried from the start."""
        from hvpy.parameters import getJP2ImageInputParameters

        params = getJP2ImageInputParameters(date=_naive_utc(pd.Timestamp(observed)), sourceId=source_id)
        return self.fetcher.get_file(_endpoint(params, self.base), dest, params.model_dump(),
                                     what=f"getJP2Image {pd.Timestamp(observed):%Y-%m-%d %H:%M:%S}",
                                     check=is_complete_jp2, kind="JP2 file")


def observed_time(answer) -> pd.Timestamp:
    """The image time (UTC) of a ``getClosestImage`` answer; :class:`PermanentError` with a
    clear message for an answer without a usable ``date``."""
    if not isinstance(answer, dict):
        raise PermanentError(f"unexpected getClosestImage answer {str(answer)[:80]!r}")
    value = answer.get("date")
    try:
        stamp = pd.Timestamp(value) if isinstance(value, str) and value.strip() else pd.NaT
    except (ValueError, TypeError, OverflowError):
        stamp = pd.NaT
    if stamp is pd.NaT:
        raise PermanentError(f"getClosestImage answered no usable image date ({repr(value)[:80]})")
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def _process_time(client: HelioviewerClient, requested: pd.Timestamp, previous: dict | None, *, out: Path,
                  tolerance: pd.Timedelta, source_id: int) -> dict:
    """The manifest row of one requested time, after doing whatever it needs."""
    rel = image_relpath(requested, ".jp2")
    dest = out / rel
    if is_complete_jp2(dest):
        observed = (previous or {}).get("observed") or _observed_from_header(dest)
        return manifest_row(requested, observed, rel, "skipped", dest.stat().st_size)
    try:
        answer = client.closest_image(requested, source_id)
        if isinstance(answer, dict) and ("error" in answer or "date" not in answer):
            return manifest_row(requested, status="missing",
                                message=str(answer.get("error", "no image in the answer"))[:200])
        observed = observed_time(answer)
        gap = abs(observed - requested)
        if gap > tolerance:
            return manifest_row(requested, observed, status="missing",
                                message=f"closest image is {_minutes(gap)} away (tolerance {_minutes(tolerance)})")
        nbytes = client.download_jp2(observed, dest, source_id)
        return manifest_row(requested, observed, rel, "downloaded", nbytes)
    except PermanentError as exc:
        return manifest_row(requested, status="failed", message=str(exc))
    except OSError as exc:  # the local disk (full, permissions): the server is not to blame
        return manifest_row(requested, status="failed", message=f"cannot write {dest}: {exc}")


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

    ``tolerance``: the largest |observed - requested| accepted (> 0); beyond it the time is
    recorded as missing. ``workers``: requests in flight at once; ``rate``: at most this
    many requests started per second overall (None: no limit). ``retries`` / ``backoff``
    (seconds, doubled each retry) govern transient failures; ``timeout`` bounds each
    request's total time in seconds. After ``max_consecutive_failures`` times in a row fail
    (the server is down, say) the run stops early. Every outcome is appended to ``manifest``
    (default ``out/manifest.csv``) as it happens; at the end the manifest is rewritten with
    one row per time. Running the same call again skips complete files and retries the rest.
    All settings are checked before anything is fetched or written.
    """
    times = sample_times(start, end, cadence)
    tolerance = _parse_tolerance(tolerance)
    check_settings(workers, rate, retries, backoff, timeout)
    _check_source(source_id)
    client = HelioviewerClient(url, RetryPolicy(retries=retries, backoff=backoff, timeout=timeout), rate)
    process = partial(_process_time, client, out=Path(out), tolerance=tolerance, source_id=source_id)
    return fetch_all(times, process, out, client.fetcher, manifest=manifest, workers=workers,
                     max_consecutive_failures=max_consecutive_failures, progress=progress)


def _parse_tolerance(value) -> pd.Timedelta:
    try:
        delta = pd.Timedelta(value)
    except (ValueError, TypeError):
        raise FlareLensError(f"cannot read tolerance {value!r} (expected e.g. 12min, 30s, 1h)") from None
    if delta is pd.NaT or delta <= pd.Timedelta(0):
        raise FlareLensError(f"tolerance must be positive (e.g. 12min), got {value!r}")
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
    "HMI_MAGNETOGRAM_SOURCE_ID", "MANIFEST_COLUMNS", "STATUSES", "DownloadSummary", "HelioviewerClient",
    "RateLimiter", "RetryPolicy", "api_url", "download", "is_complete_jp2", "observed_time", "read_manifest",
]
