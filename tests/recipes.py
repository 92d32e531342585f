"""The tiny recipe every stage kind runs in seconds on the trained stories260K model: shared by the tests and by
the device check (``bench/gpu``), which runs without pytest."""

from __future__ import annotations

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures"
STORIES = FIXTURES / "stories260K"


def tiny_recipe(**overrides: object) -> dict:
    """A recipe that exercises every stage kind on stories260K in seconds."""
    recipe = {
        "name": "tiny",
        "seed": 0,
        "base": {"model": str(STORIES)},
        "languages": {"target": "srd_Latn", "replay": ["eng_Latn"]},
        "eval": {
            "lm": {"sets": str(FIXTURES / "flores200" / "dev"), "languages": ["srd_Latn", "eng_Latn"],
                   "max_sentences": 16},
            "mt": {"sets": str(FIXTURES / "flores200" / "dev"), "directions": ["eng_Latn-srd_Latn"],
                   "max_sentences": 6, "shots": 1, "max_new_tokens": 24,
                   "lid_seed": str(ROOT / "corpora" / "lid-seed")},
        },
        "stages": [
            {"crawl": {"inputs": [str(FIXTURES / "text" / "*.txt"), str(FIXTURES / "warc" / "*.warc.gz")],
                       "lid_seed": str(ROOT / "corpora" / "lid-seed")}},
            {"tokenizer": {"vocab_size": 800}},
            {"cpt": {"tokens": 12000, "block_size": 64, "batch_size": 4, "lr": 1e-3, "checkpoint_every": 5}},
            {"finetune": {
                "data": {"parallel": str(FIXTURES / "parallel"), "directions": ["eng_Latn-srd_Latn"],
                         "max_pairs": 80, "held_out": 8},
                "steps": 4, "batch_size": 4, "lr": 1e-3,
                "variants": {"lora-r4": {"method": "lora", "r": 4}, "rslora-r4": {"method": "rslora", "r": 4},
                             "dora-r4": {"method": "dora", "r": 4}},
            }},
        ],
    }
    recipe.update(overrides)
    return recipe


def write_recipe(path: Path, recipe: dict) -> Path:
    path.write_text(yaml.safe_dump(recipe, sort_keys=False), encoding="utf-8")
    return path
