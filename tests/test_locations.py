"""Location analysis of X/M flare instances (central vs near-limb), recall cells and maps,
and ``flarelens locations``."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from flarelens.cli import main
from flarelens.errors import FlareLensError
from flarelens import geometry
from flarelens.predictions import read_predictions
from flarelens.locations import (
    LIMB_SPLIT_KEYS, cell_index, flare_instances, format_locations, location_analysis, recall_cells, recall_map,
    source_visible, write_locations,
)

# Our predictions: flare_prob, largest flare, its position.
#   X  lon 70    -> central, hit (0.5 >= threshold)
#   X  lon -70.5 -> limb, miss
#   X  unknown   -> unknown
#   M  lon -70   -> central, miss
#   M  lon 70.5  -> limb, hit
#   M  lon 0     -> central, hit
#   C  and none  -> ignored
OURS = """timestamp,file,flare_prob,target,goes_class,fl_lon,fl_lat,fold
2012-01-01T00:00:00Z,a.jpg,0.5,1,X1.0,70,10,1
2012-01-01T01:00:00Z,b.jpg,0.2,1,X2.0,-70.5,-12,1
2012-01-01T02:00:00Z,c.jpg,0.9,1,X1.5,,,1
2012-01-01T03:00:00Z,d.jpg,0.1,1,M1.0,-70,22,1
2012-01-01T04:00:00Z,e.jpg,0.8,1,M5.0,70.5,-3,1
2012-01-01T05:00:00Z,f.jpg,0.6,1,M1.2,0,0,1
2012-01-01T06:00:00Z,g.jpg,0.9,0,C9.9,80,5,1
2012-01-01T07:00:00Z,h.jpg,0.1,0,,,,1
"""

# The study's per-class files (no target column).
STUDY_X = """timestamp,flare_prob,goes_class,fl_location,flare_start
2014/02/24/HMI.m2014.02.24_01.00.00.jpg,0.4731437265872955,X4.9,"(-82, -12)",2014-02-25 00:39:00
2014/02/24/HMI.m2014.02.24_02.00.00.jpg,0.5557382702827454,X4.9,"(-82, -12)",2014-02-25 00:39:00
2011/02/15/HMI.m2011.02.15_00.00.00.jpg,0.8800902962684631,X2.2,"(15.115929105638052, -21)",2011-02-15 01:44:00
"""
STUDY_M = """timestamp,flare_prob,goes_class,fl_location,flare_start
2011/01/27/HMI.m2011.01.27_01.00.00.jpg,0.030943090096116,M1.3,"(90, 16)",2011-01-28 00:44:00
2011/02/15/HMI.m2011.02.15_02.00.00.jpg,0.7336145639419556,M1.0,"(23.992408425210893, -19.996672915156438)",2011-02-16 01:32:00
2011/02/17/HMI.m2011.02.17_22.00.00.jpg,0.4169191420078277,M6.6,"(57.899292924266774, -19)",2011-02-18 09:55:00
2011/02/18/HMI.m2011.02.18_00.00.00.jpg,0.6,M6.6,unk,unk
"""


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return path


STUDY_KEYS = ("central", "limb", "unknown")


def study_part(result):
    """The keys of the study's table (the visibility split is checked on its own)."""
    return {cls: {k: parts[k] for k in STUDY_KEYS} for cls, parts in result.items()}


def test_central_limb_split_at_exactly_70_degrees(tmp_path):
    result = location_analysis(read_predictions(write(tmp_path, "pred.csv", OURS)))
    assert study_part(result) == {
        "X": {"central": {"tp": 1, "fn": 0}, "limb": {"tp": 0, "fn": 1}, "unknown": 1},
        "M": {"central": {"tp": 1, "fn": 1}, "limb": {"tp": 1, "fn": 0}, "unknown": 0},
    }


def test_threshold_decides_hit_or_miss(tmp_path):
    result = location_analysis(write(tmp_path, "pred.csv", OURS), threshold=0.55)
    assert result["X"]["central"] == {"tp": 0, "fn": 1}  # 0.5 < 0.55 now a miss
    assert result["M"]["central"] == {"tp": 1, "fn": 1}


