"""`workbench compare` on the session's finished tiny run: tables, significance as sacrebleu computes it, plot."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from sacrebleu.metrics import BLEU, CHRF
from sacrebleu.significance import PairedTest

from workbench.compare import compare_run
from workbench.store import RunStore


def _hypotheses(workspace: Path, step_id: str) -> list[dict]:
    step = next(s for s in RunStore(workspace, "tiny").manifest()["steps"] if s["id"] == step_id)
    return [json.loads(line) for line in (Path(step["path"]) / "translations.jsonl").read_text().splitlines()]


def test_compare_matches_the_scoreboard_and_sacrebleus_own_bootstrap(finished_run) -> None:
    _, workspace, _ = finished_run
    store = RunStore(workspace, "tiny")
    comparison = compare_run(store, n_samples=300)
    assert comparison.stage == "finetune" and comparison.reference == "cpt" and comparison.baseline == "cpt"
    assert comparison.variants == ["lora-r4", "rslora-r4", "dora-r4"]
    board = store.scoreboard()
    for row in comparison.rows:
        stage, variant = ("cpt", None) if row["system"] == "cpt" else ("finetune", row["system"])
        expected = next(r["value"] for r in board if r["stage"] == stage and r.get("variant") == variant
                        and r.get("direction") == row["direction"] and r["metric"] == "chrf++")
        assert row["chrf++"] == expected
    # the same test run independently on the stored hypotheses
    base = _hypotheses(workspace, "score:cpt")
    systems = [("cpt", [r["hypothesis"] for r in base])] + [
        (v, [r["hypothesis"] for r in _hypotheses(workspace, f"score:finetune/{v}")]) for v in comparison.variants]
    _, results = PairedTest(systems, {"bleu": BLEU(), "chrf++": CHRF(word_order=2)}, [[r["reference"] for r in base]],
                            test_type="bs", n_samples=300)()
    chrf_key = next(k for k in results if k.lower().startswith("chrf"))
    for position, name in enumerate(results["System"]):
        ours = next(r for r in comparison.paired if r["system"] == name)
        assert ours["chrf++"] == pytest.approx(results[chrf_key][position].score)
        assert ours["chrf++_p"] == results[chrf_key][position].p_value
    retention = {(r["system"], r["language"]): r["delta"] for r in comparison.retention}
    assert retention[("cpt", "srd_Latn")] == 0.0 and ("lora-r4", "eng_Latn") in retention
    assert all(comparison.costs[v]["trainable_parameters"] > 0 for v in comparison.variants)


def test_compare_cli_prints_the_table_and_writes_the_pareto_plot(finished_run, tmp_path: Path) -> None:
    _, workspace, _ = finished_run
    plot = tmp_path / "pareto.png"
    done = subprocess.run([sys.executable, "-m", "workbench.cli", "compare", "tiny", "--workspace", str(workspace),
                           "--samples", "100", "--baseline", "lora-r4", "--plot", str(plot)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "variants vs lora-r4" in done.stdout and "dora-r4" in done.stdout and "LM retention" in done.stdout
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    bad = subprocess.run([sys.executable, "-m", "workbench.cli", "compare", "tiny", "--workspace", str(workspace),
                          "--baseline", "nope"], capture_output=True, text=True, timeout=300)
    assert bad.returncode != 0 and "unknown baseline 'nope'" in bad.stderr and "Traceback" not in bad.stderr
