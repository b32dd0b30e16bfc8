"""flarelens.locations: the cases mutation testing found unguarded (see docs/mutation-notes/locations.md).

Expected values come from the documented rules (cell k covers [k·cell, (k+1)·cell], recall
TP/(TP+FN), axes at least -90..90 by -40..40) worked out by hand for a few flares.
"""

from __future__ import annotations

import logging

import matplotlib.figure
import numpy as np
import pandas as pd
import pytest
from matplotlib.colors import to_rgba

from flarelens.errors import FlareLensError
from flarelens.locations import (
    LIMB_SPLIT_KEYS, check_cell, flare_instances, format_locations, location_analysis, recall_cells, recall_map,
    source_visible, write_locations,
)

HEADER = "timestamp,file,flare_prob,target,goes_class,fl_lon,fl_lat,fold\n"

# Hand-placed flares (5° cells):
#   two X at (12, 7): one hit, one miss  -> cell lon 10..15, lat 5..10, recall 0.5
#   one M at (-33, -22), a miss          -> cell lon -35..-30, lat -25..-20, recall 0, red star at (-32.5, -22.5)
#   one M of unknown position            -> left out of the map, named in its legend
#   one C at (80, 5), a hit              -> never counted for X/M, only when C is asked for
PLACED = HEADER + """2012-01-01T00:00:00Z,a.jpg,0.9,1,X1.0,12,7,1
2012-01-01T01:00:00Z,b.jpg,0.1,1,X2.0,12,7,1
2012-01-01T02:00:00Z,c.jpg,0.1,1,M1.0,-33,-22,1
2012-01-01T03:00:00Z,d.jpg,0.5,1,M3.0,,,1
2012-01-01T04:00:00Z,e.jpg,0.9,0,C5.0,80,5,1
"""


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.fixture
def drawn(monkeypatch):
    """Keep each Figure that recall_map saves, so its content can be checked (after drawing)."""
    figures = []
    save = matplotlib.figure.Figure.savefig

    def keep(fig, *args, **kwargs):
        save(fig, *args, **kwargs)
        figures.append(fig)

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", keep)
    return figures


# --- flare_instances ------------------------------------------------------------------


def test_study_fold_file_error_names_the_file(tmp_path):
    # The user must learn WHICH of several files is a fold file, and what to pass instead.
    path = write(tmp_path, "fold3.csv", "timestamp,flare_prob,target\na,0.2,1\n")
    with pytest.raises(FlareLensError, match=r"fold3\.csv: has no flare classes or positions \(study fold file\); "
                                             r"the location analysis needs our predictions\.csv"):
        flare_instances(path)


def test_instances_carry_their_file_path(tmp_path):
    # 'path' tells pooled files apart: it is the file each instance came from.
    a = write(tmp_path, "a.csv", PLACED)
    inst = flare_instances(a)
    assert inst["path"].tolist() == [str(a)] * 4  # X, X, M, M; the C flare is not an X/M instance
    assert inst["flare_class"].tolist() == ["X", "X", "M", "M"]
    assert str(inst["time"].dt.tz) == "UTC"


# --- location_analysis ----------------------------------------------------------------


def test_other_classes_can_be_analysed_and_lower_case_is_accepted(tmp_path):
    # classes=("c",): the C flare at lon 80 is a near-limb hit; X and M flares are not counted.
    result = location_analysis(write(tmp_path, "p.csv", PLACED), classes=("c",))
    assert list(result) == ["C"]
    c = result["C"]
    assert c["central"] == {"tp": 0, "fn": 0}
    assert c["limb"] == {"tp": 1, "fn": 0}
    assert c["unknown"] == 0
    assert c["limb_west_visible"]["tp"] + c["limb_west_hidden"]["tp"] == 1  # lon 80 > 0: west limb
    assert c["limb_east_visible"] == {"tp": 0, "fn": 0} and c["limb_east_hidden"] == {"tp": 0, "fn": 0}


def test_source_visible_warns_when_image_times_are_missing(caplog):
    inst = pd.DataFrame({"fl_lon": [10.0, 20.0], "fl_lat": [0.0, 0.0],
                         "time": pd.to_datetime([None, None], utc=True),
                         "fl_start": pd.to_datetime([None, None], utc=True)})
    with caplog.at_level(logging.WARNING, logger="flarelens.locations"):
        assert source_visible(inst).tolist() == [True, True]
    assert "2 flare instance(s) have no image time; their visibility is judged from the position alone" in caplog.text


# --- format_locations -----------------------------------------------------------------


