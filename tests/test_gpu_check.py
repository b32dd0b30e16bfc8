"""benchmarks/gpu_check.py on a machine without a GPU: says so and exits 0."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.py"


def test_gpu_check_without_a_gpu_says_so_and_exits_0(tmp_path):
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="", PYTHONPATH=os.pathsep.join(sys.path))
    done = subprocess.run([sys.executable, str(SCRIPT), "--work", str(tmp_path / "work")], capture_output=True,
                          text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "no CUDA GPU is visible" in done.stdout and "Traceback" not in done.stderr
    assert not (tmp_path / "work").exists()  # nothing was prepared or run
