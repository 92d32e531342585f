"""The target-aware identifier: the seed model for whatever the seed texts name, the general model for the rest,
and the evidence a label of a rare language needs."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ...errors import DataError
from ...text import letter_count
from .base import LanguageIdentifier, Memo, Prediction, predict_batch
from .charngram import CharNgramIdentifier
from .confusion import GeneralConfusion
from .fasttext import FastTextFileIdentifier, general_identifier
from .text_script import dominant_scripts


@dataclass(frozen=True)
class EvidenceRules:
    """What a line needs to be labelled a *rare* language (a seed language the general model does not know, e.g.
    the target): on the web such lines are few among many of other languages, so a label the seed model alone
    vouches for needs more than a top score. A line with fewer letters, or a smaller lead over the runner-up, is
    not the rare language (it is rejected, not relabelled)."""

    min_letters: int = 30  # letters (combining marks included) of the text identified
    min_margin: float = 0.3  # top score minus the runner-up's

    def holds(self, text: str, prediction: Prediction) -> bool:
        """True if ``prediction``'s top label has enough evidence in ``text``."""
        margin = prediction[0][1] - (prediction[1][1] if len(prediction) > 1 else 0.0)
        return margin >= self.min_margin and letter_count(text) >= self.min_letters


class TargetAwareIdentifier:
    """Seed model for whatever the seed texts name, general model for the rest.

    For a text in a script of the seed languages, the seed model is asked whenever the general model's top
    language is *confusable*: a seed language or a label the general model gives seed lines (measured on the seed
    text: :class:`GeneralConfusion`; for a confident verdict, a label it gives seed lines confidently). When the
    general model is confident in a language that is not confusable (German for Romance seeds), or a label that is
    not holds more than the seed languages could share, its prediction stands and the seed model is not run.

    Otherwise the seed model decides among the seed languages, its probabilities weighed by how likely the
    general verdict is for each seed language's own lines (a "Hindi" verdict is as likely for Maithili as for
    Hindi, so the seed model alone tells those apart; an "Italian" one is likelier for Italian than for Venetian),
    except that:

    - the mass the general model gives a language without seed text stays that language's, unless the general
      model gives that label to the seed model's top language's own lines (it does not call English lines German;
      it calls Maithili lines Hindi); when that mass outweighs what the seed languages share, the general verdict
      stands (an unsure German line is not called Sardinian at 0.99);
    - when the general model's top language is a seed language it knows (``GeneralConfusion.known``: Italian,
      Hindi) and the seed model is unsure of another (its top below ``seed_sure``: it splits the mass among close
      languages, e.g. on text unlike its seed text), the two agree on the general verdict, which stands.

    Without a general model the seed model decides alone.

    ``rare``: seed languages the general model does not know (all of them without a general model): a label of
    one needs :class:`EvidenceRules` (applied by the crawl and ``lid_eval.top_labels``).
    """

    SEED_TOP = 5  # seed-model languages kept per text (the best ones), like fastText's k

    def __init__(
        self,
        seed_identifier: LanguageIdentifier,
        general_identifier: LanguageIdentifier | None,
        seed_languages: Iterable[str],
        *,
        threshold: float = 0.9,
        confusion: GeneralConfusion | None = None,
        general_note: str | None = None,
        seed_sure: float = 0.8,
    ) -> None:
        self.seed = seed_identifier
        self.general = general_identifier
        self.seed_languages = sorted(seed_languages)
        self.threshold, self.seed_sure = threshold, seed_sure
        self.confusion = confusion
        self.general_note = general_note  # why there is no general model (a setting, a missing package), if so
        own = self.seed_set = frozenset(self.seed_languages)
        self.confusable = confusion.confusable() if confusion is not None else own
        self.confusable_when_sure = confusion.confusable(confident=True) if confusion is not None else own
        self.known = confusion.known() if confusion is not None and general_identifier is not None else frozenset()
        self.rare = frozenset(self.seed_languages) - self.known
        self.seed_scripts = {code.split("_")[1] for code in self.seed_languages}
        self._weights = Memo(self._label_weights)  # general top label -> seed language -> weight

    def _label_weights(self, label: str) -> dict[str, float] | None:
        if self.confusion is None or label not in self.confusable:
            return None
        return self.confusion.weights(label)

    def describe(self) -> str:
        """The general model in words, for stats and cards."""
        if self.general is None:
            return f"none ({self.general_note or 'seed model only'})"
        path = getattr(self.general, "path", None)
        return f"{type(self.general).__name__}" + (f" ({path.name})" if path is not None else "")

    def predict(self, text: str) -> Prediction:
        """See the class docstring; scores are sorted, best first."""
        return self.predict_batch([text])[0]

    def predict_batch(self, texts: Sequence[str], scripts: Sequence[str | None] | None = None) -> list[Prediction]:
        """:meth:`predict` of every text (``scripts``: their dominant scripts, if known), the general model
        run once over all of them."""
        if self.general is None:
            return predict_batch(self.seed, texts)
        scripts = scripts if scripts is not None else dominant_scripts(texts)
        generals = predict_batch(self.general, texts, scripts)
        out: list[Prediction | None] = []
        pending: list[tuple[int, Prediction]] = []  # rows the seed model is asked about
        confusable, when_sure, threshold = self.confusable, self.confusable_when_sure, self.threshold
        for text_script, general in zip(scripts, generals, strict=True):
            if text_script is not None and text_script not in self.seed_scripts:
                out.append(general)
                continue
            if general and general[0][1] >= threshold and general[0][0] not in when_sure:
                out.append(general)  # confident in a language the seed languages are never taken for (German...)
                continue
            outside = [(c, s) for c, s in general if c not in confusable]
            if outside and outside[0][1] > 1.0 - sum(s for _, s in outside):
                # an unrelated language holds more than the seed languages could share among them: the seed
                # model cannot change the top language, and the general prediction stands
                out.append(general)
                continue
            pending.append((len(out), general))
            out.append(None)
        seed_texts = [texts[row] for row, _ in pending]
        seeds = (self.seed.predict_batch(seed_texts, top=self.SEED_TOP) if isinstance(self.seed, CharNgramIdentifier)
                 else predict_batch(self.seed, seed_texts))
        for (row, general), seed in zip(pending, seeds, strict=True):
            out[row] = self._combined(general, seed)
        return out  # type: ignore[return-value]

    def _combined(self, general: Prediction, seed: Prediction) -> Prediction:
        """The seed model's verdict, weighed by the general one, sharing the mass of the labels the general model
        gives the seed model's top language's lines; or the general verdict, where it stands (class docstring)."""
        if not seed:
            return general
        top = seed[0][0]
        unrelated = [(c, s) for c, s in general if c not in self.seed_set
                     and (self.confusion is None or not self.confusion.confuses(top, c))]
        share = max(0.0, 1.0 - sum(s for _, s in unrelated))
        if unrelated and unrelated[0][1] > share:
            return general  # a language without seed text that the general model never gives the seed's top
        if general and general[0][0] in self.known and top != general[0][0] and seed[0][1] < self.seed_sure:
            return general  # an unsure seed model agrees with the general model on a seed language it knows
        weights = self._weights[general[0][0]] if general else None
        return sorted(_weighed(seed, weights, share) + unrelated, key=lambda kv: -kv[1])

    def save(self, directory: Path) -> None:
        """Write ``seed.npz`` (needs a :class:`CharNgramIdentifier` seed model) and
        ``target_aware.json`` into ``directory``; the general model is referenced by name."""
        if not isinstance(self.seed, CharNgramIdentifier):
            raise TypeError("only a CharNgramIdentifier seed model can be saved")
        directory = Path(directory)
        self.seed.save(directory / "seed.npz")
        config = {
            "seed_languages": self.seed_languages,
            "threshold": self.threshold,
            "seed_sure": self.seed_sure,
            "general": type(self.general).__name__ if self.general is not None else None,
            "general_path": str(self.general.path) if type(self.general) is FastTextFileIdentifier else None,
            "general_note": self.general_note,
            "confusion": self.confusion.to_json() if self.confusion is not None else None,
        }
        (directory / "target_aware.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, directory: Path) -> TargetAwareIdentifier:
        """Read a directory written by :meth:`save` (the general model is fastText, if it was)."""
        directory = Path(directory)
        try:
            config = json.loads((directory / "target_aware.json").read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise DataError(f"cannot load language identifier from '{directory}': {exc}") from exc
        note = config.get("general_note")
        if config.get("general_path"):
            general = FastTextFileIdentifier(Path(config["general_path"]))
        elif config.get("general"):
            general, note = general_identifier("fasttext")
        else:
            general = None
        confusion = GeneralConfusion.from_json(config["confusion"]) if config.get("confusion") else None
        return cls(CharNgramIdentifier.load(directory / "seed.npz"), general, config["seed_languages"],
                   threshold=config["threshold"], confusion=confusion, general_note=note,
                   seed_sure=config.get("seed_sure", 0.8))


def _weighed(seed: Prediction, weights: dict[str, float] | None, share: float) -> Prediction:
    """The seed model's probabilities times the general verdict's ``weights`` (None: no weighing), renormalised to
    ``share``."""
    if weights is not None:
        seed = [(code, score * weights.get(code, 1.0)) for code, score in seed]
    total = sum(score for _, score in seed)
    return [(code, score / total * share) for code, score in seed] if total > 0 else []
