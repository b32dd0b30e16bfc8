import json
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from flarelens import evaluate, locations
from flarelens.cli import main
from flarelens.labels import make_labels
from flarelens.predictions import write_predictions
from flarelens.report import figures
from flarelens.report.collect import diverged, stopped_early
from flarelens.report.explanations import explanation_block
from flarelens.report.limb import locations_section
from flarelens.report.skill import main_table, skill_view, verdict
from flarelens.report.training import selection

SECTIONS = ("skill", "locations", "explanations", "training", "data", "config")


def make_run_dir(root: Path, folds=(1, 2), select: str | None = None) -> Path:
    """A run directory as the pipeline leaves it: labels, histories, config.json, predictions.

    ``select``: None (a run from before honest selection: no inner columns, no ``select``),
    ``"inner"`` (history with inner-validation columns) or ``"last"``.
    """
    labels, _ = make_labels(start="2012-01-01", end="2012-12-31 23:00", cadence="12h")
    labels.to_csv(root / "labels.csv", index=False)
    rng = np.random.default_rng(0)
    for k in folds:
        run = root / f"fold{k}"
        run.mkdir()
        epochs = np.arange(1, 4)
        history = {"epoch": epochs, "train_loss": 0.7 / epochs, "val_loss": 0.8 / epochs,
                   "val_tss": [0.1, 0.2, 0.6], "val_hss": 0.1 * epochs, "lr": 0.01 / epochs, "time_s": 1.0}
        config = {"model": "alexnet", "fold": k, "image_size": 64, "epochs": 3}
        if select == "inner":
            # The held-out fold peaks at epoch 3, the inner block at epoch 2: selection must follow the inner block.
            history.update({"inner_loss": 0.75 / epochs, "inner_tss": [0.3, 0.5, 0.4], "inner_hss": [0.2, 0.3, 0.25]})
        if select:
            config["select"] = {"inner": "best"}.get(select, select)
        pd.DataFrame(history).to_csv(run / "history.csv", index=False)
        (run / "config.json").write_text(json.dumps(config))
        val = labels[labels["fold"] == k].copy()
        val["flare_prob"] = np.clip(0.35 * val["target"] + rng.uniform(0, 0.65, len(val)), 0, 1)
        columns = ["timestamp", "file", "flare_prob", "target", "goes_class", "fl_lon", "fl_lat", "fl_start", "fold"]
        if not select:  # a file from before predict recorded provenance
            val[columns].to_csv(run / "predictions.csv", index=False)
            continue
        # As `flarelens predict` writes them: provenance columns, the sidecar, and the inner block's rows.
        train_rows = labels[labels["fold"] != k]
        meta = {"checkpoint": str(run / "best.pt"), "model_fold": k, "rows": "heldout",
                "train_base_rate": float(train_rows["target"].mean()), "train_base_rate_source": "run config"}
        write_predictions(val[columns].assign(model_fold=k, role="heldout"), run / "predictions.csv", meta)
        inner = train_rows[train_rows["timestamp"] < f"2012-0{3 + 3 * (k % 2)}-01"].copy()
        inner["flare_prob"] = np.clip(0.35 * inner["target"] + rng.uniform(0, 0.65, len(inner)), 0, 1)
        write_predictions(inner[columns].assign(model_fold=k, role="inner"), run / "inner_predictions.csv",
                          {**meta, "rows": "inner"})
    return root


def section_html(page: str, anchor: str) -> str:
    start = page.index(f'<section id="{anchor}">')
    return page[start:page.index("</section>", start)]


def model_row(page: str) -> list[str]:
    """The cells of the model's row in the Skill table (score, without its interval)."""
    row = re.search(r'<tr class="model"><th>model</th>(.*?)</tr>', page).group(1)
    return [re.sub(r"<span.*?</span>", "", c).strip() for c in re.findall(r"<td>(.*?)</td>", row)]


def pooled_tss_hss(frames) -> tuple[float, float]:
    """TSS and HSS of all instances together, from the formulas of docs/design.md."""
    tp = fp = tn = fn = 0
    for f in frames:
        forecast = f["flare_prob"].to_numpy(float) >= 0.5
        target = f["target"].to_numpy(float) == 1
        tp += int(np.sum(forecast & target)); fp += int(np.sum(forecast & ~target))
        tn += int(np.sum(~forecast & ~target)); fn += int(np.sum(~forecast & target))
    tss = tp / (tp + fn) - fp / (fp + tn)
    hss = 2 * (tp * tn - fn * fp) / ((tp + fn) * (fn + tn) + (tp + fp) * (fp + tn))
    return tss, hss


