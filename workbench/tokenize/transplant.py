"""Transplant a new vocabulary into a model: new embedding matrices, special-token contract, saving.

:func:`transplant` is the whole operation (used by the tokenizer stage and ``workbench transplant``):
build the :class:`~.vocab.VocabPlan` for the mode, initialize the rows (:mod:`.init`), swap the weights
into the model's own embedding modules (so e.g. Gemma's scaled embedding keeps its scale), and remap
every special-token id the model config and generation config carry.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import AutoTokenizer

from ..io import atomic_write_text
from .init import build_matrix
from .vocab import VocabPlan, extend_vocab, replace_vocab, reserved_placeholders, text_scripts, trim_vocab


@dataclass
class TransplantConfig:
    """Options of a transplant (the tokenizer stage's recipe block maps onto these)."""

    mode: str = "extend"
    vocab_size: int = 8000
    max_new_tokens: int | None = None
    min_frequency: int = 2
    init: str = "subtoken"
    neighbours: int = 8
    mix: float = 0.3
    shrink: float = 0.1
    fresh: bool = False
    pad_to_multiple_of: int | None = None
    drop_reserved: bool = False
    """trim/replace: drop the base's reserved placeholder tokens (``<unused12>``; see
    :func:`~.vocab.reserved_placeholders`); off by default, as every added token keeps its row otherwise."""
    max_rows: int | None = None
    """trim: fill the vocabulary up to this many rows with the pieces ``fill`` texts use most
    (:func:`~.vocab.fill_by_weight`); ``None``: only what the corpora use."""
    join_marks: bool = True
    """extend/replace: let the combining marks of the target's scripts join their letters' words when the base
    pre-tokenizer splits them off (:func:`~.vocab.join_marks`); protected text keeps its exact ids either way."""
    seed: int = 0


def first_free_id(model: Any, spec: dict[str, Any]) -> int:
    """First id after every id in use (vocabulary, added tokens, padded embedding rows)."""
    ids = list(spec["model"]["vocab"].values()) + [t["id"] for t in spec.get("added_tokens", [])]
    return max(max(ids) + 1, model.get_input_embeddings().weight.shape[0])


def transplant(model: Any, base_spec: dict[str, Any], texts: Sequence[str], config: TransplantConfig, *,
               protect: Sequence[str] = (), keep: Sequence[str] = (), chat: Sequence[str] = (),
               chat_template: str | dict[str, str] | None = None,
               fill: Mapping[str, float] | None = None) -> tuple[VocabPlan, dict[str, Any]]:
    """Give ``model`` a new vocabulary (in place); returns the plan and an initialization report.

    ``texts``: target-language corpus. ``protect`` (extend): text whose segmentation must not change.
    ``keep`` (trim): more text whose pieces are kept, besides ``texts`` (replay languages, English).
    ``chat``: the chat template's own text (:func:`chat_renderings`): its segmentation is kept in every mode
    (role markers tokenize as in the base) and no reserved placeholder it uses is dropped. ``chat_template``: the
    template's source; a placeholder it names in any branch (tool calls, say) is never dropped either.
    ``fill`` (trim with ``config.max_rows``): weighted text (:func:`~.wordlists.word_weights`) whose most used
    pieces fill the row budget.
    """
    plan = make_plan(model, base_spec, texts, config, protect=protect, keep=keep, chat=chat,
                     chat_template=chat_template, fill=fill)
    report = apply_plan(model, plan, base_spec, config, focus_texts=texts)
    return plan, report


def make_plan(model: Any, base_spec: dict[str, Any], texts: Sequence[str], config: TransplantConfig, *,
              protect: Sequence[str] = (), keep: Sequence[str] = (), chat: Sequence[str] = (),
              chat_template: str | dict[str, str] | None = None, fill: Mapping[str, float] | None = None) -> VocabPlan:
    """The vocabulary plan of ``config.mode`` (see :mod:`.vocab`), padded as configured."""
    needed = "\n".join([*chat, template_source(chat_template)])  # what the template renders or names anywhere
    drop = reserved_placeholders(base_spec, needed=needed) if config.drop_reserved else set()
    protect, keep = [*protect, *chat], [*keep, *chat]
    scripts = text_scripts(texts) if config.join_marks and config.mode != "trim" else []
    if config.mode == "extend":
        plan = extend_vocab(base_spec, texts, max_new_tokens=config.max_new_tokens or config.vocab_size,
                            first_id=first_free_id(model, base_spec), min_frequency=config.min_frequency,
                            protect=protect, join_scripts=scripts)
    elif config.mode == "replace":
        plan = replace_vocab(base_spec, texts, config.vocab_size, config.min_frequency, keep=keep,
                             fresh=config.fresh, drop=drop, protect=chat, join_scripts=scripts)
    elif config.mode == "trim":
        plan = trim_vocab(base_spec, [*texts, *keep], drop=drop, fill=fill, max_rows=config.max_rows)
    else:
        raise ValueError(f"unknown transplant mode '{config.mode}'; choose extend, replace or trim")
    plan.pad_to_multiple(config.pad_to_multiple_of)
    return plan


_TURNS = [{"role": "user", "content": ""}, {"role": "assistant", "content": ""}]
CHAT_SAMPLES = ([{"role": "system", "content": ""}, *_TURNS], _TURNS)


def template_source(template: str | dict[str, str] | None) -> str:
    """A chat template's Jinja source; a tokenizer with several named templates gives them all."""
    if isinstance(template, dict):
        return "\n".join(map(str, template.values()))
    return template or ""


def chat_renderings(tokenizer: Any) -> list[str]:
    """The chat template rendered for empty conversations (with and without a system turn, with and without
    the generation prompt): the template's own text, role markers included. Empty without a template."""
    if not getattr(tokenizer, "chat_template", None):
        return []
    texts = []
    for messages in CHAT_SAMPLES:
        for prompt in (False, True):
            try:
                texts.append(tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=prompt))
            except Exception:  # a template may refuse a system turn or empty content
                continue
    return list(dict.fromkeys(texts))


