"""Character n-gram language model: the floor of the scoreboard.

Trained on the target training corpus and scored on the same held-out text as the neural models, so
"the model is worse than a character trigram on this language" is visible in bits per byte.

**Symbols.** Texts are NFC-normalized and read as Unicode code points. Each text is scored as its
characters ``c_1 .. c_m`` followed by the end symbol :data:`END`, each conditioned on the ``n − 1``
previous symbols, padded on the left with the begin symbol :data:`BOS`. Both are lone surrogates,
which are not Unicode scalar values, so they never collide with a character; texts containing a
surrogate are rejected.

**Smoothing: interpolated Kneser–Ney** (Chen & Goodman 1998, one discount per order). For a history
``h`` of ``k`` symbols (``k = n−1 .. 0``) and a symbol ``w``::

    p_k(w | h) = [max(c_k(h w) − D_k, 0) + D_k · N_k(h •) · p_{k−1}(w | h')] / c_k(h •)

where ``h'`` is ``h`` without its oldest symbol, ``c_k(h •) = Σ_w c_k(h w)`` and
``N_k(h •) = #{w : c_k(h w) > 0}``. ``c_{n−1}`` are raw counts; for ``k < n−1``,
``c_k(h w) = #{x : c_{k+1}(x h w) > 0}`` (continuation counts). A history never seen
(``c_k(h •) = 0``) passes the lower order through: ``p_k(w | h) = p_{k−1}(w | h')``.
``D_k = n1 / (n1 + 2·n2)`` (``n_r``: number of pairs ``(h, w)`` with ``c_k(h w) = r``), clipped to
``[0.1, 0.9]``, unless a fixed ``discount`` is given.

**Open vocabulary.** The recursion ends in a uniform base ``p_{−1}(w) = 1 / (CHAR_SPACE + 1)``
over every Unicode scalar value (all code points except surrogates: ``CHAR_SPACE = 1,112,064``, so
characters outside the BMP are covered too) plus the end symbol. Every level keeps mass
``D_k · N_k(h •) / c_k(h •) > 0`` for the level below, so every symbol, seen or not, has a positive
probability, the probabilities of all ``CHAR_SPACE + 1`` symbols sum to 1 in every context, and every
text has finite bits.
"""

from __future__ import annotations

import json
import math
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

from .lm import LMScore

BOS = "\ud800"  # begin-of-text padding (context only, never predicted)
END = "\udc00"  # end-of-text symbol (predicted, never in a context)
CHAR_SPACE = 0x110000 - 0x800  # Unicode scalar values: every code point except the 2,048 surrogates
DISCOUNT_RANGE = (0.1, 0.9)
FORMAT = "workbench.char-ngram/1"
_SURROGATE = re.compile("[\ud800-\udfff]")

_Level = dict[str, tuple[int, int, dict[str, int]]]  # history -> (c(h •), N(h •), {w: c(h w)})


def _prepare(text: str) -> str:
    """NFC form of ``text``; a text containing a surrogate (not a character) is a ValueError."""
    if _SURROGATE.search(text):
        raise ValueError(f"text contains a surrogate code point, not a Unicode character: {text[:40]!r}")
    return unicodedata.normalize("NFC", text)


def _estimate_discount(counts: Iterable[dict[str, int]]) -> float:
    """Ney's estimate n1 / (n1 + 2·n2), clipped to DISCOUNT_RANGE."""
    values = Counter(c for dist in counts for c in dist.values() if c <= 2)
    n1, n2 = values[1], values[2]
    estimate = n1 / (n1 + 2 * n2) if n1 else 0.0
    return min(max(estimate, DISCOUNT_RANGE[0]), DISCOUNT_RANGE[1])


