"""Benchmark: the crawl's language identifier on sentences kept out of its training, for target/neighbour groups
in several scripts, with and without the general identifier (fastText lid.176).

Per group (a low-resource target, its neighbours, the replay languages), the seed model is trained on the even
lines of FLORES-200 dev (plus the English seed text, as a recipe's seed folder has it) and measured on the odd
lines; the ``romance-shipped`` group uses the shipped seed folder ``corpora/lid-seed`` (UDHR + NLLB-Seed, no
FLORES) and every FLORES line, as the demo recipe's crawl does; the ``*-nllb`` groups train the target on NLLB-Seed
lines (Wikipedia sentences, another domain) and measure it on every FLORES line. Reported per group and mode:

- per-language precision and recall of the label a crawl gives a line on its own (score >= 0.5, a rare
  language's label needing the evidence rules), target recall, replay-language recall (target: >= 0.95);
- precision at web base rates: ``run_crawl`` (the recipe's code path) over a crawl-like input with a few planted
  target pages (5 pages of 10 held-out target sentences) among thousands of other lines: the real web pages of
  ``bench-webpages.warc.gz`` (mostly German, English, Spanish) and pages of 10 held-out FLORES sentences of every
  other FLORES language at hand (neighbours included). ``foreign share``: target-corpus lines that are not from
  a planted page (target: < 5%); ``planted kept``: planted lines in the target corpus; ``rare from WARC``: lines
  of the real web pages kept as a rare seed language that is not on them (Sardinian, Asturian, Friulian...:
  false positives, whatever the target).

Run:  python bench/lid.py [--flores ../shared/data/flores200/dev] [--warc ../shared/data/warc/bench-webpages.warc.gz]
Writes bench/results/lid.json. The WARC input is benchmark-only data (real web pages) and is never shipped.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from workbench.crawl.langid import CharNgramIdentifier, combine, general_identifier, read_seed_dir  # noqa: E402
from workbench.crawl.lid_eval import REJECTED, top_labels  # noqa: E402
from workbench.crawl.pipeline import MIN_SCORE, CrawlSettings, run_crawl  # noqa: E402
from workbench.io import atomic_write_json  # noqa: E402
from workbench.text import nfkc  # noqa: E402

SHARED = ROOT.parent / "shared" / "data"
GROUPS = {  # name: (target, neighbours, replay languages)
    "indic-deva": ("mai_Deva", ["hin_Deva", "npi_Deva", "mar_Deva"], ["hin_Deva", "eng_Latn"]),
    "bengali": ("mni_Beng", ["asm_Beng", "ben_Beng"], ["ben_Beng", "eng_Latn"]),
    "assamese": ("asm_Beng", ["mni_Beng", "ben_Beng"], ["ben_Beng", "eng_Latn"]),
    "arabic": ("pbt_Arab", ["pes_Arab", "urd_Arab", "arb_Arab"], ["pes_Arab", "urd_Arab", "arb_Arab", "eng_Latn"]),
    "ethiopic": ("tir_Ethi", ["amh_Ethi"], ["amh_Ethi", "eng_Latn"]),
    "romance": ("srd_Latn", ["ita_Latn", "spa_Latn", "cat_Latn", "fur_Latn", "lij_Latn", "scn_Latn", "vec_Latn",
                             "lmo_Latn", "oci_Latn"], ["ita_Latn", "spa_Latn", "cat_Latn", "eng_Latn"]),
    "romance-shipped": ("srd_Latn", [], ["ita_Latn", "spa_Latn", "cat_Latn", "eng_Latn"]),
    "bengali-nllb": ("mni_Beng", ["asm_Beng", "ben_Beng"], ["ben_Beng", "eng_Latn"]),
    "arabic-nllb": ("pbt_Arab", ["pes_Arab", "urd_Arab", "arb_Arab"], ["pes_Arab", "urd_Arab", "arb_Arab", "eng_Latn"]),
}
NLLB_LINES = 1000  # *-nllb groups: the target's seed text is its first NLLB-Seed lines (Wikipedia, not FLORES)
PLANTED_PAGES, PAGE_LINES = 5, 10
# languages the benchmark web pages may hold (mostly German, English, Spanish, also French, Polish, Chinese...):
# every other seed language's lines from them are false positives ("rare from WARC")
MAYBE_ON_THE_WEB_PAGES = frozenset({"eng_Latn", "spa_Latn", "ita_Latn", "cat_Latn", "deu_Latn", "fra_Latn"})


def read_flores(folder: Path) -> dict[str, list[str]]:
    return {p.stem: [ln.strip() for ln in p.read_text(encoding="utf-8").splitlines() if ln.strip()]
            for p in sorted(folder.glob("*.dev"))}


def split_group(name: str, flores: dict[str, list[str]]) -> tuple[dict, dict]:
    """(training texts, held-out texts) of a group."""
    target, neighbours, replay = GROUPS[name]
    if name == "romance-shipped":
        train = read_seed_dir(ROOT / "corpora" / "lid-seed")
        return train, {code: flores[code] for code in sorted(train) if code in flores}
    english = read_seed_dir(ROOT / "corpora" / "lid-seed", ["eng_Latn"])["eng_Latn"]
    codes = sorted({target, *neighbours, *replay})
    train = {code: flores[code][0::2] for code in codes if code != "eng_Latn"}
    held = {code: flores[code][1::2] for code in codes}
    if name.endswith("-nllb"):  # the target's seed text from another domain; every FLORES line is held out
        train[target] = read_seed_dir(SHARED / "nllb_seed", [target])[target][:NLLB_LINES]
        held[target] = flores[target]
    return {**train, "eng_Latn": english}, held


def identification(identifier, held: dict[str, list[str]]) -> dict:
    """Per-language precision/recall of the crawl's label of each held-out line on its own."""
    gold, said = [], []
    for code, lines in held.items():
        gold += [code] * len(lines)
        said += top_labels(identifier, lines, MIN_SCORE, CrawlSettings(()).evidence)
    out = {}
    for code in held:
        hits = sum(g == s == code for g, s in zip(gold, said, strict=True))
        labelled = sum(s == code for s in said)
        out[code] = {"n": len(held[code]), "recall": round(hits / len(held[code]), 4),
                     "precision": round(hits / labelled, 4) if labelled else None,
                     "rejected": sum(g == code and s == REJECTED for g, s in zip(gold, said, strict=True))}
    return out


