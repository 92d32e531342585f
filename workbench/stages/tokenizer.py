"""tokenizer: train a target vocabulary on the crawl output and extend the base model with it."""

from __future__ import annotations

import re
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
    version = "2"  # 2: word-start and digit conventions of the base enforced
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
        fertility = _fertility(tokenizer, out, texts[:1000])
        ctx.log("vocabulary_extended", added=len(extension.added), **fertility)
        ctx.write_json("new_tokens.json", [{"id": i, "piece": p} for i, p in extension.added])
        stats = {"language": language, "training_texts": len(texts), "added_tokens": len(extension.added),
                 "init": init, "fertility": fertility}
        return {"models": [{"path": "model", "variant": None}], "outputs": {"new_tokens": "new_tokens.json"},
                "stats": stats}


def _fertility(base_tokenizer: Any, new_dir: Any, texts: list[str]) -> dict[str, float]:
    """Tokens per word of the target sample before and after (Unicode-aware word count)."""
    from transformers import AutoTokenizer

    new_tokenizer = AutoTokenizer.from_pretrained(new_dir)
    words = sum(len(re.findall(r"\w+", t)) for t in texts) or 1
    before = sum(len(base_tokenizer(t, add_special_tokens=False).input_ids) for t in texts)
    after = sum(len(new_tokenizer(t, add_special_tokens=False).input_ids) for t in texts)
    return {"tokens_per_word_before": round(before / words, 4), "tokens_per_word_after": round(after / words, 4),
            "token_reduction": round(1 - after / max(before, 1), 4)}