@pytest.fixture(scope="module")
def inner_run(tmp_path_factory) -> Path:
    """A reported run directory whose models were selected on inner validation blocks."""
    run = make_run_dir(tmp_path_factory.mktemp("inner"), select="inner")
    assert main(["report", str(run)]) == 0
    return run


@pytest.fixture(scope="module")
def problem_run(tmp_path_factory) -> Path:
    """A reported run directory with every problem a report must flag (issue 11) and no recorded selection."""
    run = make_run_dir(tmp_path_factory.mktemp("problems"), folds=(1, 2, 3))
    # fold1's model predicted rows of its own training quarters (fold 2): no role column,
    # the run's config.json says the model is fold 1's.
    pred1 = pd.read_csv(run / "fold1" / "predictions.csv")
    pred2 = pd.read_csv(run / "fold2" / "predictions.csv")
    pd.concat([pred1, pred2.head(7)]).to_csv(run / "fold1" / "predictions.csv", index=False)
    # fold2's file says which rows were not held out (predict's role column).
    pred2["role"] = ["train"] * 5 + ["heldout"] * (len(pred2) - 5)
    pred2.to_csv(run / "fold2" / "predictions.csv", index=False)
    # fold3's model diverged and its probabilities are not finite.
    hist = pd.read_csv(run / "fold3" / "history.csv")
    hist.loc[1:, "train_loss"] = np.nan
    hist.to_csv(run / "fold3" / "history.csv", index=False)
    pred3 = pd.read_csv(run / "fold3" / "predictions.csv")
    pred3.loc[3, "flare_prob"] = np.nan
    pred3.to_csv(run / "fold3" / "predictions.csv", index=False)
    assert main(["report", str(run)]) == 0
    return run


def test_report_opens_with_the_answer_and_its_numbers_are_the_librarys(inner_run):
    run = inner_run
    page = (run / "report.html").read_text()
    positions = [page.index(f'<section id="{a}">') for a in SECTIONS]
    assert positions == sorted(positions), "skill first, configuration last"
    # The configuration table is folded at the end, not the page's opening.
    assert "<details>" in section_html(page, "config") and "<table" in section_html(page, "config")
    # The numbers come from the files: recompute them with the library and with the formulas.
    paths = [run / "fold1" / "predictions.csv", run / "fold2" / "predictions.csv"]
    result = evaluate.evaluate_files(paths, labels=run / "labels.csv")
    tss, hss = pooled_tss_hss([pd.read_csv(p) for p in paths])
    assert model_row(page)[:2] == [f"{tss:.2f}", f"{hss:.2f}"]
    # Every score of the main table, with its interval, is the library's on the same files.
    table = page[page.index('<table class="t main">'):]
    table = table[:table.index("</table>")]
    pers = result["baselines"]["persistence"]["pooled"]
    expected = {"model": result["pooled"], "persistence": pers,
                "climatology": result["baselines"]["climatology"]["pooled"], "model − persistence": pers["difference"]}
    for name, entry in expected.items():
        row = re.search(rf"<tr[^>]*><th>{name}</th>(.*?)</tr>", table).group(1)
        for score in ("tss", "hss", "bss", "auc"):
            low, high = (f"{v:.2f}" for v in entry["ci"][score])
            text = f'{entry[score]:.2f} <span class="ci">[{low}, {high}]</span>'
            assert text.replace("-0.00", "0.00") in row, (name, score)  # the page never prints -0.00
    inner = result["pooled"]["inner_threshold"]
    assert re.search(rf"<th>model, inner-block threshold \(chosen per fold\)</th><td>{inner['tss']:.2f}</td>", table)
    skill = section_html(page, "skill")
    for item, name in zip(result["files"], ("fold1/predictions.csv", "fold2/predictions.csv")):
        row = re.search(rf"<th>{re.escape(name)}</th>(.*?)</tr>", skill).group(1)
        assert f"<td>{item['tss']:.2f}" in row and f"<td>{item['hss']:.2f}" in row
        assert f"{item['tp']:,} TP" in skill and f"{item['fn']:,} FN" in skill
    # Central vs near-limb: the library's location analysis on the same files.
    where = locations.location_analysis(paths)
    loc = section_html(page, "locations").split("<tbody>")[1]
    for cls, parts in where.items():
        for region, key in (("central", "central"), ("near-limb (", "limb")):
            row = re.search(rf"<tr><th>{cls}</th><td>{re.escape(region)}[^<]*</td><td>(\d+)</td><td>(\d+)</td>", loc)
            assert (int(row.group(1)), int(row.group(2))) == (parts[key]["tp"], parts[key]["fn"])
    # The study's numbers stay beside ours, marked as theirs.
    assert re.search(r'<tr class="theirs"><th>[^<]*VGG16[^<]*<em>theirs, published</em>.*?<td>0\.51</td><td>0\.35</td>', skill)
    assert "0.5751 / 0.4401" in skill
    # Self-contained: figures are embedded, nothing is fetched, no script.
    assert page.count("data:image/png;base64,") >= 3
    assert not re.search(r'src="(?!data:)', page)
    assert "<script" not in page


