"""Scoring inside a run and outside it: contamination (planted sentences, exclusion), the n-gram floor,
evaluation-set formats, chat prompts, spBLEU against sacrebleu's CLI, and ``workbench eval``."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from transformers import AutoModelForCausalLM, AutoTokenizer

from tests.conftest import FIXTURES, ROOT, STORIES, tiny_recipe, write_recipe
from workbench.errors import DataError
from workbench.evaluate.datasets import load_pairs, load_texts, read_lines, source_layout
from workbench.evaluate.ngram import CharNgramModel

FLORES = FIXTURES / "flores200" / "dev"
PLANTED = (1, 4)  # Sardinian dev sentences copied into a crawl input


# -- contamination and the floor in a run ------------------------------------------------------------------


def _crawl_only_recipe(tmp_path: Path, exclude: bool) -> Path:
    srd = read_lines(FLORES, "srd_Latn", "dev")
    corpus = tmp_path / "text"
    corpus.mkdir(exist_ok=True)
    shutil.copy(FIXTURES / "text" / "srd_sample.txt", corpus / "srd_sample.txt")
    shutil.copy(FIXTURES / "text" / "eng_sample.txt", corpus / "eng_sample.txt")
    planted = "\n\n".join(f"Unu cummentu de sa die. {srd[i]}" for i in PLANTED)
    (corpus / "planted.txt").write_text(planted + "\n", encoding="utf-8")
    recipe = tiny_recipe(name="planted")
    recipe["eval"]["lm"]["max_sentences"] = 8
    recipe["eval"]["contamination"] = {"n": 8, "exclude": exclude}
    recipe["stages"] = [{"crawl": {"inputs": [str(corpus / "*.txt")], "lid_seed": str(ROOT / "corpora" / "lid-seed")}}]
    return write_recipe(tmp_path / f"planted-{exclude}.yaml", recipe)


@pytest.fixture(scope="module")
def planted_runs(tmp_path_factory):
    from workbench.engine import run_recipe
    from workbench.recipe import load_recipe

    out = {}
    for exclude in (False, True):
        base = tmp_path_factory.mktemp(f"planted-{exclude}")
        path = _crawl_only_recipe(base, exclude)
        out[exclude] = run_recipe(load_recipe(path), base / "runs", device="cpu", progress=False, echo=lambda _: None)
    return out


def test_planted_eval_sentences_are_flagged(planted_runs):
    board = planted_runs[False].scoreboard
    rate = next(r for r in board if r["kind"] == "contamination" and r.get("language") == "srd_Latn")
    assert rate["stage"] == "crawl" and rate["flagged"] == len(PLANTED) and rate["value"] == pytest.approx(2 / 8)
    eng = next(r for r in board if r["kind"] == "contamination" and r.get("language") == "eng_Latn")
    assert eng["flagged"] == 0
    reference = next(r for r in board if r.get("metric") == "reference_overlap_rate")
    assert reference["flagged"] == 2 and reference["n"] == 6  # MT scores the first 6 sentences
    report = next(planted_runs[False].store.root.glob("scores/contamination-crawl-*/contamination.json"))
    assert json.loads(report.read_text())["sets"]["lm:srd_Latn"]["indices"] == list(PLANTED)


def test_exclusion_rescores_without_the_flagged_sentences(planted_runs):
    full, clean = planted_runs[False].scoreboard, planted_runs[True].scoreboard

    def lm(board, code, metric="bits_per_byte"):
        return next(r for r in board if r["stage"] == "base" and r.get("language") == code and r["metric"] == metric)

    # the same sentences are left out in every language (FLORES is multi-way parallel)
    for code in ("srd_Latn", "eng_Latn"):
        assert lm(full, code)["n"] == 8 and "excluded" not in lm(full, code)
        assert lm(clean, code)["n"] == 8 - len(PLANTED) and lm(clean, code)["excluded"] == len(PLANTED)
    rows = [json.loads(line) for path in planted_runs[True].store.root.glob("scores/score-base-*/lm_sentences.jsonl")
            for line in path.read_text().splitlines()]
    kept = [r for r in rows if r["language"] == "srd_Latn" and r["index"] not in PLANTED]
    assert lm(clean, "srd_Latn")["value"] == pytest.approx(sum(r["bits"] for r in kept) / sum(r["bytes"] for r in kept))
    bleu = next(r for r in clean if r["stage"] == "base" and r.get("metric") == "bleu")
    assert bleu["n"] == 4 and bleu["excluded"] == 2


def test_floor_equals_an_independent_char_trigram(planted_runs):
    result = planted_runs[False]
    crawl = next(Path(s["path"]) for s in result.steps if s["id"] == "crawl")
    texts = [json.loads(line)["text"] for line in (crawl / "corpus" / "srd_Latn.jsonl").read_text().splitlines()]
    expected = CharNgramModel(3).fit(texts).score(read_lines(FLORES, "srd_Latn", "dev")[:8])
    floor = {r["metric"]: r for r in result.scoreboard if r["stage"] == "floor" and r["language"] == "srd_Latn"}
    assert floor["bits_per_byte"]["variant"] == "char-3gram"
    assert floor["bits_per_byte"]["value"] == pytest.approx(expected.bits_per_byte, rel=1e-12)
    assert floor["bits_per_char"]["value"] == pytest.approx(expected.bits_per_char, rel=1e-12)
    base = next(r for r in result.scoreboard if r["stage"] == "base" and r.get("language") == "srd_Latn"
                and r["metric"] == "bits_per_byte")
    assert floor["bits_per_byte"]["value"] < base["value"]  # the English toy model is below a Sardinian trigram


# -- evaluation-set formats ----------------------------------------------------------------------------------


def test_every_source_layout_gives_the_same_pairs(tmp_path):
    eng, srd = read_lines(FLORES, "eng_Latn", "dev")[:5], read_lines(FLORES, "srd_Latn", "dev")[:5]
    nested = tmp_path / "flores" / "dev"
    nested.mkdir(parents=True)
    parallel = tmp_path / "seed"
    parallel.mkdir()
    for code, lines in (("eng_Latn", eng), ("srd_Latn", srd)):
        (nested / f"{code}.dev").write_text("\n".join(lines) + "\n", encoding="utf-8")
        (parallel / f"{code}.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    tsv = tmp_path / "pairs.tsv"
    tsv.write_text("srd_Latn\teng_Latn\n" + "".join(f"{s}\t{e}\n" for e, s in zip(eng, srd, strict=True)))
    jsonl = tmp_path / "pairs.jsonl"
    jsonl.write_text("".join(json.dumps({"eng_Latn": e, "srd_Latn": s}) + "\n" for e, s in zip(eng, srd, strict=True)))
    expected = list(zip(eng, srd, strict=True))
    for source, layout in ((tmp_path / "flores", "flores"), (nested, "flores"), (parallel, "parallel"),
                           (tsv, "tsv"), (jsonl, "jsonl")):
        assert source_layout(source) == layout
        assert list(load_pairs(source, "eng_Latn", "srd_Latn", "dev")) == expected, source


def test_bad_sets_are_one_clear_error(tmp_path):
    tsv = tmp_path / "bad.tsv"
    tsv.write_text("eng_Latn\tsrd_Latn\none\tunu\ntwo\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"bad\.tsv:3: 1 tab-separated fields, the header has 2"):
        load_texts(tsv, "eng_Latn")
    with pytest.raises(DataError, match=r"no column 'ita_Latn'; the header row names eng_Latn, srd_Latn"):
        load_texts(tsv, "ita_Latn")
    jsonl = tmp_path / "bad.jsonl"
    jsonl.write_text('{"eng_Latn": "one"}\n{"srd_Latn": "unu"}\n', encoding="utf-8")
    with pytest.raises(DataError, match=r"bad\.jsonl:2: no string field 'eng_Latn' \(found: srd_Latn\)"):
        load_texts(jsonl, "eng_Latn")
    (tmp_path / "x.csv").write_text("a,b\n")
    with pytest.raises(DataError, match=r"cannot read an evaluation set from a '\.csv' file"):
        load_texts(tmp_path / "x.csv", "eng_Latn")
    flores = tmp_path / "f"
    flores.mkdir()
    (flores / "eng_Latn.dev").write_text("a\nb\nc\n")
    (flores / "srd_Latn.dev").write_text("a\nb\n")
    with pytest.raises(DataError, match=r"misaligned evaluation set .*eng_Latn has 3 sentences but srd_Latn has 2"):
        load_pairs(flores, "eng_Latn", "srd_Latn", "dev")
    with pytest.raises(DataError, match="not a FLORES-style code"):
        load_texts(flores, "english")


def test_hub_set_offline_is_one_message(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    with pytest.raises(DataError, match=r"hf:openlanguagedata/flores_plus: cannot load config 'srd_Latn'.*Offline"):
        load_texts("hf:openlanguagedata/flores_plus", "srd_Latn", "devtest")


def test_exemplars_come_from_dev_when_scoring_devtest(tmp_path):
    from workbench.evaluate.scorer import mt_split
    from workbench.recipe import MTEvalConfig

    for split in ("dev", "devtest"):
        for code in ("eng_Latn", "srd_Latn"):
            (tmp_path / f"{code}.{split}").write_text(
                "".join(f"{code} {split} {i}\n" for i in range(10)), encoding="utf-8")
    cfg = MTEvalConfig(sets=tmp_path, split="devtest", directions=["eng_Latn-srd_Latn"], max_sentences=10, shots=2)
    scored, exemplars = mt_split(cfg, "eng_Latn-srd_Latn")
    assert len(scored) == 10 and all("devtest" in s for s, _ in scored)
    assert exemplars == [("eng_Latn dev 0", "srd_Latn dev 0"), ("eng_Latn dev 1", "srd_Latn dev 1")]


# -- prompts: chat template for instruct models, the same encoding in training and scoring ----------------------


CHAT_TEMPLATE = ("{% for m in messages %}<s>{{ m['role'] }}\n{{ m['content'] }}</s>\n{% endfor %}"
                 "{% if add_generation_prompt %}<s>assistant\n{% endif %}")


@pytest.fixture(scope="module")
def chat_model(tmp_path_factory):
    path = tmp_path_factory.mktemp("chat") / "model"
    shutil.copytree(STORIES, path)
    tokenizer = AutoTokenizer.from_pretrained(path)
    tokenizer.chat_template = CHAT_TEMPLATE
    tokenizer.save_pretrained(path)
    return AutoModelForCausalLM.from_pretrained(path).eval(), AutoTokenizer.from_pretrained(path)


def test_instruct_models_get_their_chat_template(chat_model):
    from workbench.evaluate.mt import translate
    from workbench.evaluate.prompts import encode_prompt, prompt_style, render_completion, render_prompt

    model, tokenizer = chat_model
    assert prompt_style(tokenizer) == "chat" and prompt_style(tokenizer, "plain") == "plain"
    prompt = render_prompt(tokenizer, "chat", "Hello.", "eng_Latn", "srd_Latn", [("Good day.", "Bona die.")])
    assert prompt.startswith("<s>user\nTranslate this English sentence into Sardinian.")
    assert "Good day.</s>\n<s>assistant\nBona die.</s>\n<s>user\n" in prompt and prompt.endswith("<s>assistant\n")
    ids = encode_prompt(tokenizer, "chat", prompt)
    assert ids.count(tokenizer.bos_token_id) == prompt.count("<s>")  # the template's tokens parse, none added
    assert render_completion(tokenizer, "chat", "Salude.") == "Salude.</s>\n"
    out = translate(model, tokenizer, ["Hello.", "Lily had a ball."], "eng_Latn", "srd_Latn", max_new_tokens=8)
    assert len(out) == 2 and all("\n" not in h for h in out)


def test_finetune_encodes_prompts_as_the_scorer_does(chat_model):
    from workbench.evaluate.prompts import encode_prompt, render_prompt
    from workbench.stages.finetune import _encode

    _, tokenizer = chat_model
    for style in ("chat", "plain"):
        (ids, labels), = _encode(tokenizer, style, [("eng_Latn", "srd_Latn", "Hello.", "Salude.")], 200)
        prompt_ids = encode_prompt(tokenizer, style, render_prompt(tokenizer, style, "Hello.", "eng_Latn", "srd_Latn"))
        assert ids[: len(prompt_ids)] == prompt_ids and labels[: len(prompt_ids)] == [-100] * len(prompt_ids)
        assert all(label != -100 for label in labels[len(prompt_ids):])


# -- spBLEU, checked against sacrebleu's own command line ---------------------------------------------------------


def test_spbleu_equals_sacrebleu_cli(tmp_path, monkeypatch):
    """A locally trained SentencePiece model stands in for the flores200 one (same file name and place)."""
    sentencepiece = pytest.importorskip("sentencepiece")
    from sacrebleu.tokenizers import tokenizer_spm

    from workbench.evaluate import mt

    models = tmp_path / "sacrebleu" / "models"
    models.mkdir(parents=True)
    text = read_lines(FLORES, "srd_Latn", "dev") + read_lines(FLORES, "eng_Latn", "dev")
    sentencepiece.SentencePieceTrainer.train(sentence_iterator=iter(text), model_prefix=str(models / "spm"),
                                             vocab_size=300, character_coverage=1.0)
    (models / "spm.model").rename(models / "flores200sacrebleuspm")
    monkeypatch.setattr(tokenizer_spm, "SACREBLEU_DIR", str(tmp_path / "sacrebleu"))
    monkeypatch.setattr(mt, "_spbleu_state", {})
    references, hypotheses = read_lines(FLORES, "srd_Latn", "dev")[:20], read_lines(FLORES, "ita_Latn", "dev")[:20]
    ours = mt.mt_metrics(hypotheses, references, spbleu=True)
    (tmp_path / "ref.txt").write_text("\n".join(references) + "\n", encoding="utf-8")
    (tmp_path / "hyp.txt").write_text("\n".join(hypotheses) + "\n", encoding="utf-8")
    command = [sys.executable, "-m", "sacrebleu", "ref.txt", "-i", "hyp.txt", "-tok", "flores200", "-w", "4"]
    cli = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, check=True,
                         env={**os.environ, "SACREBLEU": str(tmp_path / "sacrebleu")})
    expected = json.loads(cli.stdout)
    assert ours["spbleu"][0] == pytest.approx(expected["score"], abs=1e-4)
    assert ours["spbleu"][1] == expected["signature"] and "tok:flores200" in expected["signature"]
    assert ours["spbleu"][0] != pytest.approx(ours["bleu"][0])


def test_spbleu_is_skipped_once_when_unavailable(tmp_path, monkeypatch, caplog):
    from sacrebleu.tokenizers import tokenizer_spm

    from workbench.evaluate import mt

    monkeypatch.setattr(tokenizer_spm, "SACREBLEU_DIR", str(tmp_path / "empty"))
    monkeypatch.setattr(mt, "SPBLEU_MODEL_URL", "http://127.0.0.1:9/flores200sacrebleuspm")  # refused: offline
    monkeypatch.setattr(mt, "_spbleu_state", {})
    for _ in range(2):
        assert set(mt.mt_metrics(["a b c"], ["a b d"], spbleu=True)) == {"bleu", "chrf++"}
        assert "flores200sacrebleuspm" in mt.skipped_metrics(spbleu=True)["spbleu"]
    assert sum("spBLEU skipped" in r.getMessage() for r in caplog.records) == 1


# -- workbench eval --------------------------------------------------------------------------------------------


def test_eval_command_scores_any_model(tmp_path):
    out = tmp_path / "scores.json"
    command = [sys.executable, "-m", "workbench.cli", "eval", "--model", str(STORIES), "--lm-sets", str(FLORES),
               "--languages", "srd_Latn,eng_Latn", "--mt-sets", str(FLORES), "--directions", "eng_Latn-srd_Latn",
               "--max-sentences", "4", "--out", str(out), "--device", "cpu", "--no-progress"]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    records = json.loads(out.read_text())
    assert {r["kind"] for r in records} == {"lm", "mt", "detector"}
    assert all(r["stage"] == "eval" and r["model"] == str(STORIES) and r["n"] > 0 for r in records)
    assert (tmp_path / "scores-sentences" / "translations.jsonl").is_file()
    assert "bits_per_byte" in proc.stdout

    bad = subprocess.run([*command[:6], "--lm-sets", str(tmp_path / "nope"), "--languages", "srd", "--out",
                          str(out)], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert "--lm-sets: path does not exist" in bad.stderr
    assert "--languages: 'srd' is not a FLORES-style code" in bad.stderr


def test_eval_command_with_an_adapter_reproduces_the_run_scores(finished_run, tmp_path):
    """`workbench eval --adapter` on a run's finetuned adapter gives the run's own bits per byte."""
    _, _, result = finished_run
    finetune = next(Path(s["path"]) for s in result.steps if s["id"] == "finetune")
    record = json.loads((finetune / "artifact.json").read_text())
    entry = next(m for m in record["models"] if m["variant"] == "lora-r4")
    base = (finetune / entry["path"]).resolve()
    out = tmp_path / "adapter.json"
    proc = subprocess.run([sys.executable, "-m", "workbench.cli", "eval", "--model", str(base), "--adapter",
                           str(finetune / entry["adapter"]), "--lm-sets", str(FLORES), "--languages",
                           "srd_Latn,eng_Latn", "--max-sentences", "16", "--out", str(out), "--device", "cpu",
                           "--no-progress"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    ours = {(r["language"], r["metric"]): r for r in json.loads(out.read_text())}
    assert ours[("srd_Latn", "bits_per_byte")]["variant"] == "lora-r4"
    for code in ("srd_Latn", "eng_Latn"):
        run = next(r for r in result.scoreboard if r["stage"] == "finetune" and r["variant"] == "lora-r4"
                   and r.get("language") == code and r["metric"] == "bits_per_byte")
        assert ours[(code, "bits_per_byte")]["value"] == pytest.approx(run["value"], abs=1e-6)
