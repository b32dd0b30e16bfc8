import json
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from flarelens import evaluate
from flarelens.cli import main
from flarelens.labels import make_labels


def make_run_dir(root: Path, folds=(1, 2)) -> Path:
    """A run directory as the pipeline leaves it: labels, histories, predictions."""
    labels, _ = make_labels(start="2012-01-01", end="2012-12-31 23:00", cadence="6h")
    labels.to_csv(root / "labels.csv", index=False)
    rng = np.random.default_rng(0)
    for k in folds:
        run = root / f"fold{k}"
        run.mkdir()
        epochs = np.arange(1, 4)
        pd.DataFrame({
            "epoch": epochs, "train_loss": 0.7 / epochs, "val_loss": 0.8 / epochs,
            "val_tss": 0.2 * epochs, "val_hss": 0.1 * epochs, "lr": 0.01 / epochs, "time_s": 1.0,
        }).to_csv(run / "history.csv", index=False)
        (run / "config.json").write_text(json.dumps({"model": "alexnet", "fold": k, "image_size": 64}))
        val = labels[labels["fold"] == k].copy()
        val["flare_prob"] = np.clip(0.35 * val["target"] + rng.uniform(0, 0.65, len(val)), 0, 1)
        val[["timestamp", "file", "flare_prob", "target", "goes_class", "fl_lon", "fl_lat", "fold"]].to_csv(
            run / "predictions.csv", index=False)
    return root


def test_report_holds_every_section_and_the_numbers(tmp_path):
    run = make_run_dir(tmp_path)
    assert main(["report", str(run)]) == 0
    page = (run / "report.html").read_text()
    for anchor in ("config", "data", "training", "skill", "locations", "explanations"):
        assert f'<section id="{anchor}">' in page
    # The numbers come from the files: recompute them with the library.
    result = evaluate.evaluate_files([run / "fold1" / "predictions.csv", run / "fold2" / "predictions.csv"])
    assert f'{result["mean"]["tss"]:.2f} ± {result["std"]["tss"]:.2f}' in page
    tp = result["files"][0]["tp"]
    assert f"{tp:,} TP" in page
    assert "theirs, for reference" in page and "0.51" in page
    # Self-contained: figures are embedded, nothing is fetched.
    assert page.count("data:image/png;base64,") >= 3
    assert not re.search(r'src="(?!data:)', page)
    assert "<script" not in page


def test_report_on_a_partial_run_dir(tmp_path):
    make_run_dir(tmp_path, folds=(3,))
    shutil.rmtree(tmp_path / "fold3")
    assert main(["report", str(tmp_path), "--out", str(tmp_path / "r.html")]) == 0
    page = (tmp_path / "r.html").read_text()
    assert "No predictions*.csv" in page and "No training" in page


def test_report_bad_run_dir(tmp_path, capsys):
    assert main(["report", str(tmp_path / "missing")]) == 1
    assert "no such run directory" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["report", str(tmp_path / "empty")]) == 1
    assert "nothing to report" in capsys.readouterr().err
    assert not (tmp_path / "empty" / "report.html").exists()


def _browser():
    """A headless Chromium driven by selenium; skips the calling test where either is missing (opt-in, see README)."""
    webdriver = pytest.importorskip("selenium.webdriver")
    if not (shutil.which("chromium") and shutil.which("chromedriver")):
        pytest.skip("needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--window-size=1280,2400"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)


def check_in_browser(page: Path, screenshot: Path | None = None) -> None:
    """Open ``page`` in headless Chromium: every section renders, every image decodes, no console error."""
    driver = _browser()  # skips the test where selenium or chromium is missing
    from selenium.webdriver.common.by import By

    try:
        driver.get(page.resolve().as_uri())
        sections = driver.find_elements(By.TAG_NAME, "section")
        assert len(sections) == 6
        for section in sections:
            assert section.is_displayed() and section.size["height"] > 40, section.get_attribute("id")
        broken = driver.execute_script(
            "return Array.from(document.images).filter(i => !(i.complete && i.naturalWidth > 0)).length")
        assert broken == 0
        errors = [e for e in driver.get_log("browser") if e["level"] in ("SEVERE", "ERROR")]
        assert errors == []
        if screenshot is not None:
            driver.save_screenshot(str(screenshot))
    finally:
        driver.quit()


def test_report_renders_in_headless_chromium(tmp_path):
    run = make_run_dir(tmp_path)
    assert main(["report", str(run)]) == 0
    check_in_browser(run / "report.html")
