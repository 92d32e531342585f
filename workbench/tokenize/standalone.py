"""``workbench transplant``: the transplant outside recipes, like a transplant tool, with its gate.

Writes a plain Hugging Face model directory and ``transplant.json`` in it: the plan's statistics,
the initialization, fertility before/after on the corpus, and (with held-out sets) the gate table of
bits per byte / per character before and after.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ..errors import DataError

REPORT_FILE = "transplant.json"


def read_corpus(paths: Sequence[Path]) -> list[str]:
    """Texts of ``.txt`` (one per line) and ``.jsonl`` (field ``text``) files; blank lines skipped."""
    texts: list[str] = []
    for path in paths:
        path = Path(path)
        with path.open(encoding="utf-8", errors="replace") as handle:
            for number, line in enumerate(handle, 1):
                if not line.strip():
                    continue
                if path.suffix == ".jsonl":
                    try:
                        text = json.loads(line)["text"]
                    except (ValueError, KeyError, TypeError):
                        raise DataError(f"{path}, line {number}: not a JSON object with a 'text' field") from None
                    texts.append(str(text))
                else:
                    texts.append(line.rstrip("\n"))
    if not texts:
        raise DataError(f"no text in {', '.join(map(str, paths))}: give one text per line (.txt) or JSONL "
                        "with a 'text' field")
    return texts


def run_transplant(source: str, corpus: Sequence[Path], out: Path, *, mode: str, vocab_size: int, init: str,
                   protect: Sequence[Path] = (), keep: Sequence[Path] = (), min_frequency: int = 2,
                   pad_to_multiple_of: int | None = None, eval_sets: str | None = None,
                   languages: Sequence[str] = (), target: str | None = None, max_sentences: int = 100,
                   max_regression: float = 0.05, keep_words: int = 0, drop_reserved: bool = False,
                   trim_rows: float | None = None, progress: bool = True,
                   echo: Callable[[str], None] = print) -> dict[str, Any]:
    """Transplant ``source`` onto a vocabulary for ``corpus``; save to ``out``; return the report.

    ``keep_words`` (trim): also keep the base pieces of the N most frequent words of each of ``languages``.
    ``trim_rows`` (trim): row budget (share of the base's rows, or a count) filled with the pieces the word
    lists of ``languages`` use most, weighted by frequency (:func:`.vocab.fill_by_weight`).
    """
    from transformers import AutoTokenizer

    from ..io import atomic_write_json
    from ..models import load_model
    from .fertility import fertility
    from .gate import gate_failures, gate_rows
    from .transplant import TransplantConfig, chat_renderings, check_special_contract, save_model_dir, transplant
    from .vocab import load_backend, row_budget

    texts = read_corpus(corpus)
    model, tokenizer = load_model(source, device="cpu", dtype="float32")
    eval_cfg = _gate_config(eval_sets, languages, max_sentences) if eval_sets else None
    before = _score(model, tokenizer, eval_cfg, progress) if eval_cfg else []
    spec = load_backend(Path(getattr(tokenizer, "name_or_path", "")), tokenizer)
    max_rows = row_budget(trim_rows, model.get_input_embeddings().weight.shape[0]) if mode == "trim" else None
    config = TransplantConfig(mode=mode, vocab_size=vocab_size, init=init, min_frequency=min_frequency,
                              pad_to_multiple_of=pad_to_multiple_of, drop_reserved=drop_reserved, max_rows=max_rows)
    keep_texts = read_corpus(keep) if keep else []
    forms, fill, word_counts = [], {}, {}
    if mode == "trim" and (keep_words or max_rows is not None):
        from .wordlists import trim_words

        forms, fill, word_counts = trim_words(languages, keep_words, fill=max_rows is not None)
    keep_texts += forms
    plan, init_report = transplant(model, spec, texts, config, protect=read_corpus(protect) if protect else (),
                                   keep=keep_texts, chat=chat_renderings(tokenizer),
                                   chat_template=tokenizer.chat_template, fill=fill)
    save_model_dir(model, tokenizer, plan.spec, out)
    problems = check_special_contract(tokenizer, out, plan)
    new_tokenizer = AutoTokenizer.from_pretrained(out)
    sample = texts[-1000:]
    report: dict[str, Any] = {
        "source": source, "mode": mode, "corpus": [str(p) for p in corpus], "texts": len(texts),
        "transplant": init_report, "special_token_problems": problems, "keep_words": word_counts,
        "trim": {k: plan.stats[k] for k in ("max_rows", "filled_rows", "over_budget") if k in plan.stats},
        "fertility": {"before": fertility(tokenizer, sample), "after": fertility(new_tokenizer, sample)},
    }
    echo(f"{mode}: {init_report['base_rows']} -> {plan.rows} embedding rows, {len(plan.pieces)} initialized "
         f"({init}); tokens per word on the corpus {report['fertility']['before']['tokens_per_word']:.3f} -> "
         f"{report['fertility']['after']['tokens_per_word']:.3f}")
    if plan.stats.get("over_budget"):
        echo(f"  the corpora alone need {plan.rows} rows, more than the budget of {max_rows}: all kept")
    if eval_cfg:
        model, new_tokenizer = load_model(out, device=None, dtype="auto")
        rows = gate_rows(before, _score(model, new_tokenizer, eval_cfg, progress))
        failures = gate_failures(rows, target=target or "", max_regression=max_regression)
        report["gate"] = {"rows": rows, "failures": failures, "max_regression": max_regression}
        for row in rows:
            echo(f"  {row['language']:10s} {row['metric']:14s} {row['before']:.4f} -> {row['after']:.4f} "
                 f"({row['ratio']:.3f}x)")
    atomic_write_json(out / REPORT_FILE, report)
    if problems:
        raise DataError(f"{out}: the special-token contract does not hold: " + "; ".join(problems))
    echo(f"model written to {out}; report in {out / REPORT_FILE}")
    return report


def _gate_config(eval_sets: str, languages: Sequence[str], max_sentences: int) -> Any:
    from ..recipe import eval_config_from_options

    return eval_config_from_options(lm_sets=eval_sets, mt_sets=None, languages=list(languages), directions=[],
                                    split="dev", max_sentences=max_sentences, shots=0, prompt="auto",
                                    lid_seed=None)


def _score(model: Any, tokenizer: Any, eval_cfg: Any, progress: bool) -> list[dict[str, Any]]:
    import tempfile

    from ..evaluate.scorer import score_model

    with tempfile.TemporaryDirectory() as tmp:
        return score_model(model, tokenizer, eval_cfg, stage="transplant", variant=None, out_dir=Path(tmp),
                           progress=progress)