def web_input(folder: Path, target: str, held: dict[str, list[str]], flores: dict[str, list[str]],
              train: dict[str, list[str]]) -> tuple[Path, set[str]]:
    """A JSONL crawl input: the planted target pages and pages of held-out sentences of every other language
    (never a training line); returns it and the planted lines."""
    planted = [nfkc(" ".join(line.split())) for line in held[target][: PLANTED_PAGES * PAGE_LINES]]
    docs = ["\n".join(planted[i: i + PAGE_LINES]) for i in range(0, len(planted), PAGE_LINES)]
    for code, lines in sorted(flores.items()):
        if code == target:
            continue
        unseen = held.get(code) or [ln for ln in lines[1::2] if ln not in set(train.get(code, ()))]
        docs += ["\n".join(unseen[i: i + PAGE_LINES]) for i in range(0, len(unseen), PAGE_LINES)]
    path = folder / "pages.jsonl"
    path.write_text("".join(json.dumps({"text": doc}, ensure_ascii=False) + "\n" for doc in docs), encoding="utf-8")
    return path, set(planted)


def web_precision(identifier, target: str, languages: list[str], inputs: list[Path], planted: set[str],
                  folder: Path, warc: Path | None) -> dict:
    """Run the crawl and measure its target corpus: lines from planted pages vs the rest; and the lines the real
    web pages (no minority language in them) gave each rare language."""
    out = folder / "crawl"
    started = time.perf_counter()
    stats = run_crawl(inputs, languages, identifier, out, quality=None, executor="serial", progress=False)
    lines = [nfkc(" ".join(line.split())) for record in map(json.loads, (out / f"{target}.jsonl").read_text(
        encoding="utf-8").splitlines()) for line in record["text"].split("\n") if line.strip()]
    foreign = [line for line in lines if line not in planted]
    from_web = {}
    for code in sorted(identifier.rare - MAYBE_ON_THE_WEB_PAGES) if warc is not None else []:
        records = map(json.loads, (out / f"{code}.jsonl").read_text(encoding="utf-8").splitlines())
        from_web[code] = sum(record["text"].count("\n") + 1 for record in records
                             if Path(record["source"]).name == warc.name)
    return {"target_lines": len(lines), "planted_lines": len(planted), "planted_kept": len(lines) - len(foreign),
            "foreign_lines": len(foreign), "foreign_share": round(len(foreign) / len(lines), 4) if lines else 0.0,
            "foreign_samples": foreign[:5], "weak_evidence_dropped": stats["dropped"].get("weak_evidence", 0),
            "rare_lines_from_web_pages": {code: n for code, n in from_web.items() if n},
            "documents_read": stats["documents_read"], "seconds": round(time.perf_counter() - started, 1)}


