"""Logging set-up for the command line: one handler on stderr, rank 0 only under torchrun.

Library modules log through ``logging.getLogger(__name__)`` and never configure logging
themselves, so a notebook user keeps control of where messages go.
"""

from __future__ import annotations

import logging
import os
import sys

from flarelens import progress

ROOT = "flarelens"


class _TqdmHandler(logging.StreamHandler):
    """Writes records through tqdm so that a bar being drawn is not torn apart."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            progress.write(self.format(record))
        except Exception:  # pragma: no cover - logging must never raise
            self.handleError(record)


def setup(quiet: bool = False, verbose: bool = False) -> None:
    """Configure the ``flarelens`` logger: INFO to stderr (WARNING with ``quiet``).

    Under ``torchrun`` only rank 0 (``RANK`` unset or 0) logs below WARNING, so a
    four-process run prints each line once.
    """
    progress.QUIET = quiet
    logger = logging.getLogger(ROOT)
    for handler in list(logger.handlers):
        if isinstance(handler, _TqdmHandler):
            logger.removeHandler(handler)
    handler = _TqdmHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    rank = int(os.environ.get("RANK", "0") or 0)
    # The level sits on the terminal handler, not the logger, so that a file handler
    # (train.log) still records every INFO line under --quiet.
    handler.setLevel(logging.WARNING if quiet or rank != 0 else (logging.DEBUG if verbose else logging.INFO))
    logger.setLevel(logging.DEBUG if verbose else logging.INFO)
    logger.addHandler(handler)
    logger.propagate = False


def add_file(path, level: int = logging.INFO) -> logging.Handler:
    """Also log to ``path`` (appending, time-stamped); return the handler to remove later."""
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%Y-%m-%d %H:%M:%S"))
    handler.setLevel(level)
    logging.getLogger(ROOT).addHandler(handler)
    return handler
