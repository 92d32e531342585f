"""One transplant flow (:func:`workbench.tasks.transplant`) behind the tokenizer stage, ``workbench transplant`` and
``wb.transplant``: the same settings and corpora give the same model whichever way it is run."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from workbench.errors import RecipeError
from workbench.tasks import TokenizerConfig, tokenizer_config
from workbench.tasks import transplant as transplant_task

from .conftest import FIXTURES, ROOT, STORIES, tiny_recipe, write_recipe

FLORES = FIXTURES / "flores200" / "dev"
SRD_FILE = ROOT / "corpora" / "nllb_seed" / "srd_Latn.txt"
ENG_FILE = ROOT / "corpora" / "nllb_seed" / "eng_Latn.txt"
CLI = [sys.executable, "-m", "workbench.cli", "transplant", "--model", str(STORIES), "--no-progress"]

STAGE_SETTINGS = {"mode": "extend", "max_new_tokens": 150, "init": "hybrid", "neighbours": 3, "mix": 0.5,
                  "shrink": 0.2, "gate": {"action": "warn"}}
"""Away from every default that ``workbench transplant`` once dropped (neighbours, mix, shrink, max_new_tokens, the
recipe's seed): the CLI can only match the stage by passing each."""


def same_model(one: Path, two: Path) -> None:
    """Byte-identical tokenizer and config, and equal weight tensors."""
    for name in ("tokenizer.json", "config.json"):
        assert (one / name).read_bytes() == (two / name).read_bytes(), name
    first, second = load_file(one / "model.safetensors"), load_file(two / "model.safetensors")
    assert first.keys() == second.keys()
    for name, tensor in first.items():
        assert torch.equal(tensor, second[name]), name


@pytest.fixture(scope="module")
def stage_run(tmp_path_factory):
    """The tiny recipe's crawl and a tokenizer stage with :data:`STAGE_SETTINGS` (seed 3), scored on LM sets only;
    returns (tokenizer step directory, crawl corpus files by language)."""
    from workbench.engine import run_recipe
    from workbench.recipe import load_recipe
    from workbench.run import load_run
    from workbench.store import RunStore

    base = tmp_path_factory.mktemp("stage")
    recipe = tiny_recipe(name="transplant-stage", seed=3)
    del recipe["eval"]["mt"]
    recipe["stages"] = [recipe["stages"][0], {"tokenizer": STAGE_SETTINGS}]
    result = run_recipe(load_recipe(write_recipe(base / "tiny.yaml", recipe)), base / "runs", device="cpu",
                        progress=False, echo=lambda _: None)
    run = load_run(result.store.root)
    crawl = run.step("crawl")["path"]
    corpus = RunStore.read_artifact(crawl)["outputs"]["corpus"]
    return run.step("tokenizer")["path"], {code: crawl / rel for code, rel in corpus.items()}


def test_the_cli_gives_the_model_the_tokenizer_stage_gives(stage_run, tmp_path) -> None:
    stage_dir, corpus = stage_run
    out = tmp_path / "cli"
    done = subprocess.run([*CLI, "--corpus", str(corpus["srd_Latn"]), "--replay", f"eng_Latn={corpus['eng_Latn']}",
                           "--target", "srd_Latn", "--languages", "srd_Latn,eng_Latn", "--max-new-tokens", "150",
                           "--init", "hybrid", "--neighbours", "3", "--set", "mix=0.5", "--set", "shrink=0.2",
                           "--seed", "3", "--eval-sets", str(FLORES), "--max-sentences", "16", "--gate", "warn",
                           "--out", str(out)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    same_model(stage_dir / "model", out)
    report = json.loads((out / "transplant.json").read_text(encoding="utf-8"))
    record = json.loads((stage_dir / "artifact.json").read_text(encoding="utf-8"))["stats"]
    assert report["config"] == TokenizerConfig.model_validate(STAGE_SETTINGS).model_dump(mode="json")
    assert report["protected"] == record["protected"] == ["eng_Latn"]
    assert report["fertility_by_language"] == json.loads((stage_dir / "fertility.json").read_text(encoding="utf-8"))
    assert {row["language"] for row in report["gate"]["rows"]} == {"srd_Latn", "eng_Latn"}


def test_trim_keeps_the_english_word_lists_from_the_cli_as_from_the_stage(tmp_path) -> None:
    """The stage always adds English's word lists to trim's; ``workbench transplant`` once used only --languages."""
    pytest.importorskip("wordfreq")
    from tokenizers import Tokenizer
    from transformers import AutoTokenizer

    from workbench.tokenize.wordlists import top_words, word_forms

    done = subprocess.run([*CLI, "--corpus", str(SRD_FILE), "--target", "srd_Latn", "--replay",
                           f"eng_Latn={ENG_FILE}", "--mode", "trim", "--keep-words", "200", "--out",
                           str(tmp_path / "cli")], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads((tmp_path / "cli" / "transplant.json").read_text(encoding="utf-8"))
    assert report["keep_words"]["eng_Latn"] == len(top_words("eng_Latn", 200))
    base = AutoTokenizer.from_pretrained(STORIES).backend_tokenizer
    trimmed = Tokenizer.from_file(str(tmp_path / "cli" / "tokenizer.json"))
    assert trimmed.get_vocab_size() < base.get_vocab_size()
    for form in word_forms(top_words("eng_Latn", 200)):
        assert trimmed.encode(form).tokens == base.encode(form).tokens, form
    texts = SRD_FILE.read_text(encoding="utf-8").splitlines()
    english = ENG_FILE.read_text(encoding="utf-8").splitlines()
    staged = transplant_task(STORIES, texts, tmp_path / "task", {"mode": "trim", "keep_words": 200},
                             language="srd_Latn", replay={"eng_Latn": english})  # as the stage calls it
    assert staged.word_counts == report["keep_words"]
    same_model(tmp_path / "task", tmp_path / "cli")


def test_the_cli_seeds_random_rows_as_the_stage_does_with_the_recipe_seed(tmp_path) -> None:
    """``--seed`` is the recipe's ``seed:``, which the stage hands to the row initialization (random, focus)."""
    done = subprocess.run([*CLI, "--corpus", str(SRD_FILE), "--target", "srd_Latn", "--max-new-tokens", "60",
                           "--init", "random", "--seed", "3", "--out", str(tmp_path / "cli")],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    texts = SRD_FILE.read_text(encoding="utf-8").splitlines()
    settings = {"max_new_tokens": 60, "init": "random"}
    for seed in (3, 0):
        transplant_task(STORIES, texts, tmp_path / str(seed), settings, language="srd_Latn", seed=seed)
    same_model(tmp_path / "3", tmp_path / "cli")
    with pytest.raises(AssertionError, match="embed_tokens"):
        same_model(tmp_path / "0", tmp_path / "cli")  # the seed reached the rows


def test_settings_layer_defaults_file_flags_and_set(tmp_path) -> None:
    path = tmp_path / "tokenizer.yaml"
    path.write_text("tokenizer: {init: hybrid, neighbours: 4, gate: {action: warn}}\n", encoding="utf-8")
    config = tokenizer_config(path, {"neighbours": 5, "gate.max_regression": 0.1},
                              ["gate.languages=[eng_Latn]", "join_marks=false"])
    assert (config.init, config.neighbours, config.join_marks) == ("hybrid", 5, False)
    assert (config.gate.action, config.gate.max_regression, config.gate.languages) == ("warn", 0.1, ["eng_Latn"])
    assert config.vocab_size == TokenizerConfig().vocab_size
    with pytest.raises(RecipeError, match=r"gate\.actoin: unknown key; allowed: max_regression, action"):
        tokenizer_config(None, {}, ["gate.actoin=warn"])
    with pytest.raises(RecipeError, match="'neighbours' is not KEY=VALUE"):
        tokenizer_config(None, {}, ["neighbours"])
    with pytest.raises(RecipeError, match="keep_words and trim_rows choose what trim keeps"):
        tokenizer_config(None, {"keep_words": 10})


def test_cli_setting_mistakes_exit_2_naming_the_key(tmp_path) -> None:
    done = subprocess.run([*CLI, "--corpus", str(SRD_FILE), "--set", "neighbors=3", "--out", str(tmp_path / "x")],
                          capture_output=True, text=True)
    assert done.returncode == 2 and "neighbors: unknown key; allowed: mode," in done.stderr
    assert "Traceback" not in done.stderr and not (tmp_path / "x").exists()


def test_the_cli_flags_state_the_stage_defaults() -> None:
    """A flag's help that names a default names the tokenizer stage's, so the two cannot drift apart."""
    from workbench.cli import TRANSPLANT_FIELDS, cli

    defaults = TokenizerConfig().model_dump()
    stated = 0
    for param in cli.commands["transplant"].params:
        found = re.search(r"\(default: ([^)]+)\)", getattr(param, "help", None) or "")
        if param.name in TRANSPLANT_FIELDS and found:
            section, _, field = TRANSPLANT_FIELDS[param.name].rpartition(".")
            default = defaults[section][field] if section else defaults[field]
            assert found.group(1) == str(default), param.name
            stated += 1
    assert stated >= 8
