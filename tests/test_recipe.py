"""Recipe validation: every mistake is one readable message naming file, field and what is allowed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from workbench.errors import RecipeError
from workbench.recipe import load_recipe

from .conftest import ROOT, tiny_recipe, write_recipe


def _error(tmp_path: Path, recipe: dict) -> str:
    path = write_recipe(tmp_path / "bad.yaml", recipe)
    with pytest.raises(RecipeError) as info:
        load_recipe(path)
    message = str(info.value)
    assert str(path) in message
    return message


def test_valid_recipe_loads_with_typed_stages(recipe_file: Path) -> None:
    recipe = load_recipe(recipe_file)
    assert [s.kind for s in recipe.stages] == ["crawl", "tokenizer", "cpt", "finetune"]
    assert recipe.stages[2].config.block_size == 64
    assert recipe.stages[2].config.replay.ratio == 0.2  # default filled in


def test_unknown_key_names_path_and_allowed_keys(tmp_path: Path) -> None:
    recipe = tiny_recipe()
    recipe["stages"][2]["cpt"]["learning_rate"] = 1e-4
    message = _error(tmp_path, recipe)
    assert "stages[2].cpt.learning_rate: unknown key; allowed: batch_size, grad_accum, lr, warmup_ratio" in message


def test_unknown_nested_key(tmp_path: Path) -> None:
    recipe = tiny_recipe()
    recipe["eval"]["lm"]["sentences"] = 3
    assert "eval.lm.sentences: unknown key; allowed: sets, split, languages" in _error(tmp_path, recipe)


def test_wrong_type(tmp_path: Path) -> None:
    recipe = tiny_recipe()
    recipe["stages"][2]["cpt"]["lr"] = "fast"
    assert "stages[2].cpt.lr: Input should be a valid number" in _error(tmp_path, recipe)
    assert "(got 'fast')" in _error(tmp_path, recipe)


def test_missing_file(tmp_path: Path) -> None:
    recipe = tiny_recipe()
    recipe["stages"][3]["finetune"]["data"]["parallel"] = "no/such/dir"
    message = _error(tmp_path, recipe)
    assert "stages[3].finetune.data.parallel: path does not exist:" in message
    assert "relative to the recipe's folder" in message


def test_glob_matching_nothing(tmp_path: Path) -> None:
    recipe = tiny_recipe()
    recipe["stages"][0]["crawl"]["inputs"] = ["nothing/*.warc.gz"]
    assert "stages[0].crawl.inputs[0]: no file matches 'nothing/*.warc.gz'" in _error(tmp_path, recipe)


def test_unknown_language_code(tmp_path: Path) -> None:
    recipe = tiny_recipe()
    recipe["languages"]["replay"] = ["eng_Latn", "xqz_Latn"]
    message = _error(tmp_path, recipe)
    assert "languages.replay[1]: unknown ISO 639-3 language 'xqz' in 'xqz_Latn'" in message
    recipe["languages"]["target"] = "srd"
    assert "languages.target: 'srd' is not a FLORES-style code" in _error(tmp_path, recipe)


def test_bad_direction(tmp_path: Path) -> None:
    recipe = tiny_recipe()
    recipe["eval"]["mt"]["directions"] = ["eng_Latn->srd_Latn"]
    assert "eval.mt.directions[0]:" in _error(tmp_path, recipe)


def test_unknown_stage_lists_allowed(tmp_path: Path) -> None:
    recipe = tiny_recipe()
    recipe["stages"].insert(1, {"tokeniser": {"vocab_size": 10}})
    message = _error(tmp_path, recipe)
    assert "stages[1]: unknown stage 'tokeniser'; allowed: crawl, tokenizer, cpt, finetune" in message


def test_missing_required_field_and_missing_base(tmp_path: Path) -> None:
    recipe = tiny_recipe()
    del recipe["base"]
    assert "base: required field is missing" in _error(tmp_path, recipe)


def test_stage_order_is_checked(tmp_path: Path) -> None:
    recipe = tiny_recipe()
    recipe["stages"] = recipe["stages"][1:]
    assert "stages[0].tokenizer: needs a 'crawl' stage before it" in _error(tmp_path, recipe)


def test_relative_paths_resolve_against_recipe_folder(tmp_path: Path) -> None:
    recipe = tiny_recipe()
    recipe["eval"]["lm"]["sets"] = str(Path("..") / "fixtures" / "flores200" / "dev")
    path = write_recipe(ROOT / "tests" / "fixtures" / "_relative.yaml", recipe)
    try:
        # from tests/fixtures, ../fixtures/flores200/dev exists; the process cwd does not matter
        assert load_recipe(path).eval.lm.sets == str((ROOT / "tests" / "fixtures" / "flores200" / "dev").resolve())
    finally:
        path.unlink()


def test_cli_prints_one_message_without_traceback(tmp_path: Path) -> None:
    recipe = tiny_recipe()
    recipe["stages"][2]["cpt"]["bogus"] = 1
    recipe["languages"]["target"] = "zzz_Latn"
    path = write_recipe(tmp_path / "bad.yaml", recipe)
    proc = subprocess.run([sys.executable, "-m", "workbench.cli", "plan", str(path)], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr.startswith(f"error: {path}: invalid recipe")
    assert "languages.target: unknown ISO 639-3 language 'zzz'" in proc.stderr


def test_cli_not_yaml_and_not_found(tmp_path: Path) -> None:
    bad = tmp_path / "x.yaml"
    bad.write_text("name: [unclosed", encoding="utf-8")
    for path, expected in ((bad, "not valid YAML"), (tmp_path / "none.yaml", "recipe file not found")):
        proc = subprocess.run([sys.executable, "-m", "workbench.cli", "plan", str(path)], capture_output=True,
                              text=True, timeout=120)
        assert proc.returncode == 2 and expected in proc.stderr and "Traceback" not in proc.stderr


def test_trim_options_outside_trim_mode_are_refused(tmp_path: Path) -> None:
    recipe = tiny_recipe()
    recipe["stages"][1]["tokenizer"] = {"mode": "extend", "trim_rows": 0.2}
    message = _error(tmp_path, recipe)
    assert "stages[1].tokenizer" in message and "trim_rows" in message and "mode: trim" in message
    recipe["stages"][1]["tokenizer"] = {"mode": "trim", "trim_rows": 0}
    assert "trim_rows" in _error(tmp_path, recipe)


def test_stages_out_of_pipeline_order_are_refused(tmp_path: Path) -> None:
    """crawl, tokenizer, finetune, cpt once ran (finetune before cpt), although the README says it is refused."""
    recipe = tiny_recipe()
    crawl, tokenizer, cpt, finetune = recipe["stages"]
    recipe["stages"] = [crawl, tokenizer, finetune, cpt]
    assert "stages[3].cpt: comes after stages[2].finetune" in _error(tmp_path, recipe)