def test_study_table_alone_when_the_result_has_no_visibility_split():
    # A result with only the study's keys (e.g. read from an older locations.json) prints the
    # study's table and nothing more; recall is '-' where a region has no instance.
    result = {"X": {"central": {"tp": 3, "fn": 1}, "limb": {"tp": 0, "fn": 0}, "unknown": 2}}
    lines = format_locations(result, limb=60).split("\n")
    assert len(lines) == 5
    assert lines[0].split() == ["class", "region", "TP", "FN", "recall"]
    assert set(lines[1]) == {"-"} and len(lines[1]) == len(lines[0])
    assert lines[2].split() == ["X", "central", "|lon|<=60°", "3", "1", "0.7500"]
    assert lines[3].split() == ["X", "limb", "|lon|>60°", "0", "0", "-"]
    assert lines[4].split() == ["X", "position", "unknown", "2", "instance(s)"]
    assert len(lines[2]) == len(lines[3]) == len(lines[0])  # columns line up under the header


def test_visibility_table_columns_line_up_under_its_header():
    parts = {"central": {"tp": 0, "fn": 0}, "limb": {"tp": 3, "fn": 1}, "unknown": 0}
    parts.update({key: {"tp": 0, "fn": 0} for key in LIMB_SPLIT_KEYS})
    parts["limb_east_visible"] = {"tp": 1, "fn": 0}
    parts["limb_east_hidden"] = {"tp": 2, "fn": 1}
    parts["limb_visible"] = {"tp": 1, "fn": 0}
    parts["limb_hidden"] = {"tp": 2, "fn": 1}
    lines = format_locations({"M": parts}).split("\n")
    head = lines.index(next(line for line in lines if line.startswith("class") and "visible" in line))
    header = lines[head]
    assert header.split() == ["class", "limb", "visible", "TP", "FN", "recall", "hidden", "TP", "FN", "recall"]
    assert set(lines[head + 1]) == {"-"} and len(lines[head + 1]) == len(header)
    rows = lines[head + 2:]
    assert [row.split()[:2] for row in rows] == [["M", "east"], ["M", "west"], ["M", "both"]]
    # Each number ends where its column title ends.
    last = header.rindex("recall") + len("recall")
    first = header.index("recall") + len("recall")
    for row in rows:
        assert len(row) == len(header), row
    assert rows[0][first - 6:first] == "1.0000" and rows[0][last - 6:last] == "0.6667"  # 1/1 and 2/3
    assert rows[1][first - 1:first] == "-" and rows[1][last - 1:last] == "-"


# --- recall_cells ---------------------------------------------------------------------


@pytest.mark.parametrize("cell", [0, -5])
def test_recall_cells_rejects_a_cell_that_is_not_positive(tmp_path, cell):
    with pytest.raises(FlareLensError, match=f"cell size must be positive degrees, got {cell}"):
        recall_cells(write(tmp_path, "p.csv", PLACED), cell=cell)


def test_check_cell_limits_and_message():
    assert check_cell(90) == 90.0 and check_cell("2.5") == 2.5
    for bad, shown in ((0, "0"), (90.5, "90.5"), (float("nan"), "nan"), (float("inf"), "inf")):
        with pytest.raises(FlareLensError, match=f"recall-map cell must be between 0 and 90 degrees, got {shown}"):
            check_cell(bad)


def test_recall_cells_counts_are_integers(tmp_path):
    cells = recall_cells(write(tmp_path, "p.csv", PLACED))
    assert pd.api.types.is_integer_dtype(cells["tp"]) and pd.api.types.is_integer_dtype(cells["fn"])
    got = {(r.lon_min, r.lat_min): (r.tp, r.fn, r.recall) for r in cells.itertuples()}
    assert got == {(10.0, 5.0): (1, 1, 0.5), (-35.0, -25.0): (0, 1, 0.0)}


# --- recall_map -----------------------------------------------------------------------