def test_study_per_class_files_pooled_with_ours(tmp_path):
    x, m = write(tmp_path, "x_class.csv", STUDY_X), write(tmp_path, "m_class.csv", STUDY_M)
    result = location_analysis([x, m])
    assert study_part(result) == {
        "X": {"central": {"tp": 1, "fn": 0}, "limb": {"tp": 1, "fn": 1}, "unknown": 0},
        "M": {"central": {"tp": 1, "fn": 1}, "limb": {"tp": 0, "fn": 1}, "unknown": 1},
    }
    pooled = location_analysis([read_predictions(write(tmp_path, "pred.csv", OURS)), x, m])
    assert pooled["X"]["limb"] == {"tp": 1, "fn": 2} and pooled["X"]["unknown"] == 1
    assert pooled["M"]["central"] == {"tp": 2, "fn": 2}


def test_flare_instances_selects_largest_flare_class(tmp_path):
    inst = flare_instances(write(tmp_path, "pred.csv", OURS))
    assert inst["flare_class"].tolist() == ["X", "X", "X", "M", "M", "M"]
    assert flare_instances(write(tmp_path, "p2.csv", OURS), classes=("C",))["goes_class"].tolist() == ["C9.9"]


def test_study_fold_file_has_no_positions(tmp_path):
    path = write(tmp_path, "fold1.csv", "timestamp,flare_prob,target\na,0.2,1\n")
    with pytest.raises(FlareLensError, match="no flare classes or positions"):
        location_analysis(path)


def test_cell_index_boundaries_go_toward_zero():
    values = [0, 4.9, 5, 5.1, 69.9, 70, 70.5, 90, -0.1, -5, -5.1, -70, -70.5, -90, np.nan]
    got = cell_index(values)
    assert got[:-1].tolist() == [0, 0, 0, 1, 13, 13, 14, 17, -1, -1, -2, -14, -15, -18]
    assert math.isnan(got[-1])
    assert cell_index([10, 10.01], cell=10).tolist() == [0, 1]


def test_recall_cells(tmp_path):
    cells = recall_cells([write(tmp_path, "x_class.csv", STUDY_X), write(tmp_path, "m_class.csv", STUDY_M)])
    by_cell = {(r.lon_min, r.lat_min): (r.tp, r.fn, r.no_hit) for r in cells.itertuples()}
    assert by_cell == {
        (-85.0, -15.0): (1, 1, False),  # (-82, -12): one hit, one miss
        (15.0, -25.0): (1, 0, False),   # (15.1, -21)
        (85.0, 15.0): (0, 1, True),     # (90, 16): limb, on the 90° boundary -> cell 85-90
        (20.0, -20.0): (1, 0, False),   # (23.99, -19.997)
        (55.0, -20.0): (0, 1, True),    # (57.9, -19)
    }
    assert (cells["lon_max"] - cells["lon_min"]).eq(5).all() and (cells["lat_max"] - cells["lat_min"]).eq(5).all()
    assert cells.loc[cells["lon_min"] == -85, "recall"].item() == 0.5
    assert int(cells["tp"].sum() + cells["fn"].sum()) == 6  # the unknown-position M instance is left out
    # +-70° fall in central cells
    ours = recall_cells(write(tmp_path, "pred.csv", OURS), classes=("M",))
    assert set(ours["lon_min"]) == {-70.0, 70.0, 0.0}


def test_recall_map_is_a_valid_png(tmp_path):
    out = recall_map([write(tmp_path, "x_class.csv", STUDY_X), write(tmp_path, "m_class.csv", STUDY_M)],
                     out_png=tmp_path / "maps" / "map.png")
    assert out == tmp_path / "maps" / "map.png"
    with Image.open(out) as im:
        im.verify()
    with Image.open(out) as im:
        assert im.format == "PNG" and im.size[0] > 400 and im.size[1] > 200
        pixels = np.asarray(im.convert("RGB")).astype(int)
    # the map is not blank: some strongly red pixels (stars, limb lines) and blue cells
    red = (pixels[..., 0] > 200) & (pixels[..., 1] < 60) & (pixels[..., 2] < 60)
    blue = (pixels[..., 2] > 100) & (pixels[..., 0] < 60)
    assert red.sum() > 50 and blue.sum() > 50
    assert not list((tmp_path / "maps").glob(".*part*"))  # no temporary file left behind