def special_ids(spec: dict[str, Any]) -> list[int]:
    """Ids of the added/special tokens of a tokenizer spec."""
    return [t["id"] for t in spec.get("added_tokens", [])]


@torch.no_grad()
def apply_plan(model: Any, plan: VocabPlan, base_spec: dict[str, Any], config: TransplantConfig, *,
               focus_texts: Sequence[str] = ()) -> dict[str, Any]:
    """New input (and untied output) matrices swapped into the model's modules; config ids remapped."""
    inputs, outputs = model.get_input_embeddings(), model.get_output_embeddings()
    tied = outputs is None or outputs.weight.data_ptr() == inputs.weight.data_ptr()
    base_rows = inputs.weight.shape[0]
    vocab_ids = set(base_spec["model"]["vocab"].values()) | set(special_ids(base_spec))
    exclude = special_ids(base_spec) + [i for i in range(base_rows) if i not in vocab_ids]
    options = dict(neighbours=config.neighbours, mix=config.mix, shrink=config.shrink, focus_texts=focus_texts,
                   seed=config.seed, exclude=exclude)
    new_inputs = build_matrix(inputs.weight, plan, base_spec, config.init, **options)
    new_outputs = None if tied else build_matrix(outputs.weight, plan, base_spec, config.init, **options)
    _swap(model, new_inputs, new_outputs, plan)
    return {"mode": plan.mode, "init": config.init, "tied": tied, "base_rows": base_rows,
            "rows": plan.rows, **plan.stats}


def _swap(model: Any, new_inputs: torch.Tensor, new_outputs: torch.Tensor | None, plan: VocabPlan) -> None:
    inputs, outputs = model.get_input_embeddings(), model.get_output_embeddings()
    id_map = plan.id_map()
    inputs.weight = torch.nn.Parameter(new_inputs, requires_grad=inputs.weight.requires_grad)
    inputs.num_embeddings = new_inputs.shape[0]
    if getattr(inputs, "padding_idx", None) is not None:
        inputs.padding_idx = id_map.get(inputs.padding_idx)
    if outputs is not None:
        if new_outputs is None:
            outputs.weight = inputs.weight
        else:
            outputs.weight = torch.nn.Parameter(new_outputs, requires_grad=outputs.weight.requires_grad)
        outputs.out_features = new_inputs.shape[0]
        if getattr(outputs, "bias", None) is not None:
            bias = torch.zeros(new_inputs.shape[0], dtype=outputs.bias.dtype)
            for new, old in enumerate(plan.sources):
                if old is not None:
                    bias[new] = outputs.bias[old]
            outputs.bias = torch.nn.Parameter(bias)
    for config in {id(c): c for c in (model.config, model.config.get_text_config())}.values():
        config.vocab_size = new_inputs.shape[0]
    remap_special_ids(model.config, id_map)
    if getattr(model, "generation_config", None) is not None:
        remap_special_ids(model.generation_config, id_map)


def remap_special_ids(config: Any, id_map: dict[int, int]) -> None:
    """bos/eos/pad/decoder-start ids (ints or lists, e.g. the generation config's EOS list) moved to new ids."""
    for name in ("bos_token_id", "eos_token_id", "pad_token_id", "decoder_start_token_id"):
        value = getattr(config, name, None)
        if value is None:
            continue
        if isinstance(value, list):
            setattr(config, name, [id_map[v] for v in value if v in id_map])
        else:
            setattr(config, name, id_map.get(value))


# ---------------------------------------------------------------------------------------- saving


