"""Put back each bug that issue 14 found no test for, run the test meant to catch it, and
report whether it fails (as it must). Run by hand (slow: training tests), never in CI:

    .venv/bin/python benchmarks/named_survivors.py          # every bug, in a temporary worktree
    .venv/bin/python benchmarks/named_survivors.py 429 gap  # only those whose name contains a word

Each bug is applied to a clean `git worktree` of HEAD (the checkout is never touched) and the
tests run with that worktree's ``src`` first on PYTHONPATH. Exit status 1 if any bug survives.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# (issue 14's wording, file, original text, the bug, tests that must fail)
BUGS = [
    ("class weight dropped from the loss", "src/flarelens/train.py",
     "w = self.weights[y]", "w = torch.ones_like(self.weights[y])",
     ["tests/test_train.py::test_the_loss_is_class_weighted_in_training_and_validation"]),
    ("train --gap silently ignored", "src/flarelens/train.py",
     "row_roles(labels, cfg.fold, inner=cfg.inner, gap=cfg.gap, window=cfg.window)",
     "row_roles(labels, cfg.fold, inner=cfg.inner, gap=None, window=cfg.window)",
     ["tests/test_train.py::test_gap_really_drops_the_rows_whose_window_reaches_the_held_out_quarter"]),
    ("label --gap reports rows dropped but keeps them", "src/flarelens/labels.py",
     "        labels = labels[reaches == 0]\n", "",
     ["tests/test_labels.py::test_make_labels_gap_drops_the_rows_it_reports"]),
    ("a resumed run forgets its best epoch", "src/flarelens/train.py",
     'best = dict(resume_state["best"]) or best', "best = best",
     ["tests/test_train.py::test_a_resumed_run_remembers_its_best_epoch"]),
    ("the +-5 degree rotation drawn in radians", "src/flarelens/data.py",
     "rad = math.radians(float(angle))", "rad = math.radians(math.radians(float(angle)))",
     ["tests/test_data.py::test_rotation_is_torchvisions_nearest_rotation_in_degrees"]),
    ("a training default changed (lr)", "src/flarelens/train.py",
     "    lr: float = 1e-4\n", "    lr: float = 1e-3\n",
     ["tests/test_train.py::test_defaults_and_the_study_recipe_are_pinned"]),
    ("a training default changed (epochs)", "src/flarelens/train.py",
     "    epochs: int = 50\n", "    epochs: int = 40\n",
     ["tests/test_train.py::test_defaults_and_the_study_recipe_are_pinned"]),
    ("HTTP 429 no longer retried", "src/flarelens/fetch.py",
     "if status >= 500 or status == 429:", "if status >= 500:",
     ["tests/test_helioviewer.py::test_rate_limiting_429_is_retried"]),
    ("per-class recall maps drawn from X and M together", "src/flarelens/locations.py",
     "recall_map(frames, threshold, out_dir / png, classes, cell)",
     'recall_map(frames, threshold, out_dir / png, ("X", "M"), cell)',
     ["tests/test_locations.py::test_per_class_recall_maps_and_cells_hold_only_their_class"]),
    ("the plateau schedule stepping on the wrong quantity", "src/flarelens/train.py",
     'return row["inner_loss"] if math.isfinite(row["inner_loss"]) else row["train_loss"]',
     'return row["val_loss"]',
     ["tests/test_train.py::test_plateau_schedule_watches_the_inner_loss",
      "tests/test_train.py::test_plateau_quantity_is_inner_else_training_loss_never_held_out"]),
    ("equal-flux ties going to the later flare", "src/flarelens/labels.py",
     "table.append(np.where(values[right] > values[left], right, left))",
     "table.append(np.where(values[right] >= values[left], right, left))",
     ["tests/test_labels.py::test_equal_flux_ties_go_to_the_earlier_flare",
      "tests/test_labels.py::test_ties_match_brute_force_on_many_equal_flares"]),
    ("a typo in the great-circle distance", "src/flarelens/geometry.py",
     "np.cos(lat1) * np.cos(lat2) * np.sin((lon2 - lon1) / 2)",
     "np.cos(lat1) * np.cos(lat1) * np.sin((lon2 - lon1) / 2)",
     ["tests/test_geometry.py::test_great_circle_against_the_spherical_law_of_cosines"]),
    ("a non-90 degree roll undone in the wrong sense", "src/flarelens/images.py",
     "data = ndimage.rotate(data, -residual,", "data = ndimage.rotate(data, residual,",
     ["tests/test_images.py::test_non_quarter_roll_is_undone_like_sunpy"]),
]


def main(words: list[str]) -> int:
    chosen = [b for b in BUGS if not words or any(w.lower() in b[0].lower() for w in words)]
    python = ROOT / ".venv" / "bin" / "python"
    python = str(python) if python.exists() else sys.executable
    survived = 0
    with tempfile.TemporaryDirectory() as tmp:
        wt = Path(tmp) / "wt"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "-q", str(wt), "HEAD"], check=True)
        try:
            env = dict(os.environ, PYTHONPATH=str(wt / "src"), OMP_NUM_THREADS="1")
            # The tests must pass on the clean copy first, or a failure below proves nothing.
            tests = sorted({t for b in chosen for t in b[4]})
            clean = subprocess.run([python, "-m", "pytest", "-q", "-p", "no:cacheprovider", *tests],
                                   cwd=wt, env=env, capture_output=True, text=True)
            if clean.returncode:
                print("the tests fail on the clean copy:\n" + clean.stdout[-2000:])
                return 1
            for name, file, old, new, tests in chosen:
                path = wt / file
                text = path.read_text()
                if text.count(old) != 1:
                    print(f"{name}: cannot put the bug back (the original text is not found once in {file})")
                    survived += 1
                    continue
                path.write_text(text.replace(old, new))
                try:
                    run = subprocess.run([python, "-m", "pytest", "-q", "-p", "no:cacheprovider", *tests],
                                         cwd=wt, env=env, capture_output=True, text=True)
                finally:
                    path.write_text(text)
                caught = run.returncode == 1
                survived += not caught
                tail = (run.stdout.strip().splitlines() or ["(no output)"])[-1]
                print(f"{'caught  ' if caught else 'SURVIVES'} {name}: {tail}", flush=True)
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(wt)], check=False)
    print(f"{len(chosen) - survived}/{len(chosen)} bugs caught")
    return 1 if survived else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
