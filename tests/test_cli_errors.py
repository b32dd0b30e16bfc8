"""Bad invocations of every subcommand end in one clear line and a non-zero exit.

A table of invocations a messy-data user produces (impossible numbers, paths of the wrong
kind, damaged files, files from another fold) is run through the real command line; each
must exit 1 (a FlareLensError) or 2 (argparse's usage error), print its message on the
last line of stderr, leave no traceback, and leave what was on disk as it was.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pandas as pd
import pytest

from flarelens.cli import main
from flarelens.fileio import write_csv

from conftest import write_toy_dataset


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A toy image set, its labels, a trained fold-1 run and assorted bad files."""
    root = tmp_path_factory.mktemp("cli")
    images = root / "images"
    labels = write_toy_dataset(images, n=48, size=32)
    labels_csv = root / "labels.csv"
    labels.to_csv(labels_csv, index=False)
    run = root / "run"
    assert main(["-q", "train", "--labels", str(labels_csv), "--images", str(images), "--fold", "1",
                 "--model", "simplecnn", "--image-size", "32", "--epochs", "1", "--batch-size", "8",
                 "--inner", "0", "--select", "last", "--out", str(run), "--threads", "1"]) == 0
    pred = root / "pred.csv"
    assert main(["-q", "predict", "--checkpoint", str(run / "best.pt"), "--labels", str(labels_csv),
                 "--images", str(images), "--fold", "1", "--out", str(pred)]) == 0
    bad = root / "bad"
    bad.mkdir()
    (bad / "empty.csv").write_text("")
    header = pd.read_csv(pred).iloc[:0]
    write_csv(header, bad / "header_only.csv")
    nan_pred = pd.read_csv(pred)
    nan_pred.loc[0, "flare_prob"] = float("nan")
    write_csv(nan_pred, bad / "nan_prob.csv")
    wrong_fold = labels.copy()
    wrong_fold.loc[0, "fold"] = 7
    write_csv(wrong_fold, bad / "fold7_labels.csv")
    (bad / "garbage.csv").write_text("a,b\n1,2,3,4\n\x00\x01\n")
    (bad / "notes.txt").write_text("not an image")
    (bad / "fake.jp2").write_bytes(b"\x00\x00\x00\x0cjP  \r\n\x87\n" + b"broken" * 10)
    (bad / "a_file").write_text("x")
    return {"root": root, "images": images, "labels": labels_csv, "run": run, "ckpt": run / "best.pt",
            "pred": pred, "bad": bad, "out": root / "out"}