def test_report_on_a_partial_run_dir(tmp_path):
    make_run_dir(tmp_path, folds=(3,))
    shutil.rmtree(tmp_path / "fold3")
    assert main(["report", str(tmp_path), "--out", str(tmp_path / "r.html")]) == 0
    page = (tmp_path / "r.html").read_text()
    assert "No predictions*.csv" in page and "No training" in page
    assert 'id="warnings"' not in page


def test_report_bad_run_dir(tmp_path, capsys):
    assert main(["report", str(tmp_path / "missing")]) == 1
    assert "no such run directory" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["report", str(tmp_path / "empty")]) == 1
    err = capsys.readouterr().err
    assert "nothing to report" in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "empty" / "report.html").exists()


# --------------------------------------------------------------------------- warnings (issue 11)


def test_warnings_head_the_page_and_bad_rows_are_left_out_of_every_score(problem_run):
    run = problem_run
    pred1 = pd.read_csv(run / "fold1" / "predictions.csv")
    pred1 = pred1[pred1["fold"] == 1]
    pred2 = pd.read_csv(run / "fold2" / "predictions.csv")
    page = (run / "report.html").read_text()
    box = page[page.index('id="warnings"'):page.index("</div>", page.index('id="warnings"'))]
    assert page.index('id="warnings"') < page.index('<section id="skill">')
    assert "fold1/predictions.csv" in box and "7 of" in box and "train 7" in box
    assert "fold2/predictions.csv" in box and "5 of" in box and "train 5" in box
    assert "fold3/predictions.csv" in box and "not a finite number" in box
    assert "diverged" in box and "from epoch 2" in box
    assert "Model chosen on the scored fold" in box and "fold1, fold2" in box
    # Scores: the held-out rows of fold 1 and 2 only; fold 3 not at all.
    kept = [pred1, pred2[pred2["role"] == "heldout"]]
    tss, hss = pooled_tss_hss(kept)
    assert model_row(page)[:2] == [f"{tss:.2f}", f"{hss:.2f}"]
    assert f"{sum(map(len, kept)):,} held-out instances in 2 prediction files" in page
    skill = section_html(page, "skill")
    for name, frame in zip(("fold1", "fold2"), kept):
        assert re.search(rf"<th>{name}/predictions.csv</th><td>{name[-1]}</td><td>{len(frame):,}</td>", skill)
    assert "fold3/predictions.csv</th>" not in skill


def test_diverged_and_stopped_runs_are_told_apart_from_runs_without_an_inner_block():
    history = pd.DataFrame({"epoch": [1, 2], "train_loss": [0.7, 0.6], "val_loss": [0.8, 0.7],
                            "inner_loss": [np.nan, np.nan]})  # --inner 0: never computed, not diverged
    assert diverged(history, {}) is None
    assert stopped_early(history, {"epochs": 2}) is None
    assert "ends at epoch 2 of 5" in stopped_early(history, {"epochs": 5})
    log = "2026-01-01 epoch 3: training diverged (loss nan, weights not finite); stopped without saving it\n"
    assert "training diverged" in diverged(history, {}, log)
    assert "inner_loss is not finite from epoch 2" in diverged(history.assign(inner_loss=[0.5, np.nan]), {})
    assert "from epoch 1" in diverged(history.assign(train_loss=[np.inf, 0.6]), {})


