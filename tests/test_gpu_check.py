"""The device check (bench/gpu/check.py) in its smoke mode: the same code on CPU with tiny shapes, so that
the check a GPU machine runs in one short call cannot rot between the calls."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from .recipes import ROOT


@pytest.mark.slow
def test_the_device_check_runs_every_part_in_smoke_mode(tmp_path: Path) -> None:
    out = tmp_path / "gpu.json"
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "gpu" / "check.py"), "--smoke", "--out", str(out)],
                          capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert out.is_file(), done.stderr[-3000:]
    results = json.loads(out.read_text(encoding="utf-8"))
    failed = {name: part.get("error") for name, part in results["parts"].items() if part["status"] != "ok"}
    assert not failed and done.returncode == 0, failed
    assert set(results["parts"]) == {"plan", "trainer", "run", "ema"}
    plan = results["parts"]["plan"]
    assert {row["variant"] for row in plan["rows"]} | set(plan["skipped"]) >= {"finetune/lora-r64", "cpt"}
    assert all(row["status"] == "ok" and row["estimated_allocator_mb"] > 0 for row in plan["rows"]), plan["rows"]
    assert set(results["parts"]["trainer"]["ratios"]) == {"smollm2-135m-shaped", "gemma3-270m-shaped"}
    assert results["parts"]["ema"]["ema_devices"] == ["cpu"]
    assert set(results["parts"]["run"]["stages"]) == {"crawl", "tokenizer", "cpt", "finetune"}
