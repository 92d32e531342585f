"""The translation prompt, shared by evaluation (``mt``) and fine-tuning (``finetune``).

A prompt with one exemplar, for ``eng_Latn`` -> ``srd_Latn``::

    English: Good morning.
    Sardinian: Bona die.

    English: {source}
    Sardinian:

and the completion a model is trained to produce is ``" " + target + "\\n"``.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..languages import language_name


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
