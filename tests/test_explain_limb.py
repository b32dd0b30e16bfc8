"""Near the limb: hidden flare sources are counted apart, and the image-space neighbourhood
keeps an area comparable to central flares' where the heliographic one collapses."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from explain_data import Event, StrongFieldNet, predictions_of, write_events
from flarelens import geometry
from flarelens.explain import truth
from flarelens.explain.instances import Selection, select_instances
from flarelens.explain.run import ExplainSettings, explain_instances
from flarelens.explain.truth import read_regions

T0 = pd.Timestamp("2014-04-02T00:00:00Z")
SIZE = 128  # model input: fine enough for a few-degree cap near the limb to be a sliver, not a pixel
EVENTS = [
    Event(T0, -20.0, 10.0),  # central, visible
    Event(T0 + pd.Timedelta("40D"), 84.0, 10.0),  # west limb, visible
    # Catalog position E88 at a start 21 h after the image: ~11 deg behind the east limb
    # then. What the model can see is another active region, drawn at S20W30.
    Event(T0 + pd.Timedelta("80D"), -99.0, 10.0, hours=21.0, start_lon=-88.0, draw=[(30.0, -20.0)]),
    Event(T0 + pd.Timedelta("120D")),  # no flare
]


@pytest.fixture(scope="module")
def limb_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("limb")
    root = tmp / "images"
    labels, regions = write_events(root, EVENTS)
    regions.to_csv(root / "regions.csv", index=False)
    model = StrongFieldNet().eval()
    frame = select_instances(predictions_of(model, labels, root), Selection())
    settings = ExplainSettings(methods=("ig", "guided-gradcam"), n_steps=16, deletion=True, overlays=False,
                               comparison_rows=0)
    result = explain_instances(model, frame, root, tmp / "out", settings, image_size=SIZE,
                               regions=read_regions(root / "regions.csv"), progress=False)
    return frame, result, tmp / "out"


def _row(lon, lat, hours, time=T0):
    start = time + pd.Timedelta(hours=hours)
    return {"fl_lon": lon, "fl_lat": lat, "fl_start": start.isoformat(), "time": time}


def test_visibility_of_a_flare_source_at_the_image_time():
    assert truth.source_visible(_row(-88.0, 10.0, 21)) == 0.0  # E88, 21 h after the image: behind the limb
    assert truth.source_visible(_row(88.0, 10.0, 21)) == 1.0  # W88: it was further east, on the disk
    assert truth.source_visible(_row(5.0, -12.0, 21)) == 1.0  # central
    assert truth.source_visible(_row(-88.0, 10.0, 1)) == 1.0  # E88 an hour later: already on the disk
    assert np.isnan(truth.source_visible(_row(np.nan, np.nan, 3)))


def test_hidden_sources_are_counted_apart_and_never_averaged(limb_run):
    frame, result, out = limb_run
    table = pd.read_csv(out / "scores.csv")
    summary = json.loads((out / "summary.json").read_text())
    for m in ("ig", "guided-gradcam"):
        rows = table[table["method"] == m].reset_index(drop=True)
        np.testing.assert_array_equal(rows["visible"].to_numpy(), [1.0, 1.0, 0.0, np.nan])
        hidden = rows.loc[2]
        for col in ("mass", "hit", "area", "image_mass", "helio_mass", "gt_mass", "gt_hit"):
            assert np.isnan(hidden[col]), col
        # Where its attribution went instead: the strong-field region it can see.
        assert hidden["strong_mass"] > 3 * hidden["strong_area"]

        stats = summary["methods"][m]["all"]
        assert (stats["n"], stats["n_hidden"], stats["n_located"]) == (4, 1, 2)
        seen = rows[rows["visible"] != 0]
        assert stats["mass"] == pytest.approx(seen["mass"].mean())
        assert stats["image_mass"] == pytest.approx(seen["image_mass"].mean())
        assert stats["helio_mass"] == pytest.approx(seen["helio_mass"].mean())
        assert stats["gt_mass"] == pytest.approx(seen["gt_mass"].dropna().mean())
        assert stats["deletion_auc"] == pytest.approx(seen["deletion_auc"].mean())
        assert stats["strong_mass"] == pytest.approx(seen["strong_mass"].mean())
        assert stats["hidden_strong_mass"] == pytest.approx(hidden["strong_mass"])
        assert stats["hidden_strong_mass_random"] == pytest.approx(hidden["strong_area"])
        flaring = summary["methods"][m]["flaring"]
        assert (flaring["n"], flaring["n_hidden"]) == (3, 1)
        assert summary["methods"][m]["hidden"]["n"] == 1 and summary["methods"][m]["hidden"]["mass"] is None
    assert summary["hidden"] == 1


def _image_disc_share(time, lon, lat, radius):
    """On-disk pixels within ``radius`` solar radii of the flare pixel, over the disk (by hand)."""
    d = geometry.disk(time, SIZE)
    x, y = geometry.hg_to_pixel(lon, lat, time, SIZE)
    yy, xx = np.mgrid[0:SIZE, 0:SIZE]
    disk = (xx - d.cx) ** 2 + (yy - d.cy) ** 2 <= d.radius**2
    near = (xx - x) ** 2 + (yy - y) ** 2 <= (radius * d.radius) ** 2
    return (near & disk).sum() / disk.sum()


def test_image_neighbourhood_holds_at_the_limb(limb_run):
    frame, result, out = limb_run
    rows = pd.read_csv(out / "scores.csv").query("method == 'ig'").reset_index(drop=True)
    central, limb = rows.loc[0], rows.loc[1]
    for i, ev in enumerate(EVENTS[:2]):
        assert rows.loc[i, "image_area"] == pytest.approx(_image_disc_share(ev.time, ev.lon, ev.lat, truth.IMAGE_RADIUS))
    assert rows["image_radius"].iloc[0] == truth.IMAGE_RADIUS
    # At disk centre the two neighbourhoods are about the same size (sin 10 deg = 0.17 R) ...
    assert central["helio_area"] == pytest.approx(central["image_area"], rel=0.5)
    # ... at W84 the heliographic cap is a sliver, the image disc keeps a comparable area.
    assert limb["image_area"] > 0.3 * central["image_area"]
    assert limb["helio_area"] < 0.25 * limb["image_area"]
    # The default neighbourhood is the image one; mass/hit/area are its scores.
    assert (rows["neighbourhood"] == "image").all()
    np.testing.assert_array_equal(rows["mass"], rows["image_mass"])
    np.testing.assert_array_equal(rows["area"], rows["image_area"])


def test_heliographic_neighbourhood_stays_available(limb_run, tmp_path):
    frame, result, out = limb_run
    settings = ExplainSettings(methods=("ig",), n_steps=16, overlays=False, comparison_rows=0,
                               neighbourhood="heliographic", radius_deg=10.0)
    again = explain_instances(StrongFieldNet().eval(), frame, out.parent / "images", out, settings,
                              image_size=SIZE, progress=False)
    assert again.computed == 0  # scoring on another neighbourhood needs no new maps
    rows = again.scores
    np.testing.assert_array_equal(rows["mass"], rows["helio_mass"])
    assert again.summary["neighbourhood"] == "heliographic"
    assert again.summary["methods"]["ig"]["all"]["mass"] == pytest.approx(rows.loc[rows["visible"] == 1, "helio_mass"].mean())
