"""Outputs remember the settings they were made with, and refuse to be mixed with others.

A step that writes into a directory over several runs (simulated images, explanation
maps, a demo's run directory) records its settings in a small JSON file there; a later run
with other settings must not add to or reuse those outputs silently. One function does
that check for every step: :func:`check_same_settings`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from flarelens.errors import FlareLensError
from flarelens.fileio import write_text


class SettingsMismatch(FlareLensError):
    """The outputs at a path were made with other settings; ``keys`` lists those that differ."""

    def __init__(self, message: str, keys: list[str]):
        super().__init__(message)
        self.keys = keys


def read_settings(path: str | os.PathLike, what: str = "outputs",
                  hint: str = "delete it or use another --out") -> dict | None:
    """The settings recorded at ``path`` (a JSON object), None when there is no such file.

    A file that is not a readable JSON object raises one clear line (``what`` names the
    outputs it describes, e.g. "maps"; ``hint`` says what to do).
    """
    path = Path(path)
    if not path.exists():
        return None
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
        raise FlareLensError(f"{path}: damaged settings file of the {what} there ({reason}); {hint}") from None
    if not isinstance(saved, dict):
        raise FlareLensError(f"{path}: damaged settings file of the {what} there (not a JSON object); {hint}")
    return saved


def differing_keys(saved: dict, current: dict) -> list[str]:
    """Sorted keys whose values differ between two settings dicts (missing counts as different)."""
    return sorted(k for k in set(saved) | set(current) if saved.get(k, _MISSING) != current.get(k, _MISSING))


_MISSING = object()


def check_same_settings(path: str | os.PathLike, current: dict, what: str = "outputs",
                        hint: str = "use another --out or the same settings", write: bool = True) -> None:
    """Refuse outputs made with other settings; otherwise record ``current`` at ``path``.

    ``path``: the settings file (e.g. ``OUT/settings.json``); ``current``: this run's
    settings (JSON-safe dict); ``what``: the outputs, for the message ("maps", "images
    simulated"). When ``path`` holds other settings, raises :class:`SettingsMismatch`
    (one line naming each differing key with its old and new value, then ``hint``);
    a damaged file raises :class:`~flarelens.errors.FlareLensError`. With ``write``
    (default) the current settings are written (atomically) when none were recorded.
    """
    path = Path(path)
    saved = read_settings(path, what, hint)
    if saved is not None:
        keys = differing_keys(saved, current)
        if keys:
            changes = ", ".join(f"{k} {_short(saved.get(k))} there, {_short(current.get(k))} now" for k in keys)
            raise SettingsMismatch(f"{path.parent} holds {what} made with other settings ({changes}); {hint}", keys)
        return
    if write:
        write_text(json.dumps(current, indent=1) + "\n", path)


def _short(value, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."