def save_tokenizer(hf_tokenizer: Any, spec: dict[str, Any], out_dir: Path) -> None:
    """Save ``hf_tokenizer``'s files with ``spec`` as its ``tokenizer.json``.

    Files that would contradict the new vocabulary go: slow-tokenizer files (``tokenizer.model``,
    ``vocab.json``, ``merges.txt``), the id table ``added_tokens_decoder`` in ``tokenizer_config.json`` and
    listed special tokens the new vocabulary dropped (loading would append them as rows the model lacks).
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    hf_tokenizer.save_pretrained(out_dir)
    atomic_write_text(out_dir / "tokenizer.json", json.dumps(spec, ensure_ascii=False))
    for stale in ("tokenizer.model", "vocab.json", "merges.txt"):
        path = out_dir / stale
        if path.is_file():
            path.unlink()
        elif path.is_dir():
            shutil.rmtree(path)
    present = set(spec["model"]["vocab"]) | {t["content"] for t in spec.get("added_tokens", [])}
    config_path = out_dir / "tokenizer_config.json"
    if config_path.is_file():
        config = json.loads(config_path.read_text(encoding="utf-8"))
        config.pop("added_tokens_decoder", None)
        _drop_absent_specials(config, present)
        if config.get("tokenizer_class") in ("LlamaTokenizer", "LlamaTokenizerFast", "GemmaTokenizer",
                                             "GemmaTokenizerFast"):
            config["tokenizer_class"] = "PreTrainedTokenizerFast"  # these rebuild their pipeline otherwise
        atomic_write_text(config_path, json.dumps(config, indent=2, ensure_ascii=False))
    map_path = out_dir / "special_tokens_map.json"  # written by older transformers
    if map_path.is_file():
        special_map = json.loads(map_path.read_text(encoding="utf-8"))
        _drop_absent_specials(special_map, present)
        atomic_write_text(map_path, json.dumps(special_map, indent=2, ensure_ascii=False))


def _drop_absent_specials(config: dict[str, Any], present: set[str]) -> None:
    """Remove tokens not in ``present`` from the special-token lists of a tokenizer config."""
    def kept(token: Any) -> bool:  # a string, or an AddedToken dict
        return (token.get("content") if isinstance(token, dict) else token) in present

    for key in ("additional_special_tokens", "extra_special_tokens"):
        listed = config.get(key)
        if isinstance(listed, list):
            config[key] = [t for t in listed if kept(t)]
        elif isinstance(listed, dict):  # named extra tokens (image_token: "<image_soft_token>")
            config[key] = {name: t for name, t in listed.items() if kept(t)}


def save_model_dir(model: Any, hf_tokenizer: Any, spec: dict[str, Any], out_dir: Path) -> None:
    """A plain Hugging Face model directory (weights, config, generation config, tokenizer)."""
    model.save_pretrained(out_dir)
    save_tokenizer(hf_tokenizer, spec, out_dir)


def check_special_contract(base_tokenizer: Any, new_dir: Path, plan: VocabPlan | None = None) -> list[str]:
    """Problems with the saved tokenizer's special tokens (empty when the contract holds).

    Every added/special token of the base, except the reserved placeholders the ``plan`` dropped, exists as
    one token; bos/eos/pad/unk keep their strings; the chat template renders, every special token it uses
    encodes as a single id, and its own text (:func:`chat_renderings`) tokenizes as with the base (not
    checked for a vocabulary trained from characters, ``replace`` with ``fresh``).
    """
    new = AutoTokenizer.from_pretrained(new_dir)
    dropped = set(plan.dropped) if plan is not None else set()
    fresh = plan is not None and bool(plan.stats.get("fresh"))
    problems = [f"dropped placeholder {text!r} is still a token" for text in sorted(dropped & set(new.get_vocab()))]
    template = getattr(base_tokenizer, "chat_template", None)
    source = template_source(template)
    problems += [f"dropped placeholder {text!r} is named by the chat template" for text in sorted(dropped)
                 if text in source]
    for content in base_tokenizer.added_tokens_decoder.values():
        text = str(content)
        if text in dropped:
            continue
        ids = new.encode(text, add_special_tokens=False)
        if len(ids) != 1:
            problems.append(f"special token {text!r} is {len(ids)} tokens in the new tokenizer")
    for role in ("bos_token", "eos_token", "pad_token", "unk_token"):
        if getattr(base_tokenizer, role, None) != getattr(new, role, None):
            problems.append(f"{role} changed: {getattr(base_tokenizer, role, None)!r} -> {getattr(new, role, None)!r}")
    for text in [] if fresh else chat_renderings(base_tokenizer):
        old, now = base_tokenizer.tokenize(text), new.tokenize(text)
        if old != now:
            problems.append(f"the chat template's text {text!r} tokenizes as {now} instead of {old}")
    if template:
        if getattr(new, "chat_template", None) != template:
            problems.append("the chat template was not carried over")
        else:
            messages = [{"role": "user", "content": "Salude!"}, {"role": "assistant", "content": "Salude."}]
            rendered = new.apply_chat_template(messages, tokenize=False)
            pieces = new.convert_ids_to_tokens(new.encode(rendered, add_special_tokens=False))
            for content in map(str, base_tokenizer.added_tokens_decoder.values()):
                if content in rendered and content not in pieces:
                    problems.append(f"chat-template token {content!r} does not encode as one token")
    return problems