def test_no_checkpoint_is_loaded_for_the_configuration(tmp_path, monkeypatch):
    run = make_run_dir(tmp_path, folds=(1,))
    (run / "fold1" / "config.json").unlink()
    (run / "fold1" / "best.pt").write_bytes(b"not a checkpoint")

    def refuse(*args, **kwargs):
        raise AssertionError("the report loaded a checkpoint")

    import flarelens.checkpoint

    monkeypatch.setattr(flarelens.checkpoint, "load_checkpoint", refuse)
    monkeypatch.setattr("torch.load", refuse)
    assert main(["report", str(run)]) == 0
    assert "no config.json" in section_html((run / "report.html").read_text(), "config")


# --------------------------------------------------------------------------- selection (issue 10)


def test_selection_follows_the_inner_block_never_the_held_out_fold(inner_run):
    history = pd.DataFrame({"epoch": [1, 2, 3], "val_tss": [0.1, 0.2, 0.6], "inner_tss": [0.3, 0.5, 0.4]})
    sel = selection(history, {"select": "best", "inner": 0.1, "window": "24h"})
    assert sel["epoch"] == 2 and "epoch 2 of 3" in sel["text"] and "inner validation block" in sel["text"]
    assert "the last 10% of each training quarter" in sel["text"]
    assert selection(history, {"select": "last"})["epoch"] == 3
    assert selection(history.drop(columns="inner_tss"), {})["select"] is None
    assert selection(history.drop(columns="inner_tss"), {"select": "best"})["select"] == "inner"

    page = (inner_run / "report.html").read_text()
    assert 'id="warnings"' not in page
    assert "selected on an inner validation block" in section_html(page, "skill")
    training = section_html(page, "training")
    assert training.count("best.pt is epoch 2 of 3") == 2


# --------------------------------------------------------------------------- the Skill section from plain dicts


def entry(tss, hss=0.3, bss=0.1, auc=0.8, ci=None, **extra):
    """A FILE entry of evaluate's JSON (docs/design.md), hand-made."""
    return {"tp": 5, "fp": 10, "tn": 80, "fn": 5, "tss": tss, "hss": hss, "bss": bss, "auc": auc, "brier": 0.1,
            "n": 100, "ci": ci or {"tss": [tss - 0.1, tss + 0.1]}, **extra}


def result_with_difference(low, high):
    pers = entry(0.3, difference={"tss": (low + high) / 2, "ci": {"tss": [low, high]}})
    return {"files": [entry(0.5)], "pooled": entry(0.5, calibrated=entry(0.45)),
            "baselines": {"persistence": {"files": [pers], "pooled": pers},
                          "climatology": {"files": [entry(0.0)], "pooled": entry(0.0, bss=0.0)}}}


@pytest.mark.parametrize("low, high, answer", [(0.05, 0.3, "The model beats persistence"),
                                               (-0.3, -0.05, "Persistence beats the model"),
                                               (-0.05, 0.3, "not distinguishable from persistence")])
def test_the_answer_reads_the_interval_of_the_difference(low, high, answer):
    view = skill_view(result_with_difference(low, high))
    text = verdict(view)
    assert answer in text
    assert f"[{low:.2f}, {high:.2f}]" in text


def test_the_answer_also_reads_the_probabilities():
    result = result_with_difference(0.05, 0.3)
    diff = result["baselines"]["persistence"]["pooled"]["difference"]
    diff.update(bss=-0.2, ci={**diff["ci"], "bss": [-0.3, -0.1]})
    assert "As probabilities (BSS) the model is worse than persistence's" in verdict(skill_view(result))
    diff["ci"]["bss"] = [-0.3, 0.1]
    assert "not distinguishable from persistence's" in verdict(skill_view(result))


def test_main_table_has_model_baselines_difference_and_theirs():
    view = skill_view(result_with_difference(0.05, 0.3))
    assert [f["name"] for f in view["forecasts"]] == ["model", "model (calibrated)", "persistence", "climatology"]
    html = main_table(view)
    rows = re.findall(r"<tr[^>]*><th>(.*?)</th>", html.split("<tbody>")[1])
    assert rows[:5] == ["model", "model (calibrated)", "persistence", "climatology", "model − persistence"]
    assert "theirs" in rows[5]
    assert '0.50 <span class="ci">[0.40, 0.60]</span>' in html  # model TSS with its interval, not ± std
    assert "±" not in html