def test_write_locations_files(tmp_path):
    result = write_locations([write(tmp_path, "pred.csv", OURS)], tmp_path / "loc")
    assert json.loads((tmp_path / "loc" / "locations.json").read_text()) == result
    cells = pd.read_csv(tmp_path / "loc" / "recall_cells.csv")
    assert list(cells.columns) == ["classes", "lon_min", "lon_max", "lat_min", "lat_max", "tp", "fn", "recall", "no_hit"]
    assert set(cells["classes"]) == {"X", "M", "X+M"}
    xm = cells[cells["classes"] == "X+M"]
    assert int(xm["tp"].sum() + xm["fn"].sum()) == 5  # 6 X/M instances, one of unknown position
    for name in ("recall_map.png", "recall_map_X.png", "recall_map_M.png"):
        with Image.open(tmp_path / "loc" / name) as im:
            assert im.format == "PNG"


def test_format_locations(tmp_path):
    text = format_locations(location_analysis(write(tmp_path, "pred.csv", OURS)))
    rows = [line.split() for line in text.splitlines()[2:]]
    assert rows[0][:1] + rows[0][-3:] == ["X", "1", "0", "1.0000"]
    assert rows[1][:1] + rows[1][-3:] == ["X", "0", "1", "0.0000"]
    assert rows[2][:4] == ["X", "position", "unknown", "1"]
    assert rows[3][-3:] == ["1", "1", "0.5000"]


def test_cli_locations_json_and_out(tmp_path, capsys):
    x, m = write(tmp_path, "x_class.csv", STUDY_X), write(tmp_path, "m_class.csv", STUDY_M)
    assert main(["locations", str(x), str(m), "--json", "--out", str(tmp_path / "out")]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out) == {"X", "M"}
    for cls in out.values():
        assert set(cls) == {"central", "limb", "unknown", *LIMB_SPLIT_KEYS}
        assert all(set(cls[k]) == {"tp", "fn"} for k in ("central", "limb", *LIMB_SPLIT_KEYS))
        assert isinstance(cls["unknown"], int)
    # The study's X4.9 at E82 (both images) was behind the limb at the image times.
    assert out["X"]["limb_east_hidden"] == {"tp": 1, "fn": 1} and out["X"]["limb_visible"] == {"tp": 0, "fn": 0}
    assert out == location_analysis([x, m])
    assert json.loads((tmp_path / "out" / "locations.json").read_text()) == out
    assert (tmp_path / "out" / "recall_map.png").stat().st_size > 1000


