"""Build ``corpora/lid-seed/<code>.txt``: seed texts for the crawl's language identifier.

Sources (see ``corpora/lid-seed/README.md`` for licences):

* UDHR in XML (Unicode "UDHR in XML" project, OHCHR translations): every ``<para>``,
  one paragraph per line, whitespace collapsed.
* NLLB-Seed (NLLB team, CC BY-SA 4.0): the FIRST ``--nllb-lines`` lines per language.

FLORES-200 is the evaluation set: only the Meitei recipe's Bengali-script neighbours (no other offline text) take
FLORES dev lines, from line 300 on, which no recipe scores.

Usage: ``python corpora/scripts/build_lid_seed.py [--data ../shared/data] [--out corpora/lid-seed]``
"""

from __future__ import annotations

import argparse
import re
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

# UDHR file key -> FLORES-style code.
UDHR_CODES = {
    "src": "srd_Latn",  # Sardinian, Logudorese
    "ita": "ita_Latn",
    "eng": "eng_Latn",
    "cat": "cat_Latn",
    "spa": "spa_Latn",
    "cos": "cos_Latn",
    "fur": "fur_Latn",
    "lij": "lij_Latn",
    "vec": "vec_Latn",
    "glg": "glg_Latn",
    "ast": "ast_Latn",
    "lnc": "oci_Latn",  # Occitan, Languedocien
    "roh": "roh_Latn",
    "lld": "lld_Latn",
    "mlt": "mlt_Latn",
    "fao": "fao_Latn",
    "quy": "quy_Latn",
    "yor": "yor_Latn",
}
NLLB_CODES = ["srd_Latn", "eng_Latn", "fur_Latn", "lij_Latn", "vec_Latn", "scn_Latn", "lmo_Latn"]
MAX_TOTAL_BYTES = 2_500_000
# The Meitei recipe's seed (corpora/lid-seed-meitei): Meitei and English from NLLB-Seed; its Bengali-script
# neighbours have no other offline text here than FLORES dev, so they take its lines from FLORES_SEED_FROM on,
# which no recipe scores (recipes score at most the first 100 lines of dev).
MEITEI_NLLB = ["mni_Beng", "eng_Latn"]
MEITEI_FLORES = ["ben_Beng", "asm_Beng"]
FLORES_SEED_FROM = 300


def udhr_paragraphs(path: Path) -> list[str]:
    """Text of every ``<para>`` element of a UDHR XML file, whitespace collapsed."""
    root = ET.parse(path).getroot()
    out = []
    for elem in root.iter():
        if elem.tag.rsplit("}", 1)[-1] == "para":
            text = re.sub(r"\s+", " ", "".join(elem.itertext())).strip()
            if text:
                out.append(text)
    return out


def nllb_lines(path: Path, limit: int) -> list[str]:
    """The first ``limit`` non-empty lines of an NLLB-Seed file."""
    out = []
    with open(path, encoding="utf-8") as handle:
        for index, line in enumerate(handle):
            if index >= limit:
                break
            line = re.sub(r"\s+", " ", line).strip()
            if line:
                out.append(line)
    return out


def flores_lines(path: Path, start: int) -> list[str]:
    """The lines of a FLORES dev file from ``start`` on (the seed's share of the split)."""
    return [line.strip() for line in path.read_text(encoding="utf-8").splitlines()[start:] if line.strip()]


def build_meitei(data: Path, out: Path, nllb_limit: int) -> dict[str, int]:
    """Write the Meitei recipe's seed files; returns bytes written per code."""
    texts = {code: nllb_lines(data / "nllb_seed" / f"{code}.txt", nllb_limit) for code in MEITEI_NLLB}
    for code in MEITEI_FLORES:
        texts[code] = flores_lines(data / "flores200" / "dev" / f"{code}.dev", FLORES_SEED_FROM)
    return write_texts(texts, out)


def write_texts(texts: dict[str, list[str]], out: Path) -> dict[str, int]:
    out.mkdir(parents=True, exist_ok=True)
    sizes = {}
    for code, lines in sorted(texts.items()):
        blob = ("\n".join(lines) + "\n").encode("utf-8")
        (out / f"{code}.txt").write_bytes(blob)
        sizes[code] = len(blob)
    return sizes


def build(data: Path, out: Path, nllb_limit: int) -> dict[str, int]:
    """Write one seed file per language; returns bytes written per code."""
    texts: dict[str, list[str]] = {}
    for key, code in UDHR_CODES.items():
        texts.setdefault(code, []).extend(udhr_paragraphs(data / "udhr" / f"udhr_{key}.xml"))
    for code in NLLB_CODES:
        texts.setdefault(code, []).extend(nllb_lines(data / "nllb_seed" / f"{code}.txt", nllb_limit))
    return write_texts(texts, out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--out", type=Path, default=REPO / "corpora" / "lid-seed")
    parser.add_argument("--nllb-lines", type=int, default=1000)
    args = parser.parse_args(argv)
    sizes = build(args.data, args.out, args.nllb_lines)
    meitei = build_meitei(args.data, args.out.parent / "lid-seed-meitei", args.nllb_lines)
    total = sum(sizes.values()) + sum(meitei.values())
    sizes.update({f"meitei/{code}": size for code, size in meitei.items()})
    for code, size in sizes.items():
        print(f"{code}\t{size}")
    print(f"total\t{total}")
    if total > MAX_TOTAL_BYTES:
        print(f"seed data is {total} bytes, above the {MAX_TOTAL_BYTES} budget", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
