"""tokenizer: train a target vocabulary on the crawl output and extend the base model with it."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from ..errors import DataError
from ..recipe import LanguageCode, StrictModel
from .base import Stage, StageContext
from .crawl import corpus_texts


class TokenizerConfig(StrictModel):
    mode: Literal["extend"] = Field("extend", description="extend: base vocabulary + reachable new pieces")
    vocab_size: int = Field(8000, ge=300, description="size of the target vocabulary trained on the corpus")
    max_new_tokens: int | None = Field(None, ge=1, description="cap on pieces added to the base")
    min_frequency: int = Field(2, ge=1)
    init: Literal["subtoken-mean", "mean"] = "subtoken-mean"
    language: LanguageCode | None = Field(None, description="corpus language to train on (default: target)")


class TokenizerStage(Stage):
    kind = "tokenizer"
    version = "3"  # 2: word-start and digit conventions of the base enforced; 3: fertility report + records
    Config = TokenizerConfig
    requires = ("crawl",)
    produces_model = True

    def run(self, ctx: StageContext) -> dict[str, Any]:
        from ..models import load_model
        from ..tokenize.transplant import first_free_id, init_new_rows, save_tokenizer
        from ..tokenize.vocab import extend, load_backend, train_like

        language = self.config.language or ctx.recipe.languages.target
        crawl = ctx.artifact("crawl")
        texts = corpus_texts(crawl.path, crawl.record, language)
        if not texts:
            raise DataError(f"the crawl found no '{language}' text to train a tokenizer on; "
                             "check the crawl stage's inputs and lid_seed")
        source = ctx.latest_model()
        model, tokenizer = load_model(source.path, device="cpu", dtype="float32")
        spec = load_backend(source.path, tokenizer)
        trained = train_like(spec, texts, self.config.vocab_size, self.config.min_frequency)
        extension = extend(spec, trained, first_id=first_free_id(model, spec),
                           max_new_tokens=self.config.max_new_tokens)
        init = init_new_rows(model, spec, extension, self.config.init)
        out = ctx.out_dir / "model"
        save_tokenizer(tokenizer, extension.tokenizer_json, out)
        model.save_pretrained(out)
        report = fertility_report(ctx, tokenizer, out, {language: texts[:1000]})
        ctx.write_json("fertility.json", report)
        ctx.write_json("scores.json", fertility_records(ctx.step_id, report))
        target = report[language]
        fertility = {"tokens_per_word_before": round(target["before"]["tokens_per_word"], 4),
                     "tokens_per_word_after": round(target["after"]["tokens_per_word"], 4),
                     "token_reduction": round(1 - target["after"]["tokens"] / max(target["before"]["tokens"], 1), 4)}
        ctx.log("vocabulary_extended", added=len(extension.added), **fertility)
        ctx.write_json("new_tokens.json", [{"id": i, "piece": p} for i, p in extension.added])
        stats = {"language": language, "training_texts": len(texts), "added_tokens": len(extension.added),
                 "init": init, "fertility": fertility}
        return {"models": [{"path": "model", "variant": None}],
                "outputs": {"new_tokens": "new_tokens.json", "fertility": "fertility.json"},
                "scores": "scores.json", "stats": stats}


FERTILITY_METRICS = ("tokens_per_word", "tokens_per_char", "byte_fallback_rate")


def fertility_report(ctx: StageContext, base_tokenizer: Any, new_dir: Any,
                     fallback: dict[str, list[str]]) -> dict[str, dict[str, dict[str, float]]]:
    """``{language: {"before": fertility, "after": fertility}}`` on the recipe's LM evaluation sentences
    (every LM language), or on ``fallback`` texts when the recipe scores no LM."""
    from transformers import AutoTokenizer

    from ..evaluate.scorer import lm_texts
    from ..tokenize.fertility import fertility

    lm = ctx.recipe.eval.lm
    sets = {code: lm_texts(lm, code) for code in lm.languages} if lm is not None else {}
    for code, texts in fallback.items():
        sets.setdefault(code, texts)
    new_tokenizer = AutoTokenizer.from_pretrained(new_dir)
    return {code: {"before": fertility(base_tokenizer, texts), "after": fertility(new_tokenizer, texts)}
            for code, texts in sets.items()}


def fertility_records(stage: str, report: dict[str, dict[str, dict[str, float]]]) -> list[dict[str, Any]]:
    """Scoreboard records of kind ``tokenizer``: the base tokenizer as stage ``base``, the new one as ``stage``."""
    return [{"stage": name, "variant": None, "kind": "tokenizer", "language": code, "metric": metric,
             "value": float(entry[when][metric]), "n": int(entry[when]["tokens"])}
            for name, when in (("base", "before"), (stage, "after"))
            for code, entry in report.items()
            for metric in FERTILITY_METRICS]
