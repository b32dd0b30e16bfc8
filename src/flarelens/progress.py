"""Progress bars that stay out of log files.

A bar is shown only when stderr is a terminal and the user did not ask for quiet output:
redirected to a file (a SLURM log, ``predict > log``) a bar would write one frame per update.
"""

from __future__ import annotations

import sys

#: Set by the CLI's ``--quiet``; library callers may set it too.
QUIET = False


def enabled(requested: bool = True) -> bool:
    """Whether a bar should be drawn: requested, not quiet, and stderr is a terminal."""
    if not requested or QUIET:
        return False
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


def bar(iterable=None, *, progress: bool = True, **kwargs):
    """A ``tqdm`` bar over ``iterable`` (or a manual one), disabled where :func:`enabled` says so."""
    from tqdm.auto import tqdm

    kwargs["disable"] = kwargs.get("disable", False) or not enabled(progress)
    return tqdm(iterable, **kwargs)


def write(line: str) -> None:
    """Print ``line`` to stderr without breaking a bar that is being drawn."""
    from tqdm.auto import tqdm

    tqdm.write(line, file=sys.stderr)