# (id, argv with {placeholders}, a fragment the one-line message must contain)
CASES = [
    # label
    ("label-end-before-start", "label --start 2012-01-01 --end 2011-01-01 --out {out}/l.csv", "end"),
    ("label-uncovered-period", "label --start 2020-01-01 --end 2020-02-01 --out {out}/l.csv", "catalog"),
    ("label-bad-threshold", "label --threshold Q9 --out {out}/l.csv", "threshold"),
    ("label-bad-cadence", "label --cadence soon --out {out}/l.csv", "cadence"),
    ("label-missing-catalog", "label --catalog {bad}/missing.csv --out {out}/l.csv", "missing.csv"),
    ("label-garbage-catalog", "label --catalog {bad}/garbage.csv --out {out}/l.csv", "garbage.csv"),
    ("label-out-is-a-directory", "label --start 2011-01-01 --end 2011-01-02 --out {bad}", ""),
    # simulate
    ("simulate-uncovered-period", "simulate --start 2021-01-01 --end 2021-01-02 --out {out}/sim", "catalog"),
    ("simulate-size-zero", "simulate --start 2011-02-10 --end 2011-02-11 --size 0 --out {out}/sim", "size"),
    ("simulate-out-is-a-file", "simulate --start 2011-02-10 --end 2011-02-10T02:00 --out {bad}/a_file", ""),
    # download
    ("download-negative-workers", "download --start 2011-01-01 --end 2011-01-02 --workers -1 --out {out}/jp2", "workers"),
    ("download-zero-rate", "download --start 2011-01-01 --end 2011-01-02 --rate 0 --out {out}/jp2", "rate"),
    ("download-end-before-start", "download --start 2011-01-02 --end 2011-01-01 --out {out}/jp2", "end"),
    # convert
    ("convert-missing-src", "convert {bad}/nothing {out}/conv", "nothing"),
    ("convert-size-negative", "convert {images} {out}/conv --size -5", "size"),
    ("convert-negative-workers", "convert {images} {out}/conv --workers -2", "workers"),
    # train
    ("train-device-gpu0", "train --labels {labels} --images {images} --fold 1 --device gpu0 --out {out}/t", "device"),
    ("train-negative-workers", "train --labels {labels} --images {images} --fold 1 --workers -1 --out {out}/t", "workers"),
    ("train-negative-momentum", "train --labels {labels} --images {images} --fold 1 --momentum -0.5 --out {out}/t", "momentum"),
    ("train-negative-weight-decay", "train --labels {labels} --images {images} --fold 1 --weight-decay -1 --out {out}/t", "decay"),
    ("train-zero-epochs", "train --labels {labels} --images {images} --fold 1 --epochs 0 --out {out}/t", "epochs"),
    ("train-fold-5", "train --labels {labels} --images {images} --fold 5 --out {out}/t", "fold"),
    ("train-labels-fold-7", "train --labels {bad}/fold7_labels.csv --images {images} --fold 1 --out {out}/t", "fold"),
    ("train-missing-images", "train --labels {labels} --images {bad}/none --fold 1 --inner 0 --select last --out {out}/t", "none"),
    ("train-out-is-a-file", "train --labels {labels} --images {images} --fold 1 --out {bad}/a_file", "a_file"),
    ("train-empty-labels", "train --labels {bad}/empty.csv --images {images} --fold 1 --out {out}/t", "empty.csv"),
    # predict
    ("predict-missing-checkpoint", "predict --checkpoint {bad}/none.pt --labels {labels} --images {images} --out {out}/p.csv", "none.pt"),
    ("predict-checkpoint-is-text", "predict --checkpoint {bad}/notes.txt --labels {labels} --images {images} --out {out}/p.csv", "notes.txt"),
    ("predict-broken-image", "predict --checkpoint {ckpt} {bad}/fake.jp2", "fake.jp2"),
    ("predict-text-image", "predict --checkpoint {ckpt} {bad}/notes.txt", "notes.txt"),
    ("predict-device-gpu0", "predict --checkpoint {ckpt} --labels {labels} --images {images} --device gpu0 --out {out}/p.csv", "device"),
    ("predict-negative-batch", "predict --checkpoint {ckpt} --labels {labels} --images {images} --batch-size -1 --out {out}/p.csv", "batch"),
    ("predict-out-is-a-directory", "predict --checkpoint {ckpt} --labels {labels} --images {images} --fold 1 --out {bad}", ""),
    # calibrate
    ("calibrate-missing-run", "calibrate {bad}/none", "none"),
    # evaluate
    ("evaluate-threshold-above-1", "evaluate {pred} --threshold 1.5", "threshold"),
    ("evaluate-threshold-nan", "evaluate {pred} --threshold nan", "threshold"),
    ("evaluate-header-only", "evaluate {bad}/header_only.csv", "header_only.csv"),
    ("evaluate-empty-file", "evaluate {bad}/empty.csv", "empty.csv"),
    ("evaluate-nan-probability", "evaluate {bad}/nan_prob.csv", "nan_prob.csv"),
    ("evaluate-garbage", "evaluate {bad}/garbage.csv", "garbage.csv"),
    ("evaluate-missing", "evaluate {bad}/none.csv", "none.csv"),
    ("evaluate-negative-resamples", "evaluate {pred} --resamples -3", "resamples"),
    ("evaluate-zero-block", "evaluate {pred} --block-days 0", "block"),
    # locations
    ("locations-threshold-zero", "locations {pred} --threshold 0", "threshold"),
    ("locations-negative-cell", "locations {pred} --cell -5", "cell"),
    ("locations-header-only", "locations {bad}/header_only.csv", "header_only.csv"),
    ("locations-out-is-a-file", "locations {pred} --out {bad}/a_file", "a_file"),
    # explain
    ("explain-limit-zero", "explain --checkpoint {ckpt} --predictions {pred} --images {images} --labels {labels} --limit 0 --out {out}/e", "nothing"),
    ("explain-start-after-end", "explain --checkpoint {ckpt} --predictions {pred} --images {images} --labels {labels} --start 2012-01-01 --end 2011-01-01 --out {out}/e", "nothing"),
    ("explain-negative-radius", "explain --checkpoint {ckpt} --predictions {pred} --images {images} --labels {labels} --radius -10 --out {out}/e", "radius"),
    ("explain-unknown-method", "explain --checkpoint {ckpt} --predictions {pred} --images {images} --labels {labels} --methods lime --out {out}/e", "lime"),
    ("explain-training-rows", "explain --checkpoint {ckpt} --predictions {bad}/other_fold.csv --images {images} --labels {labels} --out {out}/e", "fold"),
    # report
    ("report-missing-dir", "report {bad}/none", "none"),
    ("report-nothing-to-report", "report {bad}", "report"),
    ("report-threshold-above-1", "report {root} --threshold 2", "threshold"),
    # demo
    ("demo-bad-epochs", "demo --epochs 0 --out {out}/demo", "epochs"),
]


