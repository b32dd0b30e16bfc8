"""Small image sets with known flare positions for the explain tests, and a model that
looks at strong field.

Images are 64 px full-disk magnetograms (0 G = 128, off-disk 0) with a bipole wherever a
region is drawn; the labels give each flare's catalog-style position at its start time,
which lies some hours after the image, as real labels do.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from flarelens import geometry
from flarelens.explain.methods import NEUTRAL
from flarelens.images import image_relpath

FILE_SIZE = 64  # images on disk
MODEL_SIZE = 32  # what the model sees


class StrongFieldNet(nn.Module):
    """Flare logit grows with the area of strong positive field (the sky, 0, reads as
    strong negative field, so it is left out): a model that should look at active
    regions. 3x3 convs, ReLUs, global pooling, a linear head."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3, padding=1)
        self.relu = nn.ReLU()
        self.conv2 = nn.Conv2d(2, 2, 1)
        self.relu2 = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(2, 2)
        with torch.no_grad():
            w = torch.zeros(2, 1, 3, 3)
            w[0, 0] = 1 / 9
            w[1, 0, 1, 1] = 1.0
            self.conv.weight.copy_(w)
            self.conv.bias.copy_(torch.tensor([-NEUTRAL - 0.15, -NEUTRAL - 0.3]))
            self.conv2.weight.copy_(torch.tensor([[1.0, 0.5], [0.5, 1.0]])[:, :, None, None])
            self.conv2.bias.zero_()
            self.head.weight.copy_(torch.tensor([[0.0, 0.0], [2000.0, 2000.0]]))
            self.head.bias.copy_(torch.tensor([0.0, -2.0]))

    def forward(self, x):
        x = self.relu2(self.conv2(self.relu(self.conv(x))))
        return self.head(torch.flatten(self.pool(x), 1))


@dataclass
class Event:
    """One image: a flare (or none) and the bipoles drawn on it.

    ``lon``/``lat``: the flare's position at the image time (degrees); ``hours``: its start
    after the image; ``start_lon``: the catalog longitude at the start (default: ``lon``
    rotated forward by ``hours``); ``draw``: positions (lon, lat at the image time) of the
    bipoles drawn (default: the flare's, when it is on the visible disk).
    """

    time: pd.Timestamp
    lon: float | None = None
    lat: float | None = None
    hours: float = 6.0
    start_lon: float | None = None
    draw: list | None = None
    goes_class: str = "M3.1"


def _bipole(field, x, y, size):
    yy, xx = np.mgrid[0:size, 0:size]
    for sign, dx in ((1, -2.5), (-1, 2.5)):
        field += sign * 200 * np.exp(-((xx - x - dx) ** 2 + (yy - y) ** 2) / (2 * 2.2**2))


def write_events(root, events: list[Event], seed=0):
    """Write one image per event under ``root``; return (labels, regions) frames.

    regions.csv (simulate's format) gets one row per image: the flaring region (radius 5 px)
    where the flare is drawn, else a quiet row.
    """
    rng = np.random.default_rng(seed)
    rows, regions = [], []
    for i, ev in enumerate(events):
        t = pd.Timestamp(ev.time)
        disk = geometry.disk_mask(t, FILE_SIZE)
        field = 128 + rng.normal(0, 4, (FILE_SIZE, FILE_SIZE))
        flaring = ev.lon is not None
        draw = ev.draw if ev.draw is not None else ([(ev.lon, ev.lat)] if flaring else [])
        for lon, lat in draw:
            x, y = geometry.hg_to_pixel(lon, lat, t, FILE_SIZE)
            if np.isfinite(x):
                _bipole(field, x, y, FILE_SIZE)
        pixels = np.where(disk, np.clip(field, 0, 255), 0).round().astype(np.uint8)
        rel = image_relpath(t, ".png")
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels).save(root / rel)
        start = t + pd.Timedelta(hours=ev.hours)
        if flaring:
            start_lon = ev.start_lon if ev.start_lon is not None else float(geometry.rotate(ev.lon, ev.lat, t, start))
        rows.append({
            "timestamp": t.strftime("%Y-%m-%dT%H:%M:%SZ"), "file": rel, "target": int(flaring),
            "goes_class": ev.goes_class if flaring else "", "peak_flux": 3.1e-5 if flaring else 0.0,
            "fl_lon": start_lon if flaring else np.nan, "fl_lat": ev.lat if flaring else np.nan,
            "fl_start": start.strftime("%Y-%m-%dT%H:%M:%SZ") if flaring else "", "other_flares": "",
            "fold": int(t.quarter),
        })
        x, y = geometry.hg_to_pixel(ev.lon, ev.lat, t, FILE_SIZE) if flaring else (np.nan, np.nan)
        regions.append({
            "timestamp": rows[-1]["timestamp"], "file": rel, "region_id": i, "noaa_ar": 0,
            "lon": ev.lon if flaring else np.nan, "lat": ev.lat if flaring else np.nan,
            "x": x, "y": y, "radius_px": 5.0, "mu": 0.5, "max_class_24h": ev.goes_class if flaring else "",
            "max_flux_24h": 3.1e-5 if flaring and np.isfinite(x) else 0.0,
        })
    return pd.DataFrame(rows), pd.DataFrame(regions)


def write_flare_dataset(root, n=8, seed=0):
    """Images whose only strong field is a bipole where the labelled flare will be.

    Flaring rows (every other) carry the flare at a known (lon, lat) at the image time;
    the labels give the catalog-style position at the flare start 6 h later, as a real
    label would. Returns (labels frame, regions frame, positions at image time).
    """
    times = pd.date_range("2014-03-01", periods=n, freq="37D", tz="UTC")
    events, truth = [], {}
    for i, t in enumerate(times):
        if i % 2 == 0:
            lon, lat = [(-40.0, 15.0), (20.0, -25.0), (76.0, 10.0)][i // 2 % 3]
            events.append(Event(t, lon, lat))
            truth[t.strftime("%Y-%m-%dT%H:%M:%SZ")] = (lon, lat)
        else:
            events.append(Event(t))
    labels, regions = write_events(root, events, seed)
    return labels, regions, truth


def predictions_of(model, labels: pd.DataFrame, root) -> pd.DataFrame:
    """predictions.csv rows of ``labels`` with ``model``'s flare probability at MODEL_SIZE."""
    from flarelens.data import read_image, resize_image

    with torch.no_grad():
        x = torch.stack([resize_image(read_image(root / f), MODEL_SIZE) for f in labels["file"]]).float() / 255
        probs = torch.softmax(model(x), dim=1)[:, 1].numpy()
    pred = labels.copy()
    pred.insert(2, "flare_prob", probs)
    return pred


class AwkwardNet(nn.Module):
    """What breaks DeepLift: a functional ReLU in forward and one ReLU module called twice."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 4, 3, padding=1)
        self.conv2 = nn.Conv2d(4, 4, 3, padding=1)
        self.act = nn.ReLU()
        self.head = nn.Linear(4, 2)

    def forward(self, x):
        x = F.relu(self.conv1(x))
        x = self.act(self.conv2(x))
        x = self.act(F.avg_pool2d(x, 2) - 0.1)
        return self.head(x.mean(dim=(2, 3)))
