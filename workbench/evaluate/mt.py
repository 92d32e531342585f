"""Translation with a causal LM (few-shot prompt, greedy decoding) and its metrics (sacrebleu).

Generation budgets follow characters, not a fixed token count, so that every script gets room for a
whole translation: a sentence may generate ``source characters x target/source length ratio x the
tokenizer's tokens per target character x a margin`` tokens (:class:`LengthModel`), measured on pairs
that are never scored (the exemplars, held-out dev pairs). A translation that uses its whole budget
is *truncated*: it is reported (:class:`Translation`) and never ends in a broken character.
"""

from __future__ import annotations

import logging
import math
import threading
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import torch
from sacrebleu.metrics import BLEU, CHRF
from sacrebleu.tokenizers import tokenizer_spm
from tqdm.auto import tqdm
from transformers import GenerationConfig, StoppingCriteria, StoppingCriteriaList

from ..text import UNSPACED_SCRIPTS, code_script, target_scripts
from .prompts import clean_hypothesis, encode_prompt, prompt_style, render_prompt

log = logging.getLogger("workbench")

DEFAULT_LENGTH_RATIO = 2.0  # target/source characters when no pair is known (generous: few languages exceed it)
DEFAULT_TOKENS_PER_CHAR = 3.0  # tokens per target character when no target text is known: a byte tokenizer
#                                on a 3-byte script (Indic, Thai, CJK); wasteful for Latin, never too short
BUDGET_MARGIN = 1.5  # sentences vary around the measured ratio and tokens per character
BUDGET_SLACK = 8  # tokens for what is not the translation: a leading space, an echoed label, the final newline
REPLACEMENT = "\ufffd"  # what decoding makes of an incomplete UTF-8 sequence
MAX_PARTIAL_TOKENS = 3  # an incomplete UTF-8 character has at most 3 bytes, so at most 3 tokens
TRUNCATION_WARNING = 0.05  # a direction with more truncated translations than this is warned about


@dataclass(frozen=True)
class Translation:
    """One generated translation: the cleaned line, the token budget it had, whether it used all of it
    (``truncated``: no newline or EOS came within the budget), and whether a character cut in half by
    the budget was removed from its end (``cut_character``)."""

    text: str
    budget: int
    truncated: bool
    cut_character: bool = False


@dataclass(frozen=True)
class LengthModel:
    """How many tokens a translation of a source sentence may need: its characters x ``chars_ratio``
    (target/source characters) x ``tokens_per_char`` (the tokenizer's cost of a target character) x
    :data:`BUDGET_MARGIN`, plus :data:`BUDGET_SLACK`, at most ``cap``."""

    chars_ratio: float
    tokens_per_char: float
    cap: int | None = None

    def budget(self, source: str) -> int:
        expected_tokens = len(source) * self.chars_ratio * self.tokens_per_char
        tokens = math.ceil(expected_tokens * BUDGET_MARGIN) + BUDGET_SLACK
        return min(tokens, self.cap) if self.cap is not None else tokens