def run_group(name: str, flores: dict[str, list[str]], warc: Path | None, mode: str) -> dict:
    target, _, replay = GROUPS[name]
    train, held = split_group(name, flores)
    started = time.perf_counter()
    general, note = general_identifier(mode)
    identifier = combine(train, CharNgramIdentifier.train(train), general, note)
    trained = time.perf_counter() - started
    per_language = identification(identifier, held)
    with tempfile.TemporaryDirectory() as tmp:
        pages, planted = web_input(Path(tmp), target, held, flores, train)
        inputs = [pages] + ([warc] if warc is not None else [])
        web = web_precision(identifier, target, sorted(train), inputs, planted, Path(tmp), warc)
    return {"group": name, "general": mode, "target": target, "train_seconds": round(trained, 1),
            "seed_languages": sorted(train), "rare": sorted(identifier.rare),
            "confusable": sorted(identifier.confusable - set(identifier.seed_languages)),
            "target_recall": per_language[target]["recall"],
            "target_precision": per_language[target]["precision"],
            "replay_recall": {code: per_language[code]["recall"] for code in replay if code in per_language},
            "languages": per_language, "web": web}


def table(rows: list[dict]) -> str:
    head = (f"{'group':<16} {'general':<8} {'target':<9} {'T rec':>6} {'T prec':>6} {'lowest replay rec':>18} "
            f"{'web foreign':>16} {'planted kept':>12} {'rare from WARC':>14}")
    lines = [head, "-" * len(head)]
    for r in rows:
        code, recall = min(r["replay_recall"].items(), key=lambda kv: kv[1]) if r["replay_recall"] else ("-", 0.0)
        web = r["web"]
        precision = f"{r['target_precision']:.3f}" if r["target_precision"] is not None else "-"
        foreign = f"{web['foreign_lines']}/{web['target_lines']} {web['foreign_share']:.1%}"
        lines.append(f"{r['group']:<16} {r['general']:<8} {r['target']:<9} {r['target_recall']:>6.3f} {precision:>6} "
                     f"{code + ' ' + format(recall, '.3f'):>18} {foreign:>16} "
                     f"{str(web['planted_kept']) + '/' + str(web['planted_lines']):>12} "
                     f"{sum(web['rare_lines_from_web_pages'].values()):>14}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--flores", type=Path, default=SHARED / "flores200" / "dev")
    parser.add_argument("--warc", type=Path, default=SHARED / "warc" / "bench-webpages.warc.gz")
    parser.add_argument("--groups", default=",".join(GROUPS), help="comma-separated group names")
    parser.add_argument("--modes", default="fasttext,none", help="general identifiers to compare")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "lid.json")
    args = parser.parse_args()
    flores = read_flores(args.flores)
    warc = args.warc if args.warc.is_file() else None
    rows = []
    for name in args.groups.split(","):
        for mode in args.modes.split(","):
            rows.append(run_group(name, flores, warc, mode))
            print(table(rows[-1:]).splitlines()[-1], flush=True)
    print()
    print(table(rows))
    atomic_write_json(args.out, {"flores": str(args.flores), "warc": str(warc) if warc else None,
                                 "planted_pages": PLANTED_PAGES, "page_lines": PAGE_LINES, "min_score": MIN_SCORE,
                                 "machine": {"python": platform.python_version(), "platform": platform.platform()},
                                 "results": rows})
    print(f"\nwritten to {args.out}")


if __name__ == "__main__":
    main()
