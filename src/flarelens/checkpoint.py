"""Training checkpoints: one file holding everything needed to predict, explain or resume.

Layout of a checkpoint (a plain dict; only tensors, numbers, strings, lists, dicts, None,
so ``torch.load(path, weights_only=True)`` reads it without unpickling arbitrary objects)::

    {
      "format": "flarelens-checkpoint", "version": 1,
      "flarelens_version": "0.1.0", "torch_version": "2.x",
      "model": state dict of the plain model (no DDP / torch.compile prefixes),
      "optimizer": optimizer.state_dict(),
      "scheduler": scheduler.state_dict(),
      "scaler": GradScaler.state_dict() or None (fp16 mixed precision only),
      "epoch": number of completed epochs,
      "config": the run's config.json (JSON-safe dict: the settings — model, image_size, fold,
                seed, inner, gap, window, select, recipe, ... — and the run's facts:
                class_weights, train_base_rate, rows, recipe_overrides),
      "history": [one dict per completed epoch: the columns of history.csv],
      "best": {"epoch": int, "inner_tss": float, "select": "best"|"last"} (the epoch best.pt
              holds: the highest inner TSS, or the last epoch),
      "rng": {"torch": uint8 tensor, "cuda": [uint8 tensor per device],
              "numpy": {"keys": int64 tensor, "pos", "has_gauss", "cached_gaussian"},
              "python": [version, [ints], gauss]},
      "rng_ranks": [the same per process, by rank] (distributed runs only),
    }
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
import torch
from torch import nn

from flarelens import __version__
from flarelens.errors import FlareLensError
from flarelens.fileio import atomic_path

FORMAT = "flarelens-checkpoint"
VERSION = 1


def rng_state() -> dict:
    """The states of the torch (CPU and CUDA), numpy and Python global generators, as tensors and primitives."""
    version, internal, gauss = random.getstate()
    np_state = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": list(torch.cuda.get_rng_state_all()) if torch.cuda.is_available() else [],
        "numpy": {
            "keys": torch.from_numpy(np_state[1].astype(np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "python": [version, list(internal), gauss],
    }


def set_rng_state(state: dict) -> None:
    """Restore generator states saved by :func:`rng_state`."""
    torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])
    npst = state["numpy"]
    np.random.set_state(("MT19937", npst["keys"].numpy().astype(np.uint32), npst["pos"], npst["has_gauss"], npst["cached_gaussian"]))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))


def json_safe(value):
    """``value`` with paths as strings and tuples as lists, for a checkpoint's config."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    if isinstance(value, str):
        return str(value)  # plain str: subclasses (e.g. TorchVersion) do not load with weights_only
    if isinstance(value, bool):
        return bool(value)
    if value is None or isinstance(value, (int, float)):
        return value
    raise TypeError(f"cannot store {type(value).__name__} {value!r} in a checkpoint config")


def save_checkpoint(
    path: str | os.PathLike,
    *,
    model: nn.Module,
    optimizer=None,
    scheduler=None,
    scaler=None,
    epoch: int,
    config: dict,
    history: list[dict],
    best: dict | None = None,
    rng: dict | None = None,
    rng_ranks: list[dict] | None = None,
) -> Path:
    """Write a checkpoint atomically (a crash never leaves a truncated file).

    ``rng_ranks`` (distributed runs): the generator states of every process, by rank.
    """
    from flarelens.models import unwrap

    state = {
        "format": FORMAT,
        "version": VERSION,
        "flarelens_version": __version__,
        "torch_version": str(torch.__version__),
        "model": {k: v.detach().cpu() for k, v in unwrap(model).state_dict().items()},
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "scaler": scaler.state_dict() if scaler is not None and scaler.is_enabled() else None,
        "epoch": int(epoch),
        "config": json_safe(config),
        "history": json_safe(history),
        "best": json_safe(best or {}),
        "rng": rng if rng is not None else rng_state(),
    }
    if rng_ranks is not None:
        state["rng_ranks"] = rng_ranks
    # Through a Python file object: a full disk then raises OSError(ENOSPC), where torch's
    # own file writer reports it as "unexpected pos ...".
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        torch.save(state, fh)
    return Path(path)


def load_checkpoint(path: str | os.PathLike, map_location="cpu") -> dict:
    """Read a checkpoint with ``torch.load(weights_only=True)``; check it is one of ours."""
    path = Path(path)
    if not path.is_file():
        raise FlareLensError(f"{path}: no such checkpoint (train one with `flarelens train`, which writes RUN_DIR/best.pt)")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - truncated file, foreign pickle, ...
        # torch's messages run over many lines: the first names the problem.
        first = next((line.strip() for line in str(exc).splitlines() if line.strip()), "")[:200]
        raise FlareLensError(
            f"{path}: cannot read checkpoint ({exc.__class__.__name__}: {first}); give a best.pt or last.pt written by "
            "`flarelens train`"
        ) from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise FlareLensError(f"{path}: not a flarelens checkpoint (written by `flarelens train`)")
    if state.get("version", 0) > VERSION:
        raise FlareLensError(f"{path}: checkpoint version {state['version']} is newer than this flarelens reads ({VERSION}); upgrade flarelens")
    return state


def load_model(path: str | os.PathLike, device="cpu") -> tuple[nn.Module, dict]:
    """The model of a checkpoint, in eval mode on ``device``, and its run configuration.

    The configuration holds at least ``model``, ``image_size``, ``fold`` and ``seed``.
    """
    from flarelens.models import build_model

    state = load_checkpoint(path)
    config = dict(state["config"])
    model = build_model(config["model"], image_size=int(config["image_size"]), init=config.get("init", "kaiming-normal"))
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as exc:
        raise FlareLensError(f"{path}: model state does not fit model {config['model']} ({exc})") from None
    model.to(device).eval()
    return model, config
