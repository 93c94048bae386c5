"""trainer/oneshot.sh end to end at toy size (slow: about a minute on two cores)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from model.parts import PARTS

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_oneshot_builds_trains_evaluates_and_exports(tmp_path):
    env = dict(os.environ, PRESET="smoke", TRACKS="48", SECONDS="6", BUDGET_MIN="1",
               FIT_ARGS="--threads=1", PYTHON=sys.executable, WORKERS="1")
    out = tmp_path / "out"
    proc = subprocess.run(["bash", str(ROOT / "trainer" / "oneshot.sh"), str(out)], env=env,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    card = json.loads((out / "partwise.json").read_text())["card"]
    assert list(card["evaluation"]) == ["synth/test"]
    ev = card["evaluation"]["synth/test"]
    assert ev["table2_plan"] in ("drawn", "every") and set(ev["table2_std"]) <= set(PARTS)
    assert (out / "eval-synth" / "report.md").is_file()
    assert "== " in (out / "oneshot.log").read_text()


def test_oneshot_without_arguments_prints_its_usage():
    proc = subprocess.run(["bash", str(ROOT / "trainer" / "oneshot.sh")], capture_output=True, text=True)
    assert proc.returncode == 2
    assert "BUDGET_MIN" in proc.stderr