def _digest(folder: Path) -> dict:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("case,argv,fragment", CASES, ids=[c[0] for c in CASES])
def test_bad_invocation_gives_one_line_and_a_nonzero_exit(world, case, argv, fragment, capsys):
    if case == "explain-training-rows" and not (world["bad"] / "other_fold.csv").is_file():
        # predictions of the fold-1 model on fold-2 rows (its training rows), marked as such
        assert main(["-q", "predict", "--checkpoint", str(world["ckpt"]), "--labels", str(world["labels"]),
                     "--images", str(world["images"]), "--fold", "2", "--out", str(world["bad"] / "other_fold.csv")]) == 0
    capsys.readouterr()
    before = {k: _digest(world[k]) for k in ("run", "bad")}
    args = argv.format(**{k: str(v) for k, v in world.items()}).split()
    try:
        status = main(["-q", *args])
    except SystemExit as exc:  # argparse's usage errors
        status = exc.code
    err = capsys.readouterr().err
    assert status in (1, 2), f"{case}: exit {status}, stderr: {err[-500:]}"
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1] if err.strip() else ""
    assert "error" in last, f"{case}: no one-line error: {err[-500:]}"
    assert fragment.lower() in last.lower(), f"{case}: {last!r} does not mention {fragment!r}"
    assert {k: _digest(world[k]) for k in ("run", "bad")} == before, f"{case} changed files on disk"
    assert not list(Path(world["root"]).rglob("*.part*")), f"{case} left a temporary file"


def test_an_error_in_a_dataloader_worker_is_one_line(world, capsys, tmp_path):
    # a missing image found by a worker process comes back wrapped in torch's traceback
    labels = pd.read_csv(world["labels"])
    i = int(labels.index[labels["fold"] == 1][2])
    labels.loc[i, "file"] = "2011/nowhere/HMI.m2011.01.01_00.00.00.png"
    path = tmp_path / "labels.csv"
    labels.to_csv(path, index=False)
    status = main(["-q", "predict", "--checkpoint", str(world["ckpt"]), "--labels", str(path),
                   "--images", str(world["images"]), "--fold", "1", "--workers", "1",
                   "--out", str(tmp_path / "p.csv")])
    err = capsys.readouterr().err.strip()
    assert status == 1 and len(err.splitlines()) == 1 and "Traceback" not in err
    assert "nowhere" in err and labels.loc[i, "timestamp"] in err
