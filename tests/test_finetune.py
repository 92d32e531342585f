"""The finetune stage's data sources and variants on stories260K, published adapters and merging."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer

import workbench.train.loop
from workbench.engine import run_recipe
from workbench.errors import DataError
from workbench.recipe import load_recipe
from workbench.stages.finetune import EncodedExamples, _encode_examples, _example_stats, read_instructions

from .conftest import FIXTURES, STORIES, tiny_recipe, write_recipe
from .test_train import _Crash, _CrashAt


def test_instruction_jsonl_reads_every_accepted_shape_and_counts_bad_lines(tmp_path: Path) -> None:
    path = tmp_path / "instructions.jsonl"
    path.write_text("\n".join([
        json.dumps({"instruction": "Translate to Sardinian", "input": "Good morning", "output": "Bona die"}),
        json.dumps({"prompt": "Say hello", "completion": "Salude"}),
        json.dumps({"messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "Hi"},
                                 {"role": "assistant", "content": "Ciao"}]}),
        "not json", json.dumps({"prompt": "no answer"}), "",
    ]), encoding="utf-8")
    assert read_instructions(path) == [("Translate to Sardinian\n\nGood morning", "Bona die"),
                                       ("Say hello", "Salude"), ("Hi", "Ciao")]
    path.write_text("not json\n", encoding="utf-8")
    with pytest.raises(DataError, match="no instruction examples"):
        read_instructions(path)


@pytest.fixture(scope="module")
def variants_run(tmp_path_factory: pytest.TempPathFactory):
    base = tmp_path_factory.mktemp("ft")
    instructions = base / "instructions.jsonl"
    instructions.write_text("\n".join(json.dumps({"prompt": f"Count to {i}", "completion": " ".join(
        str(k) for k in range(i))}) for i in range(2, 30)), encoding="utf-8")
    recipe = tiny_recipe(eval={"mt": {"sets": str(FIXTURES / "flores200" / "dev"), "directions": [
        "eng_Latn-srd_Latn"], "max_sentences": 4, "shots": 0, "max_new_tokens": 8}})
    recipe["stages"] = [recipe["stages"][0], {"finetune": {
        "data": {"parallel": str(FIXTURES / "flores200" / "dev"), "split": "dev",
                 "directions": ["eng_Latn-srd_Latn", "srd_Latn-eng_Latn"], "max_pairs": 40, "held_out": 4,
                 "instructions": str(instructions)},
        "steps": 3, "batch_size": 4, "lr": 1e-3,
        "variants": {"lora-r4": {"method": "lora", "r": 4}, "full": {"method": "full", "lr": 1e-4}}}}]
    path = write_recipe(base / "ft.yaml", recipe)
    result = run_recipe(load_recipe(path), base / "runs", device="cpu", progress=False, echo=lambda _: None)
    return base, result


def test_full_and_adapter_variants_are_trained_scored_and_published(variants_run) -> None:
    base, result = variants_run
    ids = [s["id"] for s in result.steps]
    assert "score:finetune/full" in ids and "score:finetune/lora-r4" in ids
    stage = Path(next(s["path"] for s in result.steps if s["id"] == "finetune"))
    record = json.loads((stage / "artifact.json").read_text())
    stats = record["stats"]
    assert stats["examples_read"] == 2 * 40 + 24  # max_pairs per direction + the instruction examples
    # stories260K's small vocabulary makes many pairs longer than max_length (160): kept + dropped = read
    assert stats["examples"] + stats["dropped"]["longer_than_max_length"] == stats["examples_read"]
    full = AutoModelForCausalLM.from_pretrained(stage / "adapters" / "full")  # a whole model
    assert full.config.vocab_size > 0
    published = base / "adapters" / "tiny"
    meta = json.loads((published / "lora-r4" / "metadata.json").read_text())
    assert (published / "lora-r4" / "adapter_config.json").is_file()
    assert {"base_model_hash", "tokenizer_hash", "data_hash", "trainable_parameters", "train_seconds",
            "peak_memory_mb", "config"} <= meta.keys()
    assert any(s["metric"] == "chrf++" and s["direction"] == "eng_Latn-srd_Latn" for s in meta["scores"])
    assert json.loads((published / "full" / "metadata.json").read_text())["config"]["method"] == "full"


def test_merge_cli_writes_a_model_equal_to_base_plus_adapter(variants_run, tmp_path: Path) -> None:
    from peft import PeftModel

    base, _ = variants_run
    adapter = base / "adapters" / "tiny" / "lora-r4"
    done = subprocess.run([sys.executable, "-m", "workbench.cli", "merge", "--adapter", str(adapter), "--out",
                           str(tmp_path / "merged"), "--device", "cpu"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    merged = AutoModelForCausalLM.from_pretrained(tmp_path / "merged")
    meta = json.loads((adapter / "metadata.json").read_text())
    reference = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(meta["base_model"]), str(adapter))
    ids = torch.tensor([[1, 20, 30, 40, 50]])
    with torch.no_grad():
        assert torch.allclose(merged(ids).logits, reference(ids).logits, atol=1e-5)
    full = subprocess.run([sys.executable, "-m", "workbench.cli", "merge", "--adapter", str(adapter.parent / "full"),
                           "--out", str(tmp_path / "x")], capture_output=True, text=True, timeout=300)
    assert full.returncode != 0 and "already a standalone model" in full.stderr


# ------------------------------------------------------------------------------------ dropped examples


def _counting_examples(count: int) -> list[tuple[str, str, str, str]]:
    """Instruction examples whose completions grow longer and longer."""
    return [("", "", "Say the numbers", " ".join(str(k) for k in range(n))) for n in range(1, count + 1)]


def test_dropped_examples_are_counted_and_the_warning_suggests_a_max_length(caplog) -> None:
    tokenizer = AutoTokenizer.from_pretrained(STORIES)
    examples = _counting_examples(100)
    encoded = _encode_examples(tokenizer, "plain", examples, max_length=60)
    too_long = sum(length > 60 for length in encoded.lengths)
    assert 2 < too_long < 100
    events: list[dict] = []
    stats = _example_stats(encoded, EncodedExamples(), 3, 60, lambda event, **f: events.append({"event": event, **f}))
    assert stats["examples"] == 100 - too_long == len(encoded.rows) and stats["examples_read"] == 100
    assert stats["dropped"] == {"longer_than_max_length": too_long} and stats["instruction_lines_skipped"] == 3
    assert stats["example_tokens"]["max"] == max(encoded.lengths)
    warning = next(e for e in events if e["event"] == "examples_dropped")
    assert warning["level"] == "warning" and warning["dropped"] == too_long
    assert "max_length=60" in caplog.text and f"max_length: {warning['suggested_max_length']}" in caplog.text
    # the suggested value keeps 99% of the examples: no warning any more
    suggested = _encode_examples(tokenizer, "plain", examples, max_length=warning["suggested_max_length"])
    assert sum(suggested.dropped.values()) <= 1
    quiet: list[str] = []
    _example_stats(suggested, EncodedExamples(), 0, warning["suggested_max_length"], lambda e, **f: quiet.append(e))
    assert quiet == []


# ------------------------------------------------------------------------------------ resume


def _finetune_recipe(tmp_path: Path) -> Path:
    recipe = tiny_recipe(eval={})
    recipe["stages"] = [{"finetune": {
        "data": {"parallel": str(FIXTURES / "parallel"), "directions": ["eng_Latn-srd_Latn"], "max_pairs": 40,
                 "held_out": 4},
        "steps": 6, "batch_size": 4, "lr": 1e-3, "checkpoint_every": 2, "max_length": 300,
        "variants": {"lora-r4": {"method": "lora", "r": 4}, "dora-r4": {"method": "dora", "r": 4}}}}]
    return write_recipe(tmp_path / "ft.yaml", recipe)


def _finetune_dir(workspace: Path) -> Path:
    return next((workspace / "tiny" / "stages").glob("finetune-*"))


def test_a_variant_resumes_from_its_checkpoint_like_an_uninterrupted_one(tmp_path: Path, monkeypatch) -> None:
    path = _finetune_recipe(tmp_path)
    real_train = workbench.train.loop.train

    def crash_in_dora(model, batch_for, settings, **kwargs):
        if kwargs.get("desc") == "finetune dora-r4":  # after its checkpoint of step 4
            kwargs["callbacks"] = {"crash": _CrashAt(5)}
        return real_train(model, batch_for, settings, **kwargs)

    monkeypatch.setattr(workbench.train.loop, "train", crash_in_dora)
    with pytest.raises(_Crash):
        run_recipe(load_recipe(path), tmp_path / "runs", device="cpu", progress=False, echo=lambda _: None)
    monkeypatch.setattr(workbench.train.loop, "train", real_train)
    result = run_recipe(load_recipe(path), tmp_path / "runs", device="cpu", progress=False, echo=lambda _: None)
    events = result.store.events()
    second = events[max(i for i, e in enumerate(events) if e["event"] == "run_started"):]
    assert [(e["variant"], e["from_step"]) for e in second if e["event"] == "resumed"] == [("dora-r4", 4)]
    assert [e["variant"] for e in second if e["event"] == "variant_cached"] == ["lora-r4"]

    run_recipe(load_recipe(path), tmp_path / "clean", device="cpu", progress=False, echo=lambda _: None)
    resumed, clean = _finetune_dir(tmp_path / "runs"), _finetune_dir(tmp_path / "clean")
    assert not (resumed / "checkpoints").exists()
    for variant in ("lora-r4", "dora-r4"):
        metas = [json.loads((d / "adapters" / variant / "metadata.json").read_text()) for d in (resumed, clean)]
        assert metas[0]["final_loss"] == pytest.approx(metas[1]["final_loss"], rel=1e-5)
        assert metas[0]["held_out_loss"] == pytest.approx(metas[1]["held_out_loss"], rel=1e-5)
        weights = [load_file(d / "adapters" / variant / "adapter_model.safetensors") for d in (resumed, clean)]
        assert weights[0].keys() == weights[1].keys()
        for name, value in weights[1].items():
            assert torch.allclose(weights[0][name], value, atol=1e-6), (variant, name)
    # the stage's stats count what max_length dropped, and the events say so
    stats = json.loads((resumed / "artifact.json").read_text())["stats"]
    dropped = stats["dropped"].get("longer_than_max_length", 0)
    assert stats["examples"] + dropped == stats["examples_read"] == 40  # max_pairs (held-out pairs apart)
    assert dropped > 0 and any(e["event"] == "examples_dropped" for e in second)
