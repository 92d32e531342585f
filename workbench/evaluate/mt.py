"""Translation with a causal LM (few-shot prompt, greedy decoding) and its metrics (sacrebleu)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from sacrebleu.metrics import BLEU, CHRF
from tqdm.auto import tqdm
from transformers import GenerationConfig, StoppingCriteria, StoppingCriteriaList

from .prompts import clean_hypothesis, encode_prompt, prompt_style, render_prompt


class NewlineStop(StoppingCriteria):
    """Marks a sequence finished once the text generated after the prompt contains a newline (or EOS)."""

    def __init__(self, tokenizer, prompt_length: int) -> None:
        self.tokenizer = tokenizer
        self.prompt_length = prompt_length
        self.done: torch.Tensor | None = None

    def __call__(self, input_ids: torch.LongTensor, scores=None, **kwargs) -> torch.BoolTensor:
        if self.done is None:
            self.done = torch.zeros(input_ids.shape[0], dtype=torch.bool)
        eos = self.tokenizer.eos_token_id
        for row in (~self.done).nonzero().flatten().tolist():
            new_ids = input_ids[row, self.prompt_length :]
            new = self.tokenizer.decode(new_ids, skip_special_tokens=True)
            self.done[row] = "\n" in new or (eos is not None and bool((new_ids == eos).any()))
        return self.done.to(input_ids.device)


def _left_pad(sequences: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, seq in enumerate(sequences):
        if seq:
            ids[row, width - len(seq) :] = torch.tensor(seq)
            mask[row, width - len(seq) :] = 1
    return ids, mask


def _fit(ids: list[int], limit: int, bos: int | None) -> list[int]:
    """Cut a too-long prompt from the left (exemplars go first; a leading BOS is kept)."""
    if len(ids) <= limit:
        return ids
    keep_bos = bos is not None and ids[:1] == [bos]
    return [bos, *ids[len(ids) - limit + 1:]] if keep_bos else ids[len(ids) - limit:]


def _prompt_limit(model, max_new_tokens: int) -> int | None:
    positions = getattr(model.config, "max_position_embeddings", None)
    return max(positions - max_new_tokens, 16) if isinstance(positions, int) else None


def _pad_id(tokenizer) -> int:
    """The pad token, else EOS (finished rows are filled with it, and it is skipped when decoding)."""
    for token_id in (tokenizer.pad_token_id, tokenizer.eos_token_id):
        if token_id is not None:
            return token_id
    return 0


def _generation_config(model, tokenizer, max_new_tokens: int, pad_id: int) -> GenerationConfig:
    model_eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    model_eos = model_eos if isinstance(model_eos, list) else [model_eos]
    eos = sorted({i for i in [tokenizer.eos_token_id, *model_eos] if i is not None}) or None
    return GenerationConfig(
        do_sample=False,
        num_beams=1,
        max_new_tokens=max_new_tokens,
        use_cache=True,
        pad_token_id=pad_id,
        eos_token_id=eos,
        bos_token_id=tokenizer.bos_token_id,
    )


def _generate_batch(model, tokenizer, prompts: list[list[int]], config: GenerationConfig) -> list[str]:
    ids, mask = _left_pad(prompts, config.pad_token_id)
    stop = NewlineStop(tokenizer, ids.shape[1])
    out = model.generate(
        input_ids=ids.to(model.device),
        attention_mask=mask.to(model.device),
        generation_config=config,
        stopping_criteria=StoppingCriteriaList([stop]),
    )
    return tokenizer.batch_decode(out[:, ids.shape[1] :], skip_special_tokens=True)


def translate(
    model,
    tokenizer,
    sources: Sequence[str],
    src: str,
    tgt: str,
    *,
    exemplars: Sequence[tuple[str, str]] = (),
    batch_size: int = 8,
    max_new_tokens: int = 96,
    prompt: str = "auto",
    progress: bool = False,
) -> list[str]:
    """Greedy few-shot translations of ``sources`` (``src`` -> ``tgt``), one line each, in input order.

    ``prompt``: ``auto`` (the chat template of an instruct model's tokenizer, else plain), ``plain`` or
    ``chat`` (see :mod:`workbench.evaluate.prompts`). Prompts are left-padded and batched by length; a
    sequence stops at its first newline or EOS. A prompt that would not fit the model's positions with
    ``max_new_tokens`` is cut from the left.
    """
    if not sources:
        return []
    style = prompt_style(tokenizer, prompt)
    encoded = [encode_prompt(tokenizer, style, render_prompt(tokenizer, style, s, src, tgt, exemplars))
               for s in sources]
    limit = _prompt_limit(model, max_new_tokens)
    if limit is not None:
        encoded = [_fit(list(ids), limit, tokenizer.bos_token_id) for ids in encoded]
    config = _generation_config(model, tokenizer, max_new_tokens, _pad_id(tokenizer))
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]), reverse=True)
    hypotheses: list[str] = [""] * len(encoded)
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            starts = range(0, len(order), batch_size)
            for start in tqdm(starts, desc=f"translating {src}-{tgt}", disable=not progress, leave=False):
                rows = order[start : start + batch_size]
                texts = _generate_batch(model, tokenizer, [encoded[i] for i in rows], config)
                for i, text in zip(rows, texts, strict=True):
                    hypotheses[i] = clean_hypothesis(text, tgt)
    finally:
        model.train(was_training)
    return hypotheses


_CHRF = CHRF(word_order=2)


SPBLEU_TOKENIZE = "flores200"
_spbleu_state: dict[str, object] = {}


def spbleu_unavailable() -> str | None:
    """Why spBLEU cannot be computed here (``None``: it can). Checked once per process.

    spBLEU needs the ``sentencepiece`` package and sacrebleu's flores200 SentencePiece model, which sacrebleu
    keeps in ``$SACREBLEU/models`` (default ``~/.sacrebleu/models``) and downloads on first use; offline
    without that file, spBLEU is skipped (and the reason is said once), never a crash.
    """
    if "reason" not in _spbleu_state:
        try:
            _spbleu_state["metric"] = BLEU(tokenize=SPBLEU_TOKENIZE)  # loads (or downloads) the model once
            _spbleu_state["reason"] = None
        except ImportError:
            _spbleu_state["reason"] = "the sentencepiece package is not installed (pip install sentencepiece)"
        except Exception as err:  # no network and no local model file
            from sacrebleu.utils import SACREBLEU_DIR

            _spbleu_state["reason"] = (
                f"sacrebleu's flores200 SentencePiece model is not in {SACREBLEU_DIR}/models and could not be "
                f"downloaded ({type(err).__name__}); put the file 'flores200sacrebleuspm' there to enable spBLEU")
        if _spbleu_state["reason"]:
            import logging

            logging.getLogger("workbench").warning("spBLEU skipped: %s", _spbleu_state["reason"])
    return _spbleu_state["reason"]  # type: ignore[return-value]


def mt_metrics(hypotheses: Sequence[str], references: Sequence[str], *,
               spbleu: bool = False) -> dict[str, tuple[float, str]]:
    """Corpus BLEU and chrF++ (and spBLEU when asked for and available) with their sacrebleu signatures:
    ``{"bleu": (score, signature), "chrf++": ..., "spbleu": ...}``."""
    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses but {len(references)} references")
    if not hypotheses:
        raise ValueError("no sentences to score")
    hyps, refs = list(hypotheses), [list(references)]
    metrics = {"bleu": BLEU(), "chrf++": CHRF(word_order=2)}
    if spbleu and spbleu_unavailable() is None:
        metrics["spbleu"] = _spbleu_state["metric"]
    return {name: (metric.corpus_score(hyps, refs).score, str(metric.get_signature()))
            for name, metric in metrics.items()}


def sentence_chrf(hypothesis: str, reference: str) -> float:
    """Sentence-level chrF++ (for browsing translations; corpus chrF++ is not their mean)."""
    return _CHRF.sentence_score(hypothesis, [reference]).score
