"""What a learning run reports: the held-out metrics and the gate's decision every such run
has (:class:`GatedReport`: ``tune``, ``improve --full``), and ``tune``'s own report
(:class:`TuneReport`), as ``--json`` gives them and as the CLI prints them.

Example:
    >>> for line in candidate_rows([
    ...         {"adapter": "current", "ranking": "semantic", "mrr@10": 0.5148},
    ...         {"adapter": "new", "ranking": "semantic", "mrr@10": 0.541},
    ...         {"adapter": "current", "ranking": "keyword", "mrr@10": 0.7418},
    ...         {"adapter": "new", "ranking": "hybrid learned linear", "mrr@10": 0.8004}],
    ...         "new", "hybrid learned linear"):
    ...     print(line)
      held-out MRR@10        current adapter   new adapter
      semantic                        0.5148        0.5410
      keyword                         0.7418             -
      hybrid learned linear                -        0.8004*
      (* the candidate chosen)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from neartext.data.ranking import DEFAULT_MODE


def metric_rows(before: dict[str, float], after: dict[str, float], label: str) -> list[str]:
    """The held-out metrics of the current version and of ``label``, side by side."""
    return [f"  held-out      {'current':>8} {label:>8}",
            *(f"  {k:<12}  {before[k]:8.4f} {after[k]:8.4f}"
              for k in ("mrr@10", "ndcg@10", "recall@1", "recall@10"))]


@dataclass
class GatedReport:
    """What a learning run (``tune``, ``improve --full``) measured on held-out queries and
    what its gate decided; the fields every such report has."""

    collection: str
    pairs: int
    queries: int
    from_file: int  # pairs from the file
    from_feedback: int  # pairs from ratings
    before: dict[str, float]  # the current version's held-out metrics
    after: dict[str, float]  # the promoted (else the current) version's
    promoted: bool
    version: int
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return dict(vars(self))


@dataclass
class TuneReport(GatedReport):
    """What ``tune`` measured and decided."""

    kind: str = "linear"
    hard_negatives: int = 0
    seconds: float = 0.0
    epochs: int = 0
    notes: list[str] = field(default_factory=list)
    ranking: str = DEFAULT_MODE
    candidates: list[dict[str, Any]] = field(default_factory=list)
    # the option chosen among those measured (choose_row): which adapter ("new", "current")
    # and the ranking settings
    chosen: dict[str, Any] = field(default_factory=dict)
    gain: float = 0.0  # its held-out MRR@10 gain over the current version, promoted or not
    gain_lower_95: float = 0.0  # the lower end of the gain's 95% bootstrap interval
    side: str = "query"
    adapter_learned: bool = True  # False: no epoch beat the start; not a candidate
    best: dict[str, float] = field(default_factory=dict)  # the chosen one's held-out metrics
    columns: list[str] = field(default_factory=list)  # the pairs file's query, passage columns
    mined_negatives: int = 0  # hard negatives mined from the fused ranking (confusions)
    # a learned ranking's held-out MRR@10 gain over the best fixed one (what a person could set
    # by hand: a mode, a blend), with that ranking and the gain's 95% lower bound; empty when
    # the chosen one is a fixed ranking or none was measured
    over_fixed: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> str:
        trained = (f"{self.kind} adapter ({self.side} side), {self.epochs} epochs"
                   if self.adapter_learned else
                   f"the {self.kind} adapter learned nothing in {self.epochs} epochs")
        columns = f" (columns {', '.join(self.columns)})" if self.columns else ""
        rows = [f"{self.collection}: {self.pairs} pairs ({self.from_file} from the "
                f"file{columns}, {self.from_feedback} from ratings; {self.hard_negatives} hard "
                f"negatives rated, {self.mined_negatives} mined from the fused ranking), "
                f"{self.queries} queries; {trained}, {self.seconds:.1f} s",
                *metric_rows(self.before, self.after if self.promoted else self.best or
                             self.after, "chosen" if self.promoted else "best")]
        rows += candidate_rows(self.candidates, self.chosen.get("adapter"), self.ranking)
        if self.over_fixed:
            f = self.over_fixed
            rows.append(f"  {self.ranking} against the best fixed ranking ({f['adapter']} "
                        f"adapter + {f['ranking']}, {f['mrr@10']:.4f}): MRR@10 "
                        f"{f['gain']:+.4f} (95% lower bound {f['gain_lower_95']:+.4f})"
                        + ("; within the noise, so the learned ranking is chosen (a fixed one "
                           "only when it ranks better beyond it)" if f["gain"] < 0 else ""))
        rows.append(f"  {self.reason}")
        return "\n".join(rows + [f"  note: {n}" for n in self.notes])


def candidate_rows(candidates: Sequence[dict[str, Any]], adapter: str | None,
                   ranking: str) -> list[str]:
    """Every measured candidate's held-out MRR@10 as a table: a ranking a row, an adapter a
    column ("-" where that pair was not measured: the text modes ignore vectors), the chosen
    one (``adapter``, ``ranking``) marked."""
    if not candidates:
        return []
    adapters = list(dict.fromkeys(c["adapter"] for c in candidates))
    rankings = list(dict.fromkeys(c["ranking"] for c in candidates))
    mrr = {(c["adapter"], c["ranking"]): c["mrr@10"] for c in candidates}
    title = "held-out MRR@10"
    width = max(len(r) for r in [title, *rankings])
    heads = [f"{a} adapter" for a in adapters]
    rows = ["  " + title.ljust(width) + "".join(f"  {h} " for h in heads).rstrip()]
    for r in rankings:
        cells = []
        for a, h in zip(adapters, heads):
            v = mrr.get((a, r))
            text = "-" if v is None else f"{v:.4f}"
            mark = "*" if (a, r) == (adapter, ranking) else " "
            cells.append(f"  {text:>{len(h)}}{mark}")
        rows.append(("  " + r.ljust(width) + "".join(cells)).rstrip())
    return rows + ["  (* the candidate chosen)"]
