"""How results are ranked: the one home of the search modes, fusions and their defaults, of the
options one search runs with (:class:`SearchOptions`), and of a version's tuned ranking
(:class:`Ranking`: what a search uses when it names no mode, stored in the manifest's
``search``).

Example:
    >>> r = Ranking.from_dict({"mode": "hybrid", "fusion": "blend", "alpha": 0.3})
    >>> r.describe(), r.options(5).alpha, Ranking().options(5).mode
    ('hybrid blend alpha 0.3', 0.3, 'semantic')
    >>> r.options(5, mode="keyword").fusion  # another mode named: not the tuned one's fusion
    'blend'
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, cast

from neartext.errors import InputError

Mode = Literal["semantic", "keyword", "chars", "hybrid"]
Fusion = Literal["blend", "rrf", "learned"]
MODES: tuple[Mode, ...] = ("semantic", "keyword", "chars", "hybrid")
#: the modes that rank by the query's text alone (no query vectors, no model)
TEXT_MODES: tuple[Mode, ...] = ("keyword", "chars")
FUSIONS: tuple[Fusion, ...] = ("rrf", "blend", "learned")
#: what each mode and fusion does, in a few words (help texts are made from these)
MODE_HELP: dict[Mode, str] = {"semantic": "vectors, cosine", "keyword": "BM25 over stemmed words",
                              "chars": "BM25 over character 3-4-grams (typos, word forms)",
                              "hybrid": "semantic and keyword fused"}
FUSION_HELP: dict[Fusion, str] = {"blend": "a weighted sum of cosine and BM25, --alpha",
                                  "rrf": "reciprocal rank fusion",
                                  "learned": "the ranker `tune` learned for the collection"}
#: the mode of a collection never tuned, and of a search given a threshold (a cosine)
DEFAULT_MODE: Mode = "semantic"
# Chosen on Cranfield and 3,000 Quora duplicate pairs with all-MiniLM-L6-v2
# (bench/bench_multilingual.py): blend at 0.7 beat semantic search on both (nDCG@10 0.42 vs
# 0.38; 0.894 vs 0.891), while RRF lost on the Quora paraphrases (0.887).
DEFAULT_FUSION: Fusion = "blend"
DEFAULT_ALPHA = 0.7
# what every learned version weighs; the first five are all a version tuned before the text
# features has (its settings name no features)
BASE_FEATURES = ("cosine", "coverage", "semantic_rr", "keyword_rr", "all_words")
# computed from the candidate's stored text and the query's words (neartext.data.lexical)
TEXT_FEATURES = ("phrase", "lead_coverage", "lead_exact")
# the cosine of the query as the model gives it, before the version's query-side adapter (the
# cosine itself without one)
FEATURES = BASE_FEATURES + ("model_cosine",) + TEXT_FEATURES
# how alike a candidate's document vector is to those of the query's best candidates by the
# default blend (their mean and the most alike): relevant documents resemble one another more
# than they resemble the rest (the cluster hypothesis). What tune chose with and without them
# (bench/bench_tune_choice.py --without-neighbours), where the channels' first results differ,
# over the best fixed ranking: ParaPhraser +0.009 -> +0.020, STS-B +0.011 -> +0.022, the
# memes-shaped sets +0.001 to +0.002, Cranfield within its noise (README)
NEIGHBOUR_FEATURES = ("neighbour_mean", "neighbour_max")
# the chars channel's evidence, where the candidate stands against the query's best one on each
# channel, the text's size, and how alike the query and the candidate's most alike sentence are
# (what a ranking of the whole text cannot see in a document of several sentences), and the
# neighbour features: what the LightGBM ranker weighs besides FEATURES. A ranker keeps the
# names it was trained on, so one trained before a feature was added is given the columns it
# knows
CHANNEL_FEATURES = ("chars_coverage", "chars_rr", "cosine_gap", "coverage_gap", "chars_gap",
                    "lead_chars", "length", "query_words", "sentence_chars",
                    *NEIGHBOUR_FEATURES)
# how alike the query is to the most alike query the version remembers the candidate answered
# (tune's pairs and the 👍 ratings: neartext.algo.known), how many it answered (log(1 + n)),
# and the first's gap to the query's best candidate. Offline on Cranfield (MiniLM, 5 folds,
# where the channels differ, constrained as tune fits them) they lifted the ranker from +0.044
# to +0.093 MRR@10 over the best fixed ranking: documents relevant to one query there are often
# relevant to others like it
KNOWN_FEATURES = ("known_max", "known_count", "known_gap")
#: the direction a learned ranking may weigh a feature in (1: the higher, the better placed; -1:
#: the lower), where it is constrained: having answered queries like this one never counts
#: against a document. Unconstrained, a ranker fitted where each document answers one query (a
#: pairs file of one situation per meme) learns that a document which answered another query is
#: wrong, which holds there only because of how the pairs were drawn
MONOTONE = {"known_max": 1, "known_count": 1, "known_gap": -1}
#: what a version's learned ranker (``neartext tune``: LightGBM LambdaRank) weighs
RANKER_FEATURES = FEATURES + CHANNEL_FEATURES + KNOWN_FEATURES
#: what only a store with the chars channel computes (0 on Milvus, which has none)
CHARS_CHANNEL_FEATURES = ("chars_coverage", "chars_rr", "chars_gap")
#: what the linear weighing ``tune`` fits beside the ranker weighs: FEATURES, the likeness of
#: the most alike sentence (a weighted sum of the whole text's evidence cannot see a paraphrase
#: among other sentences; on ParaPhraser in descriptions it lifted the weighing by +0.02 MRR@10)
#: the neighbour features and the remembered queries' features
LINEAR_FEATURES = FEATURES + ("sentence_chars", *NEIGHBOUR_FEATURES, *KNOWN_FEATURES)


def check_k(k: Any, what: str = "k") -> None:
    if not isinstance(k, int) or isinstance(k, bool) or k < 1:
        raise InputError(f"{what} must be a whole number >= 1 (got {k})")


def check_threshold(threshold: float | None, what: str = "threshold") -> None:
    if threshold is not None and not -1.0 <= threshold <= 1.0:
        raise InputError(f"{what} must be between -1 and 1 (got {threshold})")


def check_mode(mode: str, fusion: str, alpha: float,
               weights: Sequence[float] | None = None,
               names: Sequence[str] | None = None, ranker: str | None = None) -> None:
    """An :class:`InputError` naming what is wrong with a ranking's settings."""
    if mode not in MODES:
        raise InputError(f"unknown search mode '{mode}'; choose one of: {', '.join(MODES)}")
    if fusion not in FUSIONS:
        raise InputError(f"unknown fusion '{fusion}'; choose one of: {', '.join(FUSIONS)}")
    if fusion == "learned" and mode == "hybrid" and ranker is not None:
        unknown = [n for n in names or () if n not in RANKER_FEATURES]
        if unknown or not names:
            raise InputError(f"the ranker of this version weighs a feature this neartext does "
                             f"not know ('{(unknown or ['none'])[0]}'): use blend or rrf, or a "
                             f"newer neartext")
    elif fusion == "learned" and mode == "hybrid":
        unknown = [n for n in names or () if n not in LINEAR_FEATURES]
        if unknown:
            raise InputError(f"the learned fusion of this version weighs a feature this "
                             f"neartext does not know ('{unknown[0]}'): use blend or rrf, or a "
                             f"newer neartext")
        if (weights is None or len(weights) != len(names or BASE_FEATURES) + 1
                or not all(math.isfinite(w) for w in weights)):
            raise InputError("the learned fusion ranks with weights 'neartext tune' fits on a "
                             "collection's pairs or ratings; this version has none: use blend "
                             "or rrf")
    if not 0.0 <= alpha <= 1.0:
        raise InputError(f"alpha must be between 0 and 1 (got {alpha})")


