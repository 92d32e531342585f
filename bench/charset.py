"""Benchmark: decoding pages that declare no charset and are not UTF-8, against resiliparse's detection.

Input:     generated pages (tests/charset_pages.py): 10 lines of real text each (FLORES-200 sentences, CLDR
           territory names), in 21 languages and 9 legacy code pages (Windows-125x, ISO-8859-x, KOI8-R), wrapped
           in minimal HTML with no charset, ``--pages`` per (language, code page).
ours:      ``decode_html(html)`` (no HTTP charset): the code page chosen by what the text becomes
           (:mod:`workbench.crawl.charset`);
baseline:  resiliparse alone, as the crawl decoded such pages before: ``bytes_to_str`` with the encoding
           ``detect_encoding(html, from_html_meta=True)`` gives, UTF-8 as fallback;
also:      charset-normalizer's ``from_bytes(html).best()``, when installed (a popular detector; not a
           dependency of the workbench).
A page counts as exact when its decoded text equals the page's text (NFC; Windows-1258 writes Vietnamese
tones as combining marks). Writes bench/results/charset.json: exact-decode rates per language and code page
and overall, the ratio of ours to the baseline, milliseconds per page, peak memory.

Run:  python bench/charset.py [--pages 40] [--seed 0]
"""

from __future__ import annotations

import argparse
import platform
import resource
import sys
import time
import unicodedata
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from resiliparse.parse.encoding import bytes_to_str, detect_encoding  # noqa: E402

from tests.charset_pages import Page, generate_pages  # noqa: E402
from workbench.crawl.extract import decode_html, python_codec  # noqa: E402
from workbench.io import atomic_write_json  # noqa: E402

OUT = ROOT / "bench" / "results" / "charset.json"


def peak_rss_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def resiliparse_decode(html: bytes) -> str:
    """The crawl's decoding of a page without a charset before the code page was chosen by its text."""
    detected = python_codec(detect_encoding(html, from_html_meta=True)) or "utf-8"
    fallbacks = ("utf-8",) if detected != "utf-8" else ()
    return bytes_to_str(html, detected, errors="replace", fallback_encodings=fallbacks)


def charset_normalizer_decode() -> Callable[[bytes], str] | None:
    try:
        from charset_normalizer import from_bytes
    except ImportError:
        return None

    def decode(html: bytes) -> str:
        best = from_bytes(html).best()
        return str(best) if best is not None else html.decode("utf-8", errors="replace")

    return decode


def exact_rates(pages: list[Page], decode: Callable[[bytes], str]) -> dict:
    """Exact-decode rate per 'language codec' and overall, and milliseconds per page."""
    exact: dict[str, list[bool]] = defaultdict(list)
    start = time.perf_counter()
    for page in pages:
        try:
            text = unicodedata.normalize("NFC", decode(page.html))
        except Exception:  # a decoder that gives up on a page decodes it wrongly
            text = None
        exact[f"{page.language} {page.codec}"].append(text == unicodedata.normalize("NFC", page.text))
    seconds = time.perf_counter() - start
    every = [ok for oks in exact.values() for ok in oks]
    return {"exact": round(sum(every) / len(every), 4), "ms_per_page": round(seconds / len(pages) * 1000, 2),
            "by_pair": {pair: round(sum(oks) / len(oks), 3) for pair, oks in exact.items()}}


def by_codec(pages: list[Page], by_pair: dict[str, float]) -> dict[str, float]:
    """Exact-decode rate per code page (the pairs' rates weighted by their pages)."""
    counts: dict[str, list[float]] = defaultdict(list)
    for page in pages:
        counts[page.codec].append(by_pair[f"{page.language} {page.codec}"])
    return {codec: round(sum(rates) / len(rates), 3) for codec, rates in sorted(counts.items())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pages", type=int, default=40, help="pages per (language, code page)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    pages = generate_pages(args.pages, seed=args.seed)
    decoders = {"ours": lambda html: decode_html(html), "baseline_resiliparse": resiliparse_decode}
    normalizer = charset_normalizer_decode()
    if normalizer is not None:
        decoders["charset_normalizer"] = normalizer
    results = {name: exact_rates(pages, decode) for name, decode in decoders.items()}
    pairs = list(results["ours"]["by_pair"])
    print(f"{'language code page':28}" + "".join(f"{name:>22}" for name in decoders))
    for pair in pairs:
        print(f"{pair:28}" + "".join(f"{results[name]['by_pair'][pair]:>22.3f}" for name in decoders))
    print(f"{'all (' + str(len(pages)) + ' pages)':28}" + "".join(f"{results[n]['exact']:>22.4f}" for n in decoders))
    print(f"{'ms per page':28}" + "".join(f"{results[n]['ms_per_page']:>22.2f}" for n in decoders))
    report = {
        "pages": len(pages), "pages_per_pair": args.pages, "seed": args.seed,
        "languages": sorted({page.language for page in pages}), "code_pages": sorted({page.codec for page in pages}),
        "machine": {"python": platform.python_version(), "platform": platform.platform()},
        **{name: {"exact": r["exact"], "ms_per_page": r["ms_per_page"],
                  "by_code_page": by_codec(pages, r["by_pair"]), "by_pair": r["by_pair"]}
           for name, r in results.items()},
        "ratio_exact_vs_baseline": round(results["ours"]["exact"] / max(results["baseline_resiliparse"]["exact"],
                                                                        1e-9), 3),
        "errors_ours": round(1 - results["ours"]["exact"], 4),
        "errors_baseline": round(1 - results["baseline_resiliparse"]["exact"], 4),
        "peak_rss_mb": peak_rss_mb(),
    }
    atomic_write_json(OUT, report)
    print(f"exact: ours {report['ours']['exact']:.4f} vs baseline {report['baseline_resiliparse']['exact']:.4f} "
          f"(x{report['ratio_exact_vs_baseline']}); wrote {OUT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