def length_model(tokenizer, pairs: Sequence[tuple[str, str]], *, same_script_texts: Sequence[str] = (),
                 max_new_tokens: int | None = None, positions: int | None = None) -> LengthModel:
    """The :class:`LengthModel` measured on ``(source, target)`` pairs that are never scored.

    Ratio: Σ target characters / Σ source characters (without pairs :data:`DEFAULT_LENGTH_RATIO`); tokens
    per character: Σ tokens / Σ characters of the targets as completions (``" " + target``), else of
    ``same_script_texts`` (e.g. the sources, when they are written in the target's script), else
    :data:`DEFAULT_TOKENS_PER_CHAR`. The cap is ``max_new_tokens`` (a user's hard limit) and half the
    model's ``positions`` (the prompt keeps the other half).
    """
    source_chars = sum(len(s) for s, _ in pairs)
    target_chars = sum(len(t) for _, t in pairs)
    ratio = target_chars / source_chars if source_chars and target_chars else DEFAULT_LENGTH_RATIO
    targets = [t for _, t in pairs] if target_chars else list(same_script_texts)
    caps = [c for c in (max_new_tokens, positions // 2 if positions else None) if c]
    return LengthModel(ratio, _tokens_per_char(tokenizer, targets), min(caps) if caps else None)


def _tokens_per_char(tokenizer, texts: Sequence[str]) -> float:
    chars = sum(len(t) for t in texts)
    if not chars:
        return DEFAULT_TOKENS_PER_CHAR
    tokens = sum(len(tokenizer(f" {t}", add_special_tokens=False, verbose=False)["input_ids"]) for t in texts)
    return tokens / chars


class NewlineStop(StoppingCriteria):
    """Marks a sequence finished once the text generated after the prompt contains a newline (or EOS),
    or once it has generated its own budget of tokens (``budgets``, one per row; default: no limit)."""

    def __init__(self, tokenizer, prompt_length: int, budgets: Sequence[int] | None = None) -> None:
        self.tokenizer = tokenizer
        self.prompt_length = prompt_length
        self.budgets = list(budgets) if budgets is not None else None
        self.done: torch.Tensor | None = None

    def __call__(self, input_ids: torch.LongTensor, scores=None, **kwargs) -> torch.BoolTensor:
        if self.done is None:
            self.done = torch.zeros(input_ids.shape[0], dtype=torch.bool)
        eos = self.tokenizer.eos_token_id
        for row in (~self.done).nonzero().flatten().tolist():
            new_ids = input_ids[row, self.prompt_length :]
            new = self.tokenizer.decode(new_ids, skip_special_tokens=True)
            spent = self.budgets is not None and len(new_ids) >= self.budgets[row]
            self.done[row] = spent or "\n" in new or (eos is not None and bool((new_ids == eos).any()))
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


def _positions(model) -> int | None:
    positions = getattr(model.config, "max_position_embeddings", None)
    return positions if isinstance(positions, int) else None


def _prompt_limit(model, max_new_tokens: int) -> int | None:
    positions = _positions(model)
    return max(positions - max_new_tokens, 16) if positions is not None else None


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


def complete_characters(tokenizer, ids: Sequence[int]) -> tuple[str, bool]:
    """``ids`` decoded without a character cut in half at the end: ``(text, whether one was cut)``.

    A byte-level or byte-fallback tokenizer spells a character in up to 4 byte tokens, so a budget can stop
    inside one, and decoding shows it as U+FFFD. Two ways to drop it, and the longer result wins: removing
    up to 3 final tokens (right for byte fallback, which replaces a whole run of byte tokens when its end
    is broken) and stripping trailing U+FFFD (right when the last token holds whole characters before the
    broken one).
    """
    text = tokenizer.decode(ids, skip_special_tokens=True)
    if not text.endswith(REPLACEMENT):
        return text, False
    stripped = text.rstrip(REPLACEMENT)
    for drop in range(1, min(MAX_PARTIAL_TOKENS, len(ids)) + 1):
        shorter = tokenizer.decode(ids[: len(ids) - drop], skip_special_tokens=True)
        if not shorter.endswith(REPLACEMENT):
            return max(shorter, stripped, key=len), True
    return stripped, True


def _generate_batch(model, tokenizer, prompts: list[list[int]], budgets: list[int],
                    config: GenerationConfig) -> list[tuple[str, bool, bool]]:
    """``(text, truncated, cut_character)`` per prompt; each row stops at its newline, EOS or own budget."""
    ids, mask = _left_pad(prompts, config.pad_token_id)
    stop = NewlineStop(tokenizer, ids.shape[1], budgets)
    out = model.generate(
        input_ids=ids.to(model.device),
        attention_mask=mask.to(model.device),
        generation_config=config,
        stopping_criteria=StoppingCriteriaList([stop]),
    )
    eos = set(config.eos_token_id or [])
    results = []
    for row, budget in enumerate(budgets):
        new_ids = out[row, ids.shape[1] :][:budget].tolist()  # after its budget a row holds only padding
        text = tokenizer.decode(new_ids, skip_special_tokens=True)
        truncated = len(new_ids) >= budget and "\n" not in text and not eos.intersection(new_ids)
        cut = False
        if truncated:
            text, cut = complete_characters(tokenizer, new_ids)
        results.append((text, truncated, cut))
    return results


def _prompt_ids(model, tokenizer, style: str, source: str, src: str, tgt: str,
                exemplars: Sequence[tuple[str, str]], budget: int) -> list[int]:
    """The prompt's token ids, cut from the left when it would not fit the model's positions with ``budget``."""
    ids = list(encode_prompt(tokenizer, style, render_prompt(tokenizer, style, source, src, tgt, exemplars)))
    limit = _prompt_limit(model, budget)
    return _fit(ids, limit, tokenizer.bos_token_id) if limit is not None else ids


def translate_each(
    model,
    tokenizer,
    sources: Sequence[str],
    src: str,
    tgt: str,
    *,
    exemplars: Sequence[tuple[str, str]] = (),
    calibration: Sequence[tuple[str, str]] | None = None,
    batch_size: int = 8,
    max_new_tokens: int | None = None,
    prompt: str = "auto",
    progress: bool = False,
) -> list[Translation]:
    """:func:`translate`, with each sentence's budget and whether it was truncated.

    ``calibration``: ``(source, target)`` pairs never scored, on which the budgets are measured (default:
    the exemplars; see :func:`length_model`). Without any, a target in the source's script is costed at
    the sources' tokens per character.
    """
    if not sources:
        return []
    style = prompt_style(tokenizer, prompt)
    same_script = code_script(src) == code_script(tgt)
    lengths = length_model(tokenizer, exemplars if calibration is None else calibration,
                           same_script_texts=sources if same_script else (), max_new_tokens=max_new_tokens,
                           positions=_positions(model))
    budgets = [lengths.budget(s) for s in sources]
    encoded = [_prompt_ids(model, tokenizer, style, source, src, tgt, exemplars, budget)
               for source, budget in zip(sources, budgets, strict=True)]
    # similar budgets share a batch, so that no row waits long for a longer one
    order = sorted(range(len(encoded)), key=lambda i: (budgets[i], len(encoded[i])), reverse=True)
    pad_id = _pad_id(tokenizer)
    results: list[Translation | None] = [None] * len(encoded)
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            starts = range(0, len(order), batch_size)
            for start in tqdm(starts, desc=f"translating {src}-{tgt}", disable=not progress, leave=False):
                rows = order[start : start + batch_size]
                row_budgets = [budgets[i] for i in rows]
                config = _generation_config(model, tokenizer, max(row_budgets), pad_id)
                outputs = _generate_batch(model, tokenizer, [encoded[i] for i in rows], row_budgets, config)
                for i, (text, truncated, cut) in zip(rows, outputs, strict=True):
                    results[i] = Translation(clean_hypothesis(text, tgt), budgets[i], truncated, cut)
    finally:
        model.train(was_training)
    warning = truncation_warning(f"{src}-{tgt}", results)  # type: ignore[arg-type]
    if warning:
        log.warning(warning)
    return results  # type: ignore[return-value]


def translate(model, tokenizer, sources: Sequence[str], src: str, tgt: str, **options: Any) -> list[str]:
    """Greedy few-shot translations of ``sources`` (``src`` -> ``tgt``), one line each, in input order.

    ``prompt``: ``auto`` (the chat template of an instruct model's tokenizer, else plain), ``plain`` or
    ``chat`` (see :mod:`workbench.evaluate.prompts`). Prompts are batched by budget and left-padded; a
    sequence stops at its first newline, its EOS or its token budget, which follows the source's length in
    characters (:func:`length_model`, measured on ``calibration`` pairs, default the exemplars) and is at
    most ``max_new_tokens`` when given. A prompt that would not fit the model's positions with its budget
    is cut from the left. A translation cut by its budget never ends in half a character. ``options`` are
    :func:`translate_each`'s keyword arguments (``exemplars``, ``calibration``, ``batch_size``,
    ``max_new_tokens``, ``prompt``, ``progress``).
    """
    return [t.text for t in translate_each(model, tokenizer, sources, src, tgt, **options)]


def truncation_warning(direction: str, translations: Sequence[Translation]) -> str | None:
    """A warning when more than :data:`TRUNCATION_WARNING` of a direction's translations were cut by their
    budget (their scores then measure the budget, not the model); ``None`` otherwise."""
    truncated = sum(t.truncated for t in translations)
    if not translations or truncated / len(translations) <= TRUNCATION_WARNING:
        return None
    return (f"{direction}: {truncated} of {len(translations)} translations used their whole token budget and "
            f"were cut (eval.mt.max_new_tokens, or the model's positions, limit the budget)")


_CHRF = CHRF(word_order=2)


# -- metrics ---------------------------------------------------------------------------------------------

ASCII_PUNCTUATION_SCRIPTS = frozenset({"Latn", "Cyrl", "Grek"})  # full stop and comma are ASCII: 13a, as published
SPBLEU_TOKENIZE = "flores200"
SPBLEU_MODEL_URL = tokenizer_spm.SPM_MODELS[SPBLEU_TOKENIZE]["url"]
SPBLEU_DOWNLOAD_TIMEOUT = 10.0  # seconds per network operation; the whole download gets twice that
_spbleu_state: dict[str, object] = {}


def bleu_tokenizer(target: str | None) -> str:
    """The sacrebleu tokenizer for BLEU on text in ``target``'s script (a FLORES code; None: ``13a``).

    ``13a`` splits ASCII punctuation only, so a danda ``।``, an Ethiopic ``።`` or an Arabic ``،`` stays glued to
    the word before it and a changed full stop costs a whole word. Hence: ``13a`` for Latin, Cyrillic and Greek
    (comparable with published scores); ``zh`` for Chinese; ``ja-mecab``/``ko-mecab`` where installed;
    ``char`` for the other scripts written without spaces (Thai, Lao, Khmer, Myanmar, Tibetan, Japanese
    without MeCab); ``intl`` (splits every Unicode punctuation mark) for the rest. The choice is in the
    signature (``tok:...``).
    """
    if target is None:
        return "13a"
    script = code_script(target)
    if script in ("Hans", "Hant"):
        return "zh"
    if script == "Jpan":
        return "ja-mecab" if _tokenizer_available("ja-mecab") else "char"
    if script in ("Kore", "Hang"):
        return "ko-mecab" if _tokenizer_available("ko-mecab") else "intl"
    scripts = target_scripts(target) or frozenset()
    if scripts & set(UNSPACED_SCRIPTS):
        return "char"
    if scripts and scripts <= ASCII_PUNCTUATION_SCRIPTS:
        return "13a"
    return "intl"


@cache
def _tokenizer_available(name: str) -> bool:
    """True if sacrebleu can build tokenizer ``name`` here (MeCab tokenizers need optional packages)."""
    try:
        BLEU(tokenize=name)
    except Exception:  # ImportError, or a MeCab dictionary that is missing
        return False
    return True


def spbleu_model_path() -> Path:
    """Where sacrebleu looks for the flores200 SentencePiece model (``$SACREBLEU/models``)."""
    return Path(tokenizer_spm.SACREBLEU_DIR) / "models" / Path(SPBLEU_MODEL_URL).name


def _download(url: str, path: Path, timeout: float) -> None:
    """``url`` into ``path`` through a temporary file, so an interrupted download leaves no broken model."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + f".partial-{threading.get_ident()}")
    with urllib.request.urlopen(url, timeout=timeout) as response:
        partial.write_bytes(response.read())
    partial.replace(path)


def fetch_spbleu_model(timeout: float | None = None) -> str | None:
    """Make sure the flores200 SentencePiece model is on disk; ``None`` if it is, else why not.

    sacrebleu's own download has no timeout (a machine that drops packets stalls scoring) and exits the
    process on an SSL error, so the file is fetched here: ``timeout`` seconds per network operation, in a
    background thread given ``2 * timeout`` seconds in all (default :data:`SPBLEU_DOWNLOAD_TIMEOUT`).
    """
    timeout = SPBLEU_DOWNLOAD_TIMEOUT if timeout is None else timeout
    path = spbleu_model_path()
    if path.is_file() and path.stat().st_size > 0:
        return None
    outcome: dict[str, BaseException] = {}

    def work() -> None:
        try:
            _download(SPBLEU_MODEL_URL, path, timeout)
        except BaseException as err:  # reported to the caller, never raised in the thread
            outcome["error"] = err

    thread = threading.Thread(target=work, name="spbleu-download", daemon=True)
    thread.start()
    thread.join(2 * timeout)
    if thread.is_alive():
        return f"its download from {SPBLEU_MODEL_URL} did not finish in {2 * timeout:.0f} s"
    if "error" in outcome:
        return f"its download from {SPBLEU_MODEL_URL} failed ({type(outcome['error']).__name__}: {outcome['error']})"
    return None


def spbleu_unavailable() -> str | None:
    """Why spBLEU cannot be computed here (``None``: it can). Checked once per process.

    spBLEU needs the ``sentencepiece`` package and sacrebleu's flores200 SentencePiece model in
    ``$SACREBLEU/models`` (default ``~/.sacrebleu/models``), fetched with a timeout on first use
    (:func:`fetch_spbleu_model`); without it spBLEU is skipped, with one warning, never a crash or a stall.
    """
    if "reason" not in _spbleu_state:
        _spbleu_state["reason"] = _load_spbleu()
        if _spbleu_state["reason"]:
            log.warning("spBLEU skipped: %s", _spbleu_state["reason"])
    return _spbleu_state["reason"]  # type: ignore[return-value]


def _load_spbleu() -> str | None:
    try:
        import sentencepiece  # noqa: F401
    except ImportError:
        return "the sentencepiece package is not installed (pip install sentencepiece)"
    failure = fetch_spbleu_model()
    if failure is None:
        try:
            _spbleu_state["metric"] = BLEU(tokenize=SPBLEU_TOKENIZE)
            return None
        except Exception as err:  # a corrupt model file
            failure = f"it could not be loaded ({type(err).__name__}: {err})"
    return (f"sacrebleu's flores200 SentencePiece model is not at {spbleu_model_path()}: {failure}; "
            f"put the file '{spbleu_model_path().name}' there to enable spBLEU")


def skipped_metrics(*, spbleu: bool = False) -> dict[str, str]:
    """``{metric: reason}`` for the metrics asked for that cannot be computed here (spBLEU offline)."""
    reason = spbleu_unavailable() if spbleu else None
    return {"spbleu": reason} if reason else {}


def mt_metrics(hypotheses: Sequence[str], references: Sequence[str], *, target: str | None = None,
               spbleu: bool = False) -> dict[str, tuple[float, str]]:
    """Corpus BLEU (tokenized for ``target``'s script, see :func:`bleu_tokenizer`) and chrF++, and spBLEU when
    asked for and available (:func:`skipped_metrics` says why not), with their sacrebleu signatures:
    ``{"bleu": (score, signature), "chrf++": ..., "spbleu": ...}``."""
    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses but {len(references)} references")
    if not hypotheses:
        raise ValueError("no sentences to score")
    hyps, refs = list(hypotheses), [list(references)]
    metrics = {"bleu": BLEU(tokenize=bleu_tokenizer(target)), "chrf++": CHRF(word_order=2)}
    if spbleu and spbleu_unavailable() is None:
        metrics["spbleu"] = _spbleu_state["metric"]
    return {name: (metric.corpus_score(hyps, refs).score, str(metric.get_signature()))
            for name, metric in metrics.items()}


def sentence_chrf(hypothesis: str, reference: str) -> float:
    """Sentence-level chrF++ (for browsing translations; corpus chrF++ is not their mean)."""
    return _CHRF.sentence_score(hypothesis, [reference]).score