def test_recall_map_axes_cells_stars_and_ticks(tmp_path, drawn):
    recall_map(write(tmp_path, "p.csv", PLACED), out_png=tmp_path / "map.png")
    (fig,) = drawn
    ax = fig.axes[0]
    # Axes: the documented minimum box, since every flare lies inside it.
    assert ax.get_xlim() == (-90.0, 90.0) and ax.get_ylim() == (-40.0, 40.0)
    # Ticks every 15° over the 180° span, on round longitudes.
    assert ax.get_xticks().tolist() == list(range(-90, 91, 15))
    # The recall of each cell sits in its own cell of the 36 x 16 grid.
    mesh = ax.collections[0]
    grid = np.ma.filled(mesh.get_array().reshape(16, 36).astype(float), np.nan)
    assert grid[(5 + 40) // 5, (10 + 90) // 5] == 0.5      # lon 10..15, lat 5..10
    assert grid[(-25 + 40) // 5, (-35 + 90) // 5] == 0.0   # lon -35..-30, lat -25..-20
    assert np.isfinite(grid).sum() == 2                    # blank where there are no flares
    # Colour scale 0..1, pale for no hit and dark for all hit.
    assert (mesh.norm.vmin, mesh.norm.vmax) == (0, 1)
    pale, dark = np.array(mesh.cmap(0.0)[:3]), np.array(mesh.cmap(1.0)[:3])
    assert pale.min() > 0.85 and dark.sum() < pale.sum() - 1
    assert fig.axes[1].get_ylabel() == "recall TP/(TP+FN)"   # the colour bar says what the colour is
    # One red star, at the centre of the cell with flares but no hit.
    stars = ax.collections[1]
    assert stars.get_offsets().tolist() == [[-32.5, -22.5]]
    assert tuple(stars.get_facecolor()[0]) == to_rgba("red")


def test_recall_map_axes_widen_to_hold_a_high_latitude_flare(tmp_path, drawn):
    # Positions just behind either limb (catalogue longitudes past 90°) must stay on the map:
    # cells -95..-90 (lat -55..-50) and 90..95 (lat 0..5).
    text = HEADER + ("2012-01-01T00:00:00Z,a.jpg,0.9,1,X1.0,-95,-52,1\n"
                     "2012-01-01T01:00:00Z,b.jpg,0.9,1,X1.0,92,3,1\n")
    recall_map(write(tmp_path, "p.csv", text), out_png=tmp_path / "map.png")
    ax = drawn[0].axes[0]
    assert ax.get_xlim() == (-95.0, 95.0) and ax.get_ylim() == (-55.0, 40.0)
    assert ax.get_xticks().tolist() == list(range(-90, 91, 15))


def test_recall_map_fills_the_figure_width(tmp_path, drawn):
    # The legend, colour bar and labels get only the room they need (constrained layout): the
    # map itself spans more than three quarters of the figure's width, and the colour bar
    # sits beside it without overlapping it.
    recall_map(write(tmp_path, "p.csv", PLACED), out_png=tmp_path / "map.png")
    (fig,) = drawn
    ax, bar = fig.axes
    assert ax.get_window_extent().width > 0.75 * fig.bbox.width
    assert ax.get_tightbbox().x1 < bar.get_tightbbox().x0


def legend_entries(fig):
    (legend,) = fig.legends
    return legend, {t.get_text(): h for t, h in zip(legend.get_texts(), legend.legend_handles)}


def test_recall_map_legend_explains_stars_lines_and_unknown_positions(tmp_path, drawn):
    path = write(tmp_path, "p.csv", PLACED)
    recall_map(path, out_png=tmp_path / "xm.png", limb=65)
    recall_map(path, out_png=tmp_path / "x.png", classes=("X",))
    both, x_only = drawn
    legend, entries = legend_entries(both)
    assert list(entries) == ["flares, none forecast", "central/limb boundary ±65°",
                             "1 instance(s) of unknown position not shown"]
    star, line, unknown = entries.values()
    assert star.get_marker() == "*" and star.get_linestyle() == "None"   # a star, not a line
    assert line.get_linestyle() == "--"
    assert unknown.get_linestyle() == "None" and unknown.get_marker() in ("None", None, "")  # text only
    limb_lines = both.axes[0].lines
    assert [ln.get_xdata()[0] for ln in limb_lines] == [-65, 65]
    assert all(ln.get_linestyle() == "--" and to_rgba(ln.get_color()) == to_rgba("red") for ln in limb_lines)
    # The legend lies below the map, so it never hides a cell.
    assert legend.get_window_extent().y1 <= both.axes[0].get_window_extent().y0 + 1
    # The unknown-position instance is an M flare: the X-only map has none to mention.
    _, entries = legend_entries(x_only)
    assert list(entries) == ["flares, none forecast", "central/limb boundary ±70°"]


# --- write_locations ------------------------------------------------------------------


def test_write_locations_logs_where_it_wrote(tmp_path, caplog):
    out = tmp_path / "loc"
    with caplog.at_level(logging.INFO, logger="flarelens.locations"):
        write_locations(write(tmp_path, "p.csv", PLACED), out)
    assert (f"wrote {out / 'locations.json'}, recall_cells.csv and "
            "recall_map_X.png, recall_map_M.png, recall_map.png") in caplog.text
