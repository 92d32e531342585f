"""The workbench: adapt a pretrained language model to a low-resource language, scoring every stage.

The notebook API (``import workbench as wb``; see ``docs/api.md``)::

    run = wb.load_run("runs/sardinian-demo")        # scoreboard, translations, corpus card, curves, plots
    comparison = wb.compare_adapters(None, "adapters/sardinian-demo", "corpora/flores200/dev",
                                     ["eng_Latn-srd_Latn"])  # table, significance, disagreements, plot
    wb.translate("smollm2-135m", ["Good morning."], "eng_Latn", "srd_Latn")
    wb.score_text("smollm2-135m", "corpora/flores200/dev", "srd_Latn")
    wb.transplant("smollm2-135m", texts, "srd-smollm2", {"mode": "extend", "max_new_tokens": 4000},
                  language="srd_Latn", replay={"eng_Latn": english})  # as the recipe's tokenizer stage does

Names are imported on first use, so ``import workbench`` stays fast (no torch until needed).
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "load_run": "run", "Run": "run", "CorpusCard": "run",
    "compare_adapters": "compare", "compare_run": "compare", "Comparison": "compare",
    "translate": "inference", "score_text": "inference", "load": "inference", "clear_model_cache": "inference",
    "transplant": "tasks",
}

if TYPE_CHECKING:
    from .compare import Comparison, compare_adapters, compare_run
    from .inference import clear_model_cache, load, score_text, translate
    from .run import CorpusCard, Run, load_run
    from .tasks import transplant


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'workbench' has no attribute '{name}'")


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])


__all__ = [
    "Comparison", "CorpusCard", "Run", "__version__", "clear_model_cache", "compare_adapters", "compare_run", "load",
    "load_run", "score_text", "translate", "transplant",
]
