"""Shared pytest set-up: the ``--runslow`` switch and a small labelled image set."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from flarelens.images import image_relpath
from flarelens.labels import fold_of


def pytest_addoption(parser):
    parser.addoption("--runslow", action="store_true", help="also run tests marked slow")


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: slow test, run only with --runslow")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--runslow"):
        return
    skip = pytest.mark.skip(reason="slow; run with --runslow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


def write_toy_dataset(root, n=48, size=64, seed=0, start="2011-01-01", cadence="61D") -> pd.DataFrame:
    """Write ``n`` toy full-disk images under ``root`` and return their labels table.

    Each image is a gray disk (0 G = 128, off-disk 0) with a few weak bipoles; flaring
    instances (every third) carry one strong bipole at a random on-disk place, so a model
    can learn the difference. Times step by ``cadence`` so every fold gets rows.
    """
    rng = np.random.default_rng(seed)
    times = pd.date_range(start, periods=n, freq=cadence, tz="UTC")
    yy, xx = np.mgrid[0:size, 0:size]
    c, r = (size - 1) / 2, 0.45 * size
    on_disk = (xx - c) ** 2 + (yy - c) ** 2 <= r**2
    rows = []
    for i, t in enumerate(times):
        field = rng.normal(0, 15, (size, size))
        target = int(i % 3 == 0)
        for strength in ([900] if target else []) + [150, 150]:
            ang, rad = rng.uniform(0, 2 * np.pi), rng.uniform(0, 0.7 * r)
            x0, y0 = c + rad * np.cos(ang), c + rad * np.sin(ang)
            s = size / 20
            for sign, dx in ((1, -s), (-1, s)):
                field += sign * strength * np.exp(-((xx - x0 - dx) ** 2 + (yy - y0) ** 2) / (2 * s**2))
        pixels = np.where(on_disk, np.clip(field, -250, 250) / 250 * 127.5 + 127.5, 0)
        rel = image_relpath(t, ".png")
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.round(pixels).astype(np.uint8)).save(path)
        rows.append({
            "timestamp": t.strftime("%Y-%m-%dT%H:%M:%SZ"), "file": rel, "target": target,
            "goes_class": "M2.0" if target else "", "peak_flux": 2e-5 if target else 0.0,
            "fl_lon": 10.0 if target else np.nan, "fl_lat": -15.0 if target else np.nan,
            "fl_start": "", "other_flares": "",
        })
    labels = pd.DataFrame(rows)
    labels["fold"] = fold_of(labels["timestamp"])
    return labels


@pytest.fixture
def toy_dataset(tmp_path):
    """(image root, labels DataFrame, labels.csv path) of 48 toy 64² PNG images."""
    root = tmp_path / "images"
    labels = write_toy_dataset(root)
    path = tmp_path / "labels.csv"
    labels.to_csv(path, index=False)
    return root, labels, path