def test_cli_locations_table_without_out_writes_nothing(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = write(tmp_path, "pred.csv", OURS)
    assert main(["locations", str(path), "--threshold", "0.55"]) == 0
    out = capsys.readouterr().out
    assert "central |lon|<=70°" in out and "position unknown" in out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pred.csv"]


@pytest.mark.parametrize(
    "text, message",
    [
        ("timestamp,flare_prob,target\na,0.2,1\n", "no flare classes or positions"),
        ("timestamp,flare_prob,goes_class,fl_location\na,0.2,X1.0,(100; 3)\n", "line 2"),
        ("timestamp,flare_prob,goes_class,fl_location\na,x,X1.0,unk\n", "flare_prob 'x'"),
    ],
)
def test_cli_locations_bad_input_one_line_exit_1(tmp_path, capsys, text, message):
    path = write(tmp_path, "p.csv", text)
    assert main(["locations", str(path), "--out", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith("flarelens locations: error:") and message in err
    assert not (tmp_path / "out").exists()


# --------------------------------------------------------------------------- visibility at the image time

# Our predictions with flare start times. Rotated back from the start to the image time:
#   X  E85, starting 20 h after the image -> ~E96: behind the limb (hidden), a hit
#   X  W85, starting 20 h after            -> ~W74: visible, a miss
#   M  E85, no start time                  -> taken as at the image time: visible, a miss
#   M  E80, starting 2 h after             -> ~E81: visible, a hit
#   M  W88, starting 23 h after            -> ~W75: visible, a miss
OURS_START = """timestamp,file,flare_prob,target,goes_class,fl_lon,fl_lat,fl_start,fold
2012-03-01T00:00:00Z,a.jpg,0.7,1,X1.0,-85,10,2012-03-01T20:00:00Z,1
2012-03-01T01:00:00Z,b.jpg,0.2,1,X2.0,85,-12,2012-03-01T21:00:00Z,1
2012-03-01T02:00:00Z,c.jpg,0.1,1,M1.0,-85,5,,1
2012-03-01T03:00:00Z,d.jpg,0.9,1,M3.0,-80,20,2012-03-01T05:00:00Z,1
2012-03-01T04:00:00Z,e.jpg,0.3,1,M1.0,88,-3,2012-03-02T03:00:00Z,1
"""


def test_limb_split_of_our_predictions_with_flare_starts(tmp_path):
    result = location_analysis(write(tmp_path, "pred.csv", OURS_START))
    assert result["X"]["limb"] == {"tp": 1, "fn": 1}
    assert result["X"]["limb_east_hidden"] == {"tp": 1, "fn": 0}
    assert result["X"]["limb_west_visible"] == {"tp": 0, "fn": 1}
    assert result["X"]["limb_hidden"] == {"tp": 1, "fn": 0} and result["X"]["limb_visible"] == {"tp": 0, "fn": 1}
    assert result["M"]["limb_east_visible"] == {"tp": 1, "fn": 1}
    assert result["M"]["limb_west_visible"] == {"tp": 0, "fn": 1}
    assert result["M"]["limb_hidden"] == {"tp": 0, "fn": 0}
    assert result["X"]["limb_east_visible"] == result["X"]["limb_west_hidden"] == {"tp": 0, "fn": 0}


def test_visibility_of_the_study_x4_9_behind_the_east_limb(tmp_path):
    # X4.9 of 2014-02-25 00:39 at E82: the images of 01:00 and 02:00 the day before are
    # ~23 h earlier, when the region sat ~13 degrees further east (differential rotation,
    # ~13.2 degrees a day at its latitude seen from Earth): E95, behind the limb (B0 -7°
    # does not bring it back). The M1.3 at W90 of 2011-01-28 00:44 was at ~W77 at 01:00
    # the day before: visible.
    inst = flare_instances([write(tmp_path, "x_class.csv", STUDY_X), write(tmp_path, "m_class.csv", STUDY_M)])
    seen = source_visible(inst)
    by_row = dict(zip(zip(inst["goes_class"], inst["timestamp"]), seen))
    assert by_row[("X4.9", "2014/02/24/HMI.m2014.02.24_01.00.00.jpg")] is np.False_
    assert by_row[("X4.9", "2014/02/24/HMI.m2014.02.24_02.00.00.jpg")] is np.False_
    assert by_row[("M1.3", "2011/01/27/HMI.m2011.01.27_01.00.00.jpg")] is np.True_
    assert by_row[("M6.6", "2011/02/18/HMI.m2011.02.18_00.00.00.jpg")] is np.False_  # position unknown
    # Image time from the path, flare start from flare_start (unk -> NaT).
    assert inst["time"].iloc[0] == pd.Timestamp("2014-02-24T01:00:00Z")
    assert inst["fl_start"].iloc[0] == pd.Timestamp("2014-02-25T00:39:00Z")
    assert inst["fl_start"].isna().tolist() == [False] * 6 + [True]


def random_predictions(n: int, seed: int) -> str:
    """Our predictions.csv with X and M flares anywhere on the front side, starting 0-24 h after the image."""
    rng = np.random.default_rng(seed)
    image = pd.Timestamp("2013-05-01T00:00:00Z") + pd.to_timedelta(rng.integers(0, 365 * 24, n), unit="h")
    start = image + pd.to_timedelta(rng.uniform(0, 24 * 60, n).round(), unit="min")
    lon = rng.uniform(-90, 90, n).round(1)
    lat = rng.uniform(-40, 40, n).round(1)
    lines = ["timestamp,file,flare_prob,target,goes_class,fl_lon,fl_lat,fl_start,fold"]
    for k in range(n):
        cls = ["X1.0", "M2.0", "C1.0"][k % 3]
        pos = ("", "") if k % 17 == 0 else (lon[k], lat[k])
        lines.append(f"{image[k]:%Y-%m-%dT%H:%M:%SZ},f{k}.jpg,{rng.uniform():.3f},1,{cls},{pos[0]},{pos[1]},"
                     f"{start[k]:%Y-%m-%dT%H:%M:%SZ},1")
    return "\n".join(lines) + "\n"


def test_limb_split_adds_up_to_the_near_limb_counts(tmp_path):
    path = write(tmp_path, "pred.csv", random_predictions(400, 1))
    result = location_analysis(path, threshold=0.5)
    frame = read_predictions(path)
    for cls, parts in result.items():
        limb = parts["limb"]
        for keys in (("limb_visible", "limb_hidden"),
                     ("limb_east_visible", "limb_east_hidden", "limb_west_visible", "limb_west_hidden")):
            for k in ("tp", "fn"):
                assert sum(parts[key][k] for key in keys) == limb[k], (cls, keys, k)
        # Visibility from its definition: the start position rotated to the image time has mu > 0.
        of = frame[frame["goes_class"].str[:1].eq(cls) & (frame["fl_lon"].abs() > 70)]
        lon_t, lat_t = geometry.position_at(of["fl_lon"], of["fl_lat"], of["fl_start"], of["time"])
        seen = geometry.mu(lon_t, lat_t, of["time"]) > 0
        hit = of["flare_prob"] >= 0.5
        east = of["fl_lon"] < 0
        assert parts["limb_hidden"] == {"tp": int((~seen & hit).sum()), "fn": int((~seen & ~hit).sum())}
        assert parts["limb_east_visible"] == {"tp": int((seen & east & hit).sum()), "fn": int((seen & east & ~hit).sum())}
        assert parts["limb_west_hidden"] == {"tp": int((~seen & ~east & hit).sum()), "fn": int((~seen & ~east & ~hit).sum())}
    # The draw has hidden and visible sources (else the test proves little). A west-limb
    # source starting after its image was further east then, so never hidden.
    x = result["X"]
    assert min(x[k]["tp"] + x[k]["fn"] for k in ("limb_east_hidden", "limb_east_visible", "limb_west_visible")) > 0
    assert x["limb_west_hidden"] == {"tp": 0, "fn": 0}


def test_instances_without_image_time_judge_visibility_from_the_position():
    inst = pd.DataFrame({"fl_lon": [-89.0, 60.0, np.nan], "fl_lat": [0.0, 10.0, 0.0],
                         "time": pd.to_datetime([None, None, None], utc=True),
                         "fl_start": pd.to_datetime([None, None, None], utc=True)})
    assert source_visible(inst).tolist() == [True, True, False]


def test_study_table_is_unchanged_and_the_split_printed_beside_it(tmp_path):
    x, m = write(tmp_path, "x_class.csv", STUDY_X), write(tmp_path, "m_class.csv", STUDY_M)
    lines = format_locations(location_analysis([x, m])).splitlines()
    assert lines[:8] == [
        "class region                      TP      FN   recall",
        "-----------------------------------------------------",
        "X     central |lon|<=70°           1       0   1.0000",
        "X     limb |lon|>70°               1       1   0.5000",
        "X     position unknown             0 instance(s)",
        "M     central |lon|<=70°           1       1   0.5000",
        "M     limb |lon|>70°               0       1   0.0000",
        "M     position unknown             1 instance(s)",
    ]
    rows = {tuple(line.split()[:2]): line.split()[2:] for line in lines[12:]}
    # class, side: visible TP FN recall, hidden TP FN recall
    assert rows[("X", "east")] == ["0", "0", "-", "1", "1", "0.5000"]
    assert rows[("X", "west")] == ["0", "0", "-", "0", "0", "-"]
    assert rows[("X", "both")] == ["0", "0", "-", "1", "1", "0.5000"]
    assert rows[("M", "west")] == ["0", "1", "0.0000", "0", "0", "-"]


def test_per_class_recall_maps_and_cells_hold_only_their_class(tmp_path):
    x, m = write(tmp_path, "x_class.csv", STUDY_X), write(tmp_path, "m_class.csv", STUDY_M)
    write_locations([x, m], tmp_path / "loc")

    def pixels(path):
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"))

    for classes, png in ((("X",), "recall_map_X.png"), (("M",), "recall_map_M.png"), (("X", "M"), "recall_map.png")):
        alone = recall_map([x, m], classes=classes, out_png=tmp_path / f"alone_{png}")
        assert np.array_equal(pixels(tmp_path / "loc" / png), pixels(alone)), png
    both = pixels(tmp_path / "loc" / "recall_map.png")
    for png in ("recall_map_X.png", "recall_map_M.png"):
        assert not np.array_equal(pixels(tmp_path / "loc" / png), both)
    cells = pd.read_csv(tmp_path / "loc" / "recall_cells.csv")
    count = cells.groupby("classes")[["tp", "fn"]].sum().sum(axis=1).to_dict()
    assert count == {"X": 3, "M": 3, "X+M": 6}  # STUDY_M's fourth instance has no position
