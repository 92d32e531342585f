"""What the general identifier confuses with the seed languages, measured on the seed text itself: the labels it
gives each seed language's lines and how often (no hand-written list of close languages)."""

from __future__ import annotations

from dataclasses import dataclass

from .base import LanguageIdentifier, predict_batch


@dataclass(frozen=True)
class GeneralConfusion:
    """What the general model says on each seed language's own seed lines: per seed language, how many lines it
    read and how often each top label came out, confident (score >= ``threshold``) or not.

    This is the data the combination rests on (no hand list of close languages): the labels the general model
    gives seed lines are the languages it confuses with them, and how often it gives each one says how much
    its verdict tells the seed languages apart.
    """

    lines: dict[str, int]
    counts: dict[str, dict[str, list[int]]]  # seed code -> top label -> [confident, unsure] line counts
    threshold: float = 0.9
    min_share: float = 0.02  # a label given to at least this share of a language's lines (and 2 lines) confuses

    def confusable(self, confident: bool = False) -> frozenset[str]:
        """FLORES codes of the seed languages and of every label the general model gives a fair share of seed
        lines (the languages it confuses with them). ``confident``: the labels it gives a fair share of *another*
        seed language's lines confidently, and the seed languages it does not know (an unsure "German" on a few
        Lombard lines does not make a confident "German" suspect, nor does a confident "English" on English)."""
        out = set(self.lines) - (self.known() if confident else set())
        for code, labels in self.counts.items():
            floor = max(2, self.min_share * self.lines[code])
            out |= {label for label, (sure, unsure) in labels.items()
                    if (sure if confident else sure + unsure) >= floor and not (confident and label == code)}
        return frozenset(out)

    def confuses(self, code: str, label: str) -> bool:
        """True if the general model gives ``label`` to a fair share of ``code``'s seed lines (see ``min_share``)."""
        sure, unsure = self.counts.get(code, {}).get(label, [0, 0])
        return sure + unsure >= max(2, self.min_share * self.lines.get(code, 0))

    def missing_neighbours(self, min_share: float = 0.2) -> dict[str, list[str]]:
        """Per seed language, the labels without seed text that the general model gives at least ``min_share`` of
        its lines: neighbours the seed model cannot tell it from, so their text would be labelled the seed language
        (Danish text as Faroese when only Faroese has seed text)."""
        out = {}
        for code, labels in sorted(self.counts.items()):
            missing = sorted(label for label, counts in labels.items()
                             if label not in self.lines and sum(counts) >= min_share * self.lines[code])
            if missing:
                out[code] = missing
        return out

    def recall(self, code: str) -> float:
        """Share of ``code``'s seed lines whose top general label is ``code`` itself."""
        sure, unsure = self.counts.get(code, {}).get(code, [0, 0])
        return (sure + unsure) / self.lines[code] if self.lines.get(code) else 0.0

    def known(self, min_recall: float = 0.5) -> frozenset[str]:
        """Seed languages the general model recognises on its own (top label on at least ``min_recall`` of their
        lines): big languages, common on the web."""
        return frozenset(code for code in self.lines if self.recall(code) >= min_recall)

    def weights(self, label: str, floor: float = 0.05) -> dict[str, float]:
        """How likely each seed language's lines get top ``label`` (add-one smoothed, plus ``floor`` so a rare
        confusion never rules a language out): the general verdict's evidence. (Confident and unsure verdicts
        count together: a small seed text, 60 formal lines, says little about how sure the model is on others.)"""
        return {code: (sum(self.counts.get(code, {}).get(label, [0, 0])) + 1) / (lines + 2) + floor
                for code, lines in self.lines.items()}

    def to_json(self) -> dict:
        return {"lines": self.lines, "counts": self.counts, "threshold": self.threshold, "min_share": self.min_share}

    @classmethod
    def from_json(cls, data: dict) -> GeneralConfusion:
        return cls(dict(data["lines"]), {c: {k: list(v) for k, v in labels.items()}
                                         for c, labels in data["counts"].items()},
                   float(data.get("threshold", 0.9)), float(data.get("min_share", 0.02)))


def measure_confusion(general: LanguageIdentifier, texts: dict[str, list[str]], *, threshold: float = 0.9,
                      sample: int = 1000) -> GeneralConfusion:
    """Run the general model on (up to ``sample``, evenly spread) seed lines of every seed language and count
    its top labels (see :class:`GeneralConfusion`)."""
    lines, counts = {}, {}
    for code, seed_lines in texts.items():
        picked = [line for line in seed_lines[:: max(1, len(seed_lines) // sample)][:sample] if line.strip()]
        labels: dict[str, list[int]] = {}
        for prediction in predict_batch(general, picked):
            if prediction:
                label, score = prediction[0]
                labels.setdefault(label, [0, 0])[0 if score >= threshold else 1] += 1
        lines[code], counts[code] = len(picked), labels
    return GeneralConfusion(lines, counts, threshold)


def find_confusables(general: LanguageIdentifier, texts: dict[str, list[str]]) -> frozenset[str]:
    """FLORES codes the general model confuses with the seed languages, the seed languages included (measured on
    the seed text: :meth:`GeneralConfusion.confusable`)."""
    return measure_confusion(general, texts).confusable()
