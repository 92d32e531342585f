"""Benchmark: the scorer's batched evaluation against one-sentence-at-a-time loops, same model, same text.

1. Bits per byte: ``score_each`` (all sentences batched, longest first, padding masked) against a naive
   loop that runs one forward per sentence. Both must give the same bits (checked).
2. Translation: ``translate`` (left-padded batches, KV cache, stop at newline) against the same prompts
   generated one at a time. Both must give the same hypotheses (checked: greedy decoding).

Run:  python bench/eval.py [--model smollm2-135m] [--sentences 64] [--translations 16]
Writes bench/results/eval.json (throughputs, ratios, peak memory).
"""

from __future__ import annotations

import argparse
import math
import platform
import resource
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from workbench.evaluate.datasets import load_texts  # noqa: E402
from workbench.evaluate.lm import encode_for_scoring, score_each  # noqa: E402
from workbench.evaluate.mt import translate  # noqa: E402
from workbench.io import atomic_write_json  # noqa: E402
from workbench.models import load_model, resolve_model  # noqa: E402

FLORES = ROOT / "corpora" / "flores200" / "dev"


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def naive_bits(model, tokenizer, texts: list[str]) -> list[float]:
    """Baseline: one unpadded forward per sentence, summed by hand."""
    sequences, _ = encode_for_scoring(tokenizer, texts)
    out = []
    with torch.inference_mode():
        for ids in sequences:
            logits = model(input_ids=torch.tensor([ids], device=model.device)).logits[0, :-1].float()
            logp = torch.log_softmax(logits, -1).gather(-1, torch.tensor(ids[1:], device=model.device)[:, None])
            out.append(-logp.double().sum().item() / math.log(2))
    return out


def timed(fn):
    start = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--sentences", type=int, default=64)
    parser.add_argument("--translations", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-new-tokens", type=int, default=48)
    args = parser.parse_args()
    torch.manual_seed(0)
    model, tokenizer = load_model(resolve_model(args.model).path, device="cpu", dtype="float32")
    model.eval()
    texts = load_texts(FLORES, "srd_Latn", "dev")[: args.sentences]

    # warm-up (first calls allocate and pick kernels)
    score_each(model, tokenizer, texts[:4], batch_size=4)
    naive_bits(model, tokenizer, texts[:2])

    ours, ours_s = timed(lambda: score_each(model, tokenizer, texts, batch_size=args.batch_size))
    naive, naive_s = timed(lambda: naive_bits(model, tokenizer, texts))
    max_diff = max(abs(a.bits - b) for a, b in zip(ours, naive, strict=True))
    tokens = sum(s.tokens for s in ours)

    sources = load_texts(FLORES, "eng_Latn", "dev")[: args.translations]
    exemplar = [(load_texts(FLORES, "eng_Latn", "dev")[-1], load_texts(FLORES, "srd_Latn", "dev")[-1])]
    kwargs = dict(exemplars=exemplar, max_new_tokens=args.max_new_tokens)
    batched, batched_s = timed(lambda: translate(model, tokenizer, sources, "eng_Latn", "srd_Latn",
                                                 batch_size=args.batch_size, **kwargs))
    sequential, sequential_s = timed(lambda: [translate(model, tokenizer, [s], "eng_Latn", "srd_Latn",
                                                        batch_size=1, **kwargs)[0] for s in sources])
    same = sum(a == b for a, b in zip(batched, sequential, strict=True))

    results = {
        "model": args.model,
        "machine": {"python": platform.python_version(), "torch": torch.__version__, "threads": torch.get_num_threads(),
                    "platform": platform.platform()},
        "lm": {"sentences": len(texts), "tokens": tokens, "batch_size": args.batch_size,
               "ours_tokens_per_s": round(tokens / ours_s, 1), "naive_tokens_per_s": round(tokens / naive_s, 1),
               "ratio": round(naive_s / ours_s, 2), "max_bits_difference": max_diff},
        "mt": {"sentences": len(sources), "batch_size": args.batch_size, "max_new_tokens": args.max_new_tokens,
               "batched_s": round(batched_s, 2), "sequential_s": round(sequential_s, 2),
               "batched_sentences_per_s": round(len(sources) / batched_s, 2),
               "sequential_sentences_per_s": round(len(sources) / sequential_s, 2),
               "ratio": round(sequential_s / batched_s, 2), "identical_hypotheses": same},
        "peak_rss_mb": round(peak_rss_mb(), 1),
    }
    print(f"{'benchmark':<28}{'ours':>14}{'baseline':>14}{'ratio':>8}")
    print(f"{'bits per byte (tokens/s)':<28}{results['lm']['ours_tokens_per_s']:>14}"
          f"{results['lm']['naive_tokens_per_s']:>14}{results['lm']['ratio']:>7}x")
    print(f"{'translation (sentences/s)':<28}{results['mt']['batched_sentences_per_s']:>14}"
          f"{results['mt']['sequential_sentences_per_s']:>14}{results['mt']['ratio']:>7}x")
    print(f"bits agree to {max_diff:.2e}; {same}/{len(sources)} hypotheses identical; "
          f"peak RSS {results['peak_rss_mb']} MB")
    atomic_write_json(ROOT / "bench" / "results" / "eval.json", results)


if __name__ == "__main__":
    main()
