"""The engine end to end on stories260K: every stage does real work, caching, invalidation, resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from workbench.engine import build_steps, plan, run_recipe
from workbench.recipe import load_recipe
from workbench.store import SCORE_FIELDS, RunStore

from .conftest import STORIES, tiny_recipe, write_recipe


def _artifact(result, step_id: str) -> Path:
    return Path(next(s["path"] for s in result.steps if s["id"] == step_id))


def test_every_step_ran_and_manifest_is_complete(finished_run) -> None:
    _, workspace, result = finished_run
    ids = [s["id"] for s in result.steps]
    assert ids == ["base", "score:base", "crawl", "contamination:crawl", "floor:crawl", "tokenizer",
                   "score:tokenizer", "cpt", "contamination:cpt", "score:cpt", "finetune", "contamination:finetune",
                   "score:finetune/lora-r4", "score:finetune/rslora-r4", "score:finetune/dora-r4"]
    assert all(s["status"] in ("ran", "base") for s in result.steps)
    manifest = RunStore(workspace, "tiny").manifest()
    assert manifest["status"] == "finished"
    assert manifest["keys"].keys() == set(ids) and all(len(k) == 64 for k in manifest["keys"].values())
    assert {"torch", "transformers", "peft", "sacrebleu"} <= manifest["versions"].keys()
    assert manifest["device"] == "cpu" and manifest["seed"] == 0 and manifest["seeds"]["cpt"] == ids.index("cpt")
    assert manifest["recipe"]["stages"][2]["cpt"]["replay"]["ratio"] == 0.2  # resolved, defaults included
    assert all("seconds" in s for s in manifest["steps"])
    events = [e["event"] for e in RunStore(workspace, "tiny").events()]
    assert events[0] == "run_started" and events[-1] == "run_finished"
    assert not list((workspace / "tiny" / "stages").glob(".partial-*"))


def test_scoreboard_schema_and_coverage(finished_run) -> None:
    _, workspace, result = finished_run
    board = json.loads((workspace / "tiny" / "scoreboard.json").read_text())
    assert board == result.scoreboard
    for record in board:
        assert set(SCORE_FIELDS) - {"language", "direction"} <= record.keys()
        assert record["kind"] in ("corpus", "tokenizer", "lm", "mt", "detector", "contamination")
        assert ("language" in record) != ("direction" in record)
        assert (isinstance(record["value"], float) or record.get("skipped")) and record["n"] > 0
        if record["kind"] == "mt" and not record.get("skipped"):  # (spBLEU offline: a record with its reason)
            assert "signature" in record
        if record["kind"] == "detector":
            assert 0.0 <= record["value"] <= 1.0
    scores_dir = workspace / "tiny" / "scores"
    rows = [json.loads(line) for f in scores_dir.glob("score-finetune-*/translations.jsonl")
            for line in f.read_text().splitlines()]
    assert len(rows) == 3 * 6 and all(set(r["flags"]) == {"empty", "script_leak", "copy", "repetition",
                                                        "off_target", "truncated"} for r in rows)
    contamination = {(r["stage"], r.get("language") or r.get("direction"), r["metric"]) for r in board
                     if r["kind"] == "contamination"}
    assert {("crawl", "srd_Latn", "overlap_rate"), ("finetune", "eng_Latn-srd_Latn", "source_overlap_rate"),
            ("cpt", "eng_Latn-srd_Latn", "reference_overlap_rate")} <= contamination
    floor = {(r["language"], r["metric"]) for r in board if r["stage"] == "floor"}
    assert floor == {(c, m) for c in ("srd_Latn", "eng_Latn") for m in ("bits_per_byte", "bits_per_char")}
    corpus = {(r["language"], r["metric"]): r["value"] for r in board if r["kind"] == "corpus"}
    assert corpus[("srd_Latn", "documents")] > 300 and corpus[("srd_Latn", "words")] > corpus[("srd_Latn", "documents")]
    models = {(r["stage"], r["variant"]) for r in board
              if r["kind"] not in ("contamination", "corpus") and r["stage"] != "floor"}
    assert models == {("base", None), ("tokenizer", None), ("cpt", None), ("finetune", "lora-r4"),
                      ("finetune", "rslora-r4"), ("finetune", "dora-r4")}
    for stage, variant in models:
        metrics = {(r.get("language") or r.get("direction"), r["metric"]) for r in board
                   if (r["stage"], r["variant"]) == (stage, variant)}
        assert {("srd_Latn", "bits_per_byte"), ("eng_Latn", "bits_per_byte"),
                ("eng_Latn-srd_Latn", "chrf++"), ("eng_Latn-srd_Latn", "bleu"),
                ("eng_Latn-srd_Latn", "off_target_rate"), ("eng_Latn-srd_Latn", "script_leak_rate"),
                ("eng_Latn-srd_Latn", "copy_rate"), ("eng_Latn-srd_Latn", "repetition_rate"),
                ("eng_Latn-srd_Latn", "empty_rate")} <= metrics


def test_crawl_wrote_language_identified_corpora(finished_run) -> None:
    _, _, result = finished_run
    crawl = _artifact(result, "crawl")
    record = json.loads((crawl / "artifact.json").read_text())
    assert set(record["outputs"]["corpus"]) == {"srd_Latn", "eng_Latn"}
    srd = [json.loads(line) for line in (crawl / "corpus" / "srd_Latn.jsonl").read_text().splitlines()]
    assert len(srd) > 300 and all(r["language"] == "srd_Latn" and r["source"] for r in srd)
    assert len({r["text"] for r in srd}) == len(srd)  # no exact duplicates


def test_tokenizer_added_distinct_rows_and_kept_base_rows(finished_run) -> None:
    _, _, result = finished_run
    new_dir = _artifact(result, "tokenizer") / "model"
    base = AutoModelForCausalLM.from_pretrained(STORIES)
    new = AutoModelForCausalLM.from_pretrained(new_dir)
    old_rows, new_rows = base.get_input_embeddings().weight, new.get_input_embeddings().weight
    assert new_rows.shape[0] > old_rows.shape[0] + 100
    assert torch.equal(new_rows[: old_rows.shape[0]], old_rows)  # base rows untouched
    added = new_rows[old_rows.shape[0]:]
    assert torch.unique(added, dim=0).shape[0] > 0.9 * added.shape[0]  # rows are not all equal
    tokenizer = AutoTokenizer.from_pretrained(new_dir)
    text = "Sa limba sarda est una limba romanza."
    assert len(tokenizer(text).input_ids) < len(AutoTokenizer.from_pretrained(STORIES)(text).input_ids)
    assert tokenizer.decode(tokenizer(text).input_ids, skip_special_tokens=True) == text


def test_cpt_and_finetune_changed_weights(finished_run) -> None:
    _, _, result = finished_run
    before = AutoModelForCausalLM.from_pretrained(_artifact(result, "tokenizer") / "model").state_dict()
    after = AutoModelForCausalLM.from_pretrained(_artifact(result, "cpt") / "model").state_dict()
    changed = [n for n in before if not torch.equal(before[n], after[n])]
    assert len(changed) > 0.9 * len(before)
    from safetensors.torch import load_file

    for variant in ("lora-r4", "rslora-r4", "dora-r4"):
        adapter = _artifact(result, "finetune") / "adapters" / variant
        weights = load_file(adapter / "adapter_model.safetensors")
        lora_b = [w for n, w in weights.items() if "lora_B" in n]
        assert lora_b and all(float(w.abs().sum()) > 0 for w in lora_b)  # B starts at zero: it trained
        meta = json.loads((adapter / "metadata.json").read_text())
        assert meta["trainable_parameters"] > 0 and meta["steps"] == 4


def test_scores_come_from_the_evaluated_model(finished_run) -> None:
    from workbench.evaluate.datasets import read_lines
    from workbench.evaluate.lm import score_texts
    from workbench.models import pick_dtype

    path, _, result = finished_run
    recipe = load_recipe(path)
    texts = read_lines(recipe.eval.lm.sets, "srd_Latn", "dev")[:16]
    board = result.scoreboard
    dtype = pick_dtype("cpu", recipe.base.dtype)  # the engine scores in the recipe's dtype (auto: bf16 if native)
    for stage, model_dir in (("base", STORIES), ("cpt", _artifact(result, "cpt") / "model")):
        model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype).eval()
        expected = score_texts(model, AutoTokenizer.from_pretrained(model_dir), texts).bits_per_byte
        got = next(r["value"] for r in board if r["stage"] == stage and r.get("language") == "srd_Latn"
                   and r["metric"] == "bits_per_byte")
        assert got == pytest.approx(expected, abs=1e-6)
    values = {r["stage"]: r["value"] for r in board if r.get("language") == "srd_Latn"
              and r["metric"] == "bits_per_byte" and r["variant"] is None}
    assert values["cpt"] < values["base"]  # continued pretraining on Sardinian helped Sardinian


def test_second_run_recomputes_nothing(finished_run) -> None:
    path, workspace, first = finished_run
    again = run_recipe(load_recipe(path), workspace, device="cpu", progress=False, echo=lambda _: None)
    assert {s["status"] for s in again.steps} == {"base", "cached"}
    assert again.scoreboard == first.scoreboard


def test_editing_one_stage_invalidates_it_and_later_steps_only(finished_run, tmp_path: Path) -> None:
    path, workspace, _ = finished_run
    recipe = tiny_recipe()
    recipe["stages"][2]["cpt"]["lr"] = 5e-4
    edited = load_recipe(write_recipe(path.parent / "edited.yaml", recipe))
    status = {step.id: state for step, state in plan(edited, RunStore(workspace, "tiny"))}
    assert status["crawl"] == status["tokenizer"] == status["score:tokenizer"] == status["score:base"] == "cached"
    assert status["cpt"] == status["score:cpt"] == status["finetune"] == status["contamination:cpt"] == "run"
    assert status["contamination:crawl"] == status["floor:crawl"] == "cached"
    assert status["score:finetune/dora-r4"] == "run"

    recipe = tiny_recipe()
    recipe["eval"]["mt"]["max_new_tokens"] = 10
    scored = {step.id: state for step, state in plan(load_recipe(write_recipe(tmp_path / "e.yaml", recipe)),
                                                     RunStore(workspace, "tiny"))}
    assert {k for k, v in scored.items() if v == "run"} == {k for k in scored if k.startswith("score:")}


def test_keys_depend_on_code_version(recipe_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from workbench.stages.cpt import CPTStage

    before = {s.id: s.key for s in build_steps(load_recipe(recipe_file))}
    monkeypatch.setattr(CPTStage, "version", "999")
    after = {s.id: s.key for s in build_steps(load_recipe(recipe_file))}
    assert [k for k in before if before[k] != after[k]] == [
        "cpt", "contamination:cpt", "score:cpt", "finetune", "contamination:finetune", "score:finetune/lora-r4",
        "score:finetune/rslora-r4", "score:finetune/dora-r4"]


def _wait_for(path: Path, event: str, step: str, proc: subprocess.Popen, timeout: float = 240) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        assert proc.poll() is None, "the run ended before it could be killed"
        if path.exists() and any(f'"event": "{event}"' in line and f'"step": "{step}"' in line
                                 for line in path.read_text().splitlines()):
            return
        time.sleep(0.02)
    raise AssertionError(f"no {event} event for {step}")


def test_sigkill_mid_stage_then_continue(tmp_path: Path) -> None:
    recipe = tiny_recipe(eval={})
    recipe["stages"][2]["cpt"].update(tokens=60000, checkpoint_every=3, ema=0.9, eval_every=4)
    path = write_recipe(tmp_path / "tiny.yaml", recipe)
    workspace = tmp_path / "runs"
    command = [sys.executable, "-m", "workbench.cli", "run", str(path), "--workspace", str(workspace),
               "--device", "cpu", "--no-progress"]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    events = workspace / "tiny" / "events.jsonl"
    _wait_for(events, "checkpoint_saved", "cpt", proc)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    store = RunStore(workspace, "tiny")
    assert store.status() == "interrupted"
    partial = list((workspace / "tiny" / "stages").glob(".partial-cpt-*"))
    assert len(partial) == 1 and not (partial[0] / "artifact.json").exists()
    (partial[0] / "model").mkdir()  # a half-written output that must never be reused
    (partial[0] / "model" / "junk").write_text("half")

    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    second = [e for e in store.events()]
    second = second[max(i for i, e in enumerate(second) if e["event"] == "run_started"):]
    cached = {e["step"] for e in second if e["event"] == "step_cached"}
    assert {"crawl", "tokenizer"} <= cached
    started = next(e for e in second if e["event"] == "step_started" and e["step"] == "cpt")
    assert started["resume"] is True
    resumed = next(e for e in second if e["event"] == "resumed")
    assert resumed["from_step"] >= 3
    cpt_dir = next((workspace / "tiny" / "stages").glob("cpt-*"))
    assert not (cpt_dir / "model" / "junk").exists() and not (cpt_dir / "checkpoints").exists()
    assert not list((workspace / "tiny" / "stages").glob(".partial-*"))

    # the resumed run ends where an uninterrupted run ends
    clean = run_recipe(load_recipe(path), tmp_path / "clean", device="cpu", progress=False, echo=lambda _: None)
    resumed_loss = json.loads((cpt_dir / "artifact.json").read_text())["stats"]["final_loss"]
    clean_dir = next(Path(s["path"]) for s in clean.steps if s["id"] == "cpt")
    clean_loss = json.loads((clean_dir / "artifact.json").read_text())["stats"]["final_loss"]
    assert resumed_loss == pytest.approx(clean_loss, rel=1e-3)
    # ... with the same held-out curves and the same EMA weights (their state was checkpointed too)
    curves = [json.loads((d / "curves.json").read_text())["points"] for d in (cpt_dir, clean_dir)]
    assert [p["step"] for p in curves[0]] == [p["step"] for p in curves[1]]
    for resumed_point, clean_point in zip(*curves, strict=True):
        assert resumed_point["bpb"] == pytest.approx(clean_point["bpb"], rel=1e-3)
    emas = [AutoModelForCausalLM.from_pretrained(d / "model-ema").get_input_embeddings().weight
            for d in (cpt_dir, clean_dir)]
    assert torch.allclose(emas[0], emas[1], atol=1e-4)