class CharNgramModel:
    """Interpolated Kneser–Ney character n-gram model with an open vocabulary (see the module docstring)."""

    def __init__(self, order: int = 3, *, discount: float | None = None) -> None:
        if order < 1:
            raise ValueError(f"order must be at least 1, got {order}")
        if discount is not None and not 0.0 < discount <= 1.0:
            raise ValueError(f"discount must be in (0, 1], got {discount}")
        self.order = order
        self.discount = discount
        self.char_space = CHAR_SPACE
        self._build({})

    # -- training ----------------------------------------------------------------------------------

    def fit(self, texts: Iterable[str]) -> CharNgramModel:
        """Count the n-grams of ``texts`` (replacing any previous fit); returns ``self``."""
        n, pad = self.order, BOS * (self.order - 1)
        grams: Counter[str] = Counter()
        for text in texts:
            symbols = pad + _prepare(text) + END
            grams.update(symbols[i : i + n] for i in range(len(symbols) - n + 1))
        top: dict[str, dict[str, int]] = {}
        for gram, count in grams.items():
            top.setdefault(gram[:-1], {})[gram[-1]] = count
        self._build(top)
        return self

    def _build(self, top: dict[str, dict[str, int]]) -> None:
        """Levels 0..n−1 from the raw counts of the top order (continuation counts below it)."""
        counts = [top]
        for _ in range(self.order - 1):
            lower: dict[str, dict[str, int]] = {}
            for history, dist in counts[-1].items():
                target = lower.setdefault(history[1:], {})
                for symbol in dist:
                    target[symbol] = target.get(symbol, 0) + 1
            counts.append(lower)
        counts.reverse()
        self._levels: list[_Level] = [
            {h: (sum(d.values()), len(d), d) for h, d in level.items()} for level in counts
        ]
        self._discounts = [
            self.discount if self.discount is not None else _estimate_discount(level.values())
            for level in counts
        ]

    # -- probabilities -----------------------------------------------------------------------------

    @property
    def vocab(self) -> list[str]:
        """The characters seen in training (sorted; the end symbol excluded)."""
        return sorted(w for w in self._levels[0].get("", (0, 0, {}))[2] if w != END)

    @property
    def discounts(self) -> list[float]:
        """``D_k`` for history lengths ``k = 0 .. n−1``."""
        return list(self._discounts)

    def prob(self, context: str, char: str) -> float:
        """p(``char`` | ``context``): ``char`` is one character or :data:`END`.

        ``context`` is the text so far (code points as given): its last ``n − 1`` characters are used,
        and a shorter context is the start of a text (padded with :data:`BOS`).
        """
        if len(char) != 1 or (char != END and _SURROGATE.match(char)):
            raise ValueError(f"char must be one character or END, got {char!r}")
        padded = BOS * (self.order - 1) + context
        return self._prob(padded[len(padded) - (self.order - 1) :], char)

    def _prob(self, history: str, symbol: str) -> float:
        """p(symbol | history) for a padded history of exactly ``n − 1`` symbols."""
        p = 1.0 / (self.char_space + 1)
        for k in range(self.order):
            entry = self._levels[k].get(history[len(history) - k :])
            if entry is None:  # unseen: so is every longer history ending with it
                break
            total, types, dist = entry
            discount = self._discounts[k]
            p = (max(dist.get(symbol, 0) - discount, 0.0) + discount * types * p) / total
        return p

    def score(self, texts: Iterable[str]) -> LMScore:
        """Σ −log₂ p over every character and end symbol of each text (NFC), scored independently.

        ``bytes`` and ``chars`` count the texts as given (the denominators of :func:`score_texts`);
        ``tokens`` counts the scored symbols, one end symbol per text included.
        """
        width = self.order - 1
        bits, n_bytes, chars, tokens, n = 0.0, 0, 0, 0, 0
        for text in texts:
            symbols = BOS * width + _prepare(text) + END
            for i in range(width, len(symbols)):
                bits -= math.log2(self._prob(symbols[i - width : i], symbols[i]))
            tokens += len(symbols) - width
            n_bytes += len(text.encode("utf-8"))
            chars += len(text)
            n += 1
        return LMScore(bits=bits, bytes=n_bytes, chars=chars, tokens=tokens, n=n,
                       prefix_policy=f"char-ngram order {self.order}")

    # -- persistence -------------------------------------------------------------------------------

    def save(self, path: str | Path) -> None:
        """Write the model as JSON: order, discount, character space and the raw top-order counts."""
        top = self._levels[self.order - 1]
        data = {
            "format": FORMAT,
            "order": self.order,
            "discount": self.discount,
            "char_space": self.char_space,
            "counts": {h + w: c for h, (_, _, dist) in top.items() for w, c in dist.items()},
        }
        Path(path).write_text(json.dumps(data, ensure_ascii=True, sort_keys=True), encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path) -> CharNgramModel:
        """Read a model written by :meth:`save`."""
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        if data.get("format") != FORMAT or data.get("char_space") != CHAR_SPACE:
            raise ValueError(f"{path}: not a {FORMAT} model with a character space of {CHAR_SPACE}")
        model = cls(data["order"], discount=data["discount"])
        top: dict[str, dict[str, int]] = {}
        for gram, count in data["counts"].items():
            top.setdefault(gram[:-1], {})[gram[-1]] = count
        model._build(top)
        return model