# --------------------------------------------------------------------------- locations and explanations (issue 15)


def test_locations_split_by_visibility_and_side_and_say_what_a_hidden_hit_means():
    east_vis, east_hid, west_vis, west_hid = (2, 1), (0, 3), (1, 0), (1, 0)
    vis = (east_vis[0] + west_vis[0], east_vis[1] + west_vis[1])
    hid = (east_hid[0] + west_hid[0], east_hid[1] + west_hid[1])
    tp_fn = lambda c: {"tp": c[0], "fn": c[1]}  # noqa: E731
    result = {"X": {"central": tp_fn((10, 2)), "limb": tp_fn((vis[0] + hid[0], vis[1] + hid[1])), "unknown": 1,
                    "limb_visible": tp_fn(vis), "limb_hidden": tp_fn(hid),
                    "limb_east_visible": tp_fn(east_vis), "limb_east_hidden": tp_fn(east_hid),
                    "limb_west_visible": tp_fn(west_vis), "limb_west_hidden": tp_fn(west_hid)}}
    html = locations_section(result, None)
    body = html.split("<tbody>")[1]
    rows = {r[0]: r[1] for r in re.findall(r"<tr><th>X</th><td>(.*?)</td>(.*?)</tr>", body)}
    cells = {k: re.findall(r"<td[^>]*>(.*?)</td>", v) for k, v in rows.items()}
    recall = lambda c: f"{c[0] / (c[0] + c[1]):.2f}"  # noqa: E731
    assert cells["central (|lon| ≤ 70°)"] == ["10", "2", recall((10, 2)), "—", "—"]
    limb = (vis[0] + hid[0], vis[1] + hid[1])
    assert cells["near-limb (|lon| &gt; 70°)"] == [str(limb[0]), str(limb[1]), recall(limb),
                                                 str(vis[0]), str(vis[1]), recall(vis), str(hid[0]), str(hid[1])]
    east = (east_vis[0] + east_hid[0], east_vis[1] + east_hid[1])
    assert cells["near-limb east (lon &lt; −70°)"] == [str(east[0]), str(east[1]), recall(east), str(east_vis[0]),
                                                     str(east_vis[1]), recall(east_vis), str(east_hid[0]), str(east_hid[1])]
    assert cells["near-limb west (lon &gt; 70°)"][:2] == ["2", "0"]
    assert cells["position unknown"][0].startswith("1 instance,")
    assert "predicted the flare from something else on the disk" in html


def test_explanations_state_hidden_sources_apart_and_both_neighbourhoods():
    limb = {"n": 5, "n_hidden": 3, "image_mass": 0.41, "image_mass_random": 0.019, "helio_mass": 0.0006,
            "helio_mass_random": 0.0003, "hit": 0.5, "hit_random": 0.02}
    hidden = {"n": 3, "n_hidden": 3, "hidden_strong_mass": 0.62, "hidden_strong_mass_random": 0.08, "strong_mass": None}
    summary = {"radius_deg": 10, "image_radius": 0.17, "neighbourhood": "image", "hidden": 3,
               "methods": {"ig": {"flaring limb": limb, "hidden": hidden, "flaring": {**limb, "n": 9}}}}
    html = explanation_block("explain", summary, [])
    assert "<strong>3 explained instances</strong>" in html and "never averaged in" in html
    header = re.findall(r"<th>(.*?)</th>", html.split("<tbody>")[0])
    assert "image-space neighbourhood <em>(default)</em>" in header and "heliographic neighbourhood" in header
    rows = {re.search(r"<td>(.*?)</td>", r).group(1): re.findall(r"<td>(.*?)</td>", r)
            for r in re.findall(r"<tr><th>ig</th>(.*?)</tr>", html)}
    # Visible near-limb instances = instances - hidden ones; each score beside its random map.
    assert rows["flaring, near-limb"][1:5] == ["2", "3", '0.410 <span class="ci">vs 0.019</span>',
                                               '0.001 <span class="ci">vs 0.000</span>']
    assert rows["all flaring"][1] == "6"
    assert '0.620 <span class="ci">vs 0.080</span>' in rows["source hidden at image time"]
    assert "1 solar radii" not in html and "0.17 solar radii" in html


