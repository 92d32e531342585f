"""A run that stops at a step keeps and shows the scores of the steps before it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import tiny_recipe, write_recipe
from workbench.engine import run_recipe
from workbench.recipe import load_recipe
from workbench.store import RunStore


def test_failed_gate_keeps_the_base_scores_and_scores_says_so(tmp_path: Path) -> None:
    """A vocabulary replaced by one grown on Sardinian only costs English more than the gate allows."""
    stages = [*tiny_recipe()["stages"][:1], {"tokenizer": {"mode": "replace", "vocab_size": 300}}]
    recipe = tiny_recipe(name="gate", stages=stages, languages={"target": "srd_Latn", "replay": []})
    path = write_recipe(tmp_path / "gate.yaml", recipe)
    workspace = tmp_path / "runs"
    with pytest.raises(Exception, match="gate"):
        run_recipe(load_recipe(path), workspace, device="cpu", progress=False, echo=lambda _: None)
    board = RunStore(workspace, "gate").scoreboard()
    assert {r["stage"] for r in board} >= {"base"} and any(r["kind"] == "lm" for r in board)
    shown = subprocess.run([sys.executable, "-m", "workbench.cli", "scores", "gate", "--workspace", str(workspace)],
                           capture_output=True, text=True)
    assert shown.returncode == 0, shown.stderr
    assert "bits_per_byte" in shown.stdout and "no scores yet" not in shown.stdout
    assert "is failed" in shown.stderr and "base" in shown.stderr
