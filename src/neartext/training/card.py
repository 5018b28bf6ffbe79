"""The model card (``README.md``) written next to a trained model: what it was trained from, how,
and what it scored before and after.

Example:
    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> cfg = {"base": "default", "train_file": "pairs.csv", "learning_rate": 2e-5, "seed": 42}
    >>> m = {"train": {"format": "pairs", "loss": "mnrl", "rows": 10, "epochs": 1, "steps": 1,
    ...                "batch_size": 8, "seconds": 1.0, "pairs_per_second": 10.0}, "notes": []}
    >>> write_model_card(d, cfg, m).name
    'README.md'
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

_LOSS_NAMES = {
    "mnrl": "MultipleNegativesRankingLoss (in-batch negatives, no duplicate texts in a batch)",
    "cached-mnrl": "CachedMultipleNegativesRankingLoss (gradient cache)",
    "cosent": "CoSENTLoss",
    "cosine": "CosineSimilarityLoss",
    "online-contrastive": "OnlineContrastiveLoss",
}


def write_model_card(model_dir: Path, config: dict[str, Any], metrics: dict[str, Any]) -> Path:
    """Write ``model_dir/README.md`` from the run's config and metrics; return its path."""
    t = metrics["train"]
    name = Path(config.get("output") or model_dir).name
    lines = [
        f"# {name}",
        "",
        f"A sentence-embedding model fine-tuned with neartext from `{config['base']}`.",
        "",
        "## Use",
        "",
        "```",
        f"neartext index corpus.csv -c my-collection --model {config.get('output') or model_dir}",
        f"neartext eval sts sts-test.csv --model default --model {config.get('output') or model_dir}",
        "```",
        "",
        "It is a sentence-transformers directory: "
        "`SentenceTransformer(\"path/to/model\")` loads it too.",
        "",
        "## Training",
        "",
        f"- data: `{config['train_file']}`, {t['rows']} rows of {t['format']}",
        f"- loss: {_LOSS_NAMES.get(t['loss'], t['loss'])}",
        f"- epochs {t['epochs']:g}, {t['steps']} steps of batch {t['batch_size']}, learning rate "
        f"{config['learning_rate']:g}, warmup {config.get('warmup_ratio', 0):g}, seed {config['seed']}",
        f"- time: {t['seconds']:.0f} s ({t['pairs_per_second']:.1f} pairs/s)",
    ]
    machine = metrics.get("machine")
    if machine:
        lines.append(f"- machine: {machine['cpu']}, {machine['cores']} cores, torch {machine['torch']}")
    lines += [f"- {n}" for n in metrics.get("notes", [])]
    ev = metrics.get("eval")
    if ev:
        keys = [k for k in ev["after"] if isinstance(ev["after"][k], float)]
        lines += ["", "## Evaluation", "", f"On {ev['description']}.", "",
                  "| metric | base model | this model |", "|---|---|---|"]
        lines += [f"| {k}{' (primary)' if k == ev['primary'] else ''} | {ev['before'][k]:.4f} | "
                  f"{ev['after'][k]:.4f} |" for k in keys]
        if ev.get("best_checkpoint"):
            lines += ["", f"Kept the best of the per-epoch evaluations ({ev['best_checkpoint']})."]
    lines += ["", "Full settings: `training_config.json`; all figures: `metrics.json`.", ""]
    path = model_dir / "README.md"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path