@dataclass(frozen=True)
class SearchOptions:
    """How one search ranks: ``k`` results, at least ``threshold`` (cosine; semantic mode
    only), the ``mode`` (semantic, keyword, hybrid) and for hybrid the ``fusion`` (blend, rrf,
    learned), blend weight ``alpha``, and the learned fusion's ``weights`` and the names of the
    ``features`` they weigh (from ``neartext tune``; default: the base features). Checked when
    made: an :class:`InputError` names the bad value."""

    k: int = 10
    threshold: float | None = None
    mode: Mode = DEFAULT_MODE
    fusion: Fusion = DEFAULT_FUSION
    alpha: float = DEFAULT_ALPHA
    weights: tuple[float, ...] | None = None
    features: tuple[str, ...] | None = None
    ranker: str | None = None  # the learned ranker's file (a path), instead of weights
    known: str | None = None  # the file of the queries the version remembers (a path)

    def describe(self) -> str:
        """The ranking in a few words, as :meth:`Ranking.describe` says it
        (``hybrid learned linear``)."""
        return Ranking(self.mode, self.fusion, self.alpha, self.weights, self.features,
                       ranker=self.ranker, known=self.known).describe()

    def __post_init__(self) -> None:
        check_k(self.k)
        check_threshold(self.threshold)
        check_mode(self.mode, self.fusion, self.alpha, self.weights, self.features,
                   self.ranker)
        if self.mode != "semantic" and self.threshold is not None:
            raise InputError(f"a threshold applies to cosine scores: use it with the semantic "
                             f"mode, not {self.mode}")