# --------------------------------------------------------------------------- figures


def legends_clear_of_data(fig) -> bool:
    """True when no legend's box overlaps any axes' box (drawn at the figure's size)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig).draw()
    renderer = fig.canvas.get_renderer()
    legends = list(fig.legends) + [ax.get_legend() for ax in fig.axes if ax.get_legend()]
    boxes = [ax.get_window_extent(renderer) for ax in fig.axes if ax.get_visible()]
    return bool(legends) and all(not leg.get_window_extent(renderer).overlaps(b) for leg in legends for b in boxes)


def test_no_legend_covers_data():
    epochs = np.arange(1, 11)
    curves = {"loss": {"train": 1 / epochs, "inner validation": 1.1 / epochs, "held-out fold": 1.2 / epochs},
              "skill": {"train": epochs / 10, "inner validation": epochs / 11, "held-out fold": epochs / 12},
              "lr": {"learning rate": 0.1 / epochs}}
    runs = [{"name": f"fold{k}", "epoch": epochs, "curves": curves, "selected": 4} for k in range(1, 5)]
    assert legends_clear_of_data(figures.training_figure(runs))
    t = np.linspace(0.01, 0.99, 99)
    fig = figures.skill_figure(
        {"model": {"pofd": 1 - t, "pod": 1 - t ** 2}},
        {"model": {"forecast": np.arange(10) / 10 + 0.05, "observed": np.arange(10) / 10, "count": np.full(10, 30)}},
        {"model": {"threshold": t, "tss": t * (1 - t), "hss": t * (1 - t) / 2}},
        points={"persistence": (0.2, 0.6)}, marks={"threshold 0.5": 0.5}, climatology=0.2,
        levels={"persistence TSS (yes/no)": 0.4})
    assert legends_clear_of_data(fig)


# --------------------------------------------------------------------------- the page in a browser


def _browser():
    """A headless Chromium driven by selenium; skips the calling test where either is missing.

    CI installs both (.ci/run: Debian's chromium and chromium-driver; selenium with the test extras).
    """
    webdriver = pytest.importorskip("selenium.webdriver")
    if not (shutil.which("chromium") and shutil.which("chromedriver")):
        pytest.skip("needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--no-first-run", "--window-size=1280,2400"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)


def check_in_browser(page: Path, screenshot: Path | None = None, warnings: bool = False) -> None:
    """Open ``page`` in headless Chromium: every section renders, every image decodes, no console error,
    the configuration is folded until clicked; ``warnings``: the warning box shows above the Skill section."""
    driver = _browser()  # skips the test where selenium or chromium is missing
    from selenium.webdriver.common.by import By

    try:
        driver.get(page.resolve().as_uri())
        sections = driver.find_elements(By.TAG_NAME, "section")
        assert [s.get_attribute("id") for s in sections] == list(SECTIONS)
        for section in sections:
            assert section.is_displayed() and section.size["height"] > 40, section.get_attribute("id")
        broken = driver.execute_script(
            "return Array.from(document.images).filter(i => !(i.complete && i.naturalWidth > 0)).length")
        assert broken == 0 and len(driver.find_elements(By.TAG_NAME, "img")) >= 3
        errors = [e for e in driver.get_log("browser") if e["level"] in ("SEVERE", "ERROR")]
        assert errors == []
        boxes = driver.find_elements(By.ID, "warnings")
        assert bool(boxes) == warnings
        if warnings:
            assert boxes[0].is_displayed() and boxes[0].location["y"] < sections[0].location["y"]
        config = driver.find_element(By.CSS_SELECTOR, "#config details")
        table = config.find_element(By.TAG_NAME, "table")
        assert not table.is_displayed()
        if screenshot is not None:
            height = driver.execute_script("return document.body.scrollHeight")
            driver.set_window_size(1280, height + 100)
            driver.save_screenshot(str(screenshot))
        config.find_element(By.TAG_NAME, "summary").click()
        assert table.is_displayed()
    finally:
        driver.quit()


def test_report_renders_in_headless_chromium(inner_run):
    check_in_browser(inner_run / "report.html")


def test_report_with_problems_renders_its_warning_first(problem_run):
    check_in_browser(problem_run / "report.html", warnings=True)
