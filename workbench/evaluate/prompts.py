"""The translation prompt, shared by evaluation (``mt``) and fine-tuning (``finetune``).

Two styles, picked by :func:`prompt_style`: ``chat`` for instruct models (the tokenizer's own chat
template, exemplars as earlier user/assistant turns) and ``plain`` for base models. A plain prompt
with one exemplar, for ``eng_Latn`` -> ``srd_Latn``::

    English: Good morning.
    Sardinian: Bona die.

    English: {source}
    Sardinian:

and the completion a model is trained to produce is ``" " + target + "\\n"``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..errors import DataError
from ..languages import language_name

STYLES = ("plain", "chat")


def _names(src: str, tgt: str) -> tuple[str, str]:
    """Prompt labels; two scripts of one language (``srp_Cyrl``/``srp_Latn``) get the script added."""
    src_name, tgt_name = language_name(src), language_name(tgt)
    if src_name == tgt_name:
        return f"{src_name} ({src.split('_')[-1]})", f"{tgt_name} ({tgt.split('_')[-1]})"
    return src_name, tgt_name


def _one_line(text: str) -> str:
    return " ".join(text.splitlines()).strip()


def translation_prompt(
    source: str, src: str, tgt: str, exemplars: Sequence[tuple[str, str]] = ()
) -> str:
    """Few-shot prompt asking for the ``tgt`` translation of ``source`` (a ``src`` sentence).

    Newlines inside sentences are replaced by spaces: a newline ends a translation.
    """
    src_name, tgt_name = _names(src, tgt)
    shots = "".join(f"{src_name}: {_one_line(x)}\n{tgt_name}: {_one_line(y)}\n\n" for x, y in exemplars)
    return f"{shots}{src_name}: {_one_line(source)}\n{tgt_name}:"


def translation_completion(target: str) -> str:
    """What follows :func:`translation_prompt` in training data: ``" " + target + "\\n"``."""
    return f" {_one_line(target)}\n"


def clean_hypothesis(text: str, tgt: str) -> str:
    """A generated continuation cut at its first newline, stripped, without an echoed ``"{Tgt}:"`` label."""
    line = text.split("\n", 1)[0].strip()
    name = language_name(tgt)
    for label in (f"{name} ({tgt.split('_')[-1]}):", f"{name}:"):
        if line.startswith(label):
            return line[len(label):].strip()
    return line


# -- styles: plain (base models) and chat (instruct models) ---------------------------------------------


def prompt_style(tokenizer: Any, requested: str = "auto") -> str:
    """``chat`` if requested, or on ``auto`` when the tokenizer has a chat template; else ``plain``."""
    has_template = bool(getattr(tokenizer, "chat_template", None))
    if requested == "chat" and not has_template:
        raise DataError("prompt: chat was requested but the tokenizer has no chat template; use prompt: plain "
                        "(a base model) or prompt: auto")
    if requested not in ("auto", *STYLES):
        raise DataError(f"unknown prompt style '{requested}'; allowed: auto, plain, chat")
    return "chat" if requested == "chat" or (requested == "auto" and has_template) else "plain"


def _instruction(source: str, src: str, tgt: str) -> str:
    src_name, tgt_name = _names(src, tgt)
    return (f"Translate this {src_name} sentence into {tgt_name}. Reply with the translation only.\n\n"
            f"{_one_line(source)}")


def chat_messages(source: str, src: str, tgt: str, exemplars: Sequence[tuple[str, str]] = ()) -> list[dict]:
    """The conversation for a chat prompt: one user/assistant turn per exemplar, then the request."""
    messages: list[dict] = []
    for x, y in exemplars:
        messages += [{"role": "user", "content": _instruction(x, src, tgt)},
                     {"role": "assistant", "content": _one_line(y)}]
    return [*messages, {"role": "user", "content": _instruction(source, src, tgt)}]


def render_prompt(tokenizer: Any, style: str, source: str, src: str, tgt: str,
                  exemplars: Sequence[tuple[str, str]] = ()) -> str:
    """The prompt text in ``style`` (a chat prompt ends with the template's assistant header)."""
    if style == "plain":
        return translation_prompt(source, src, tgt, exemplars)
    return tokenizer.apply_chat_template(chat_messages(source, src, tgt, exemplars), tokenize=False,
                                         add_generation_prompt=True)


def render_completion(tokenizer: Any, style: str, target: str) -> str:
    """What a model is trained to produce after a prompt: plain ``" target\n"``; chat: the template's
    assistant turn (the target and its end-of-turn marker)."""
    if style == "plain":
        return translation_completion(target)
    messages = [{"role": "user", "content": "x"}]  # the completion depends only on the assistant turn
    head = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    full = tokenizer.apply_chat_template([*messages, {"role": "assistant", "content": _one_line(target)}],
                                         tokenize=False)
    if full.startswith(head):
        return full[len(head):]
    return _one_line(target) + (tokenizer.eos_token or "")


def encode_prompt(tokenizer: Any, style: str, text: str) -> list[int]:
    """Token ids of a prompt as the model sees it at inference.

    plain: the tokenizer's own special tokens (BOS where it adds one), the text's ``<...>`` never parsed as
    control tokens; chat: the template already wrote every special token, so none is added and they parse.
    """
    if style == "plain":
        return list(tokenizer(text, split_special_tokens=True, verbose=False)["input_ids"])
    return list(tokenizer(text, add_special_tokens=False, split_special_tokens=False, verbose=False)["input_ids"])


def encode_completion(tokenizer: Any, style: str, text: str) -> list[int]:
    """Token ids of a completion (plain: followed by EOS; chat: the end-of-turn marker is in the text)."""
    if style == "plain":
        ids = list(tokenizer(text, add_special_tokens=False, split_special_tokens=True, verbose=False)["input_ids"])
        return ids + ([tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else [])
    return list(tokenizer(text, add_special_tokens=False, split_special_tokens=False, verbose=False)["input_ids"])