@dataclass(frozen=True)
class Ranking:
    """A version's ranking: the mode a search uses when it names none, and for hybrid the
    fusion, its blend weight, or the learned fusion's weights and the names of the features
    they weigh; ``details`` keeps what ``tune`` measured of it (not part of the setting)."""

    mode: Mode = DEFAULT_MODE
    fusion: Fusion | None = None
    alpha: float | None = None
    weights: tuple[float, ...] | None = None
    features: tuple[str, ...] | None = None
    details: Mapping[str, Any] = field(default_factory=dict, compare=False)
    #: the learned ranker's file, relative to the collection's state directory
    ranker: str | None = None
    #: the file of the queries the learned ranking remembers (its KNOWN_FEATURES), relative to
    #: the collection's state directory
    known: str | None = None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> Ranking:
        """A stored ranking (``manifest.search``, a version record's ``search``); None is the
        ranking of a collection never tuned."""
        d = dict(data or {})
        weights, features = d.get("weights"), d.get("features")
        return cls(mode=cast(Mode, d.get("mode", DEFAULT_MODE)),
                   fusion=cast("Fusion | None", d.get("fusion")), alpha=d.get("alpha"),
                   weights=None if weights is None else tuple(float(w) for w in weights),
                   features=None if features is None else tuple(str(n) for n in features),
                   details=dict(d.get("details") or {}), ranker=d.get("ranker"),
                   known=d.get("known"))

    def to_dict(self) -> dict[str, Any]:
        """The stored form: only the keys set (as the manifest has always held them)."""
        out: dict[str, Any] = {"mode": self.mode}
        for key in ("fusion", "alpha"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        if self.weights is not None:
            out["weights"] = list(self.weights)
        if self.features is not None:
            out["features"] = list(self.features)
        if self.ranker is not None:
            out["ranker"] = self.ranker
        if self.known is not None:
            out["known"] = self.known
        if self.details:
            out["details"] = dict(self.details)
        return out

    def setting(self) -> Ranking:
        """The ranking as a setting to compare and store: without its measurements, and only
        what its mode reads (a fusion for hybrid; alpha for blend; weights for learned)."""
        if self.mode != "hybrid":
            return Ranking(self.mode)
        fusion = self.fusion or DEFAULT_FUSION
        if fusion == "blend":
            return Ranking(self.mode, fusion, alpha=self.alpha)
        if fusion == "learned":
            return Ranking(self.mode, fusion, weights=self.weights, features=self.features,
                           ranker=self.ranker, known=self.known)
        return Ranking(self.mode, fusion)

    def with_details(self, details: Mapping[str, Any]) -> Ranking:
        return dataclasses.replace(self, details=dict(details))

    def describe(self) -> str:
        """The ranking in a few words (``hybrid blend alpha 0.3``; a learned one that
        remembers the queries it learned from: ``hybrid learned, remembering``)."""
        if self.mode != "hybrid":
            return self.mode
        remembering = ", remembering" if self.fusion == "learned" and self.known else ""
        if self.fusion == "learned" and self.ranker is None and self.weights is not None:
            # weights (tune's before its LightGBM ranker, too)
            return "hybrid learned linear" + remembering
        if self.fusion in ("rrf", "learned"):
            return f"hybrid {self.fusion}" + remembering
        return f"hybrid blend alpha {self.alpha}"

    def options(self, k: int = 10, threshold: float | None = None, mode: Mode | None = None,
                fusion: Fusion | None = None, alpha: float | None = None,
                state: Path | None = None) -> SearchOptions:
        """:class:`SearchOptions` from what a caller named; the rest from this ranking. A
        threshold without a mode means semantic (it is a cosine); another mode than this one's
        takes the default fusion and weight, not this one's. ``state``: the collection's state
        directory, where a learned ranker's file is (default: the working directory)."""
        if mode is None:
            mode = "semantic" if threshold is not None else self.mode
        mine = mode == self.mode
        if fusion is None:
            fusion = (self.fusion or DEFAULT_FUSION) if mine else DEFAULT_FUSION
        if alpha is None:
            alpha = float(self.alpha) if mine and self.alpha is not None else DEFAULT_ALPHA
        learned = fusion == "learned"
        ranker = known = None
        if learned and self.ranker:
            ranker = str((state or Path()) / self.ranker)
        if learned and self.known:
            known = str((state or Path()) / self.known)
        return SearchOptions(k, threshold, mode, fusion, alpha,
                             self.weights if learned else None,
                             self.features if learned else None, ranker, known)
