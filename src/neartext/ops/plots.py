"""Pictures of evaluation results (the ``viz`` extra: matplotlib, drawn off-screen).

Example:
    >>> import numpy as np, tempfile, pathlib
    >>> out = pathlib.Path(tempfile.mkdtemp()) / "hist.png"
    >>> s = np.array([0.9, 0.8, 0.3, 0.2]); y = np.array([1, 1, 0, 0])
    >>> pair_histogram(out, {"default": (s, y, 0.55)}).suffix    # doctest: +SKIP
    '.png'
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from neartext.errors import InputError
from neartext.util.atomic import staged_file
from neartext.util.optional import pyplot


def pair_histogram(
    path: str | Path, panels: Mapping[str, tuple[np.ndarray, np.ndarray, float]], title: str = ""
) -> Path:
    """Histogram of similarity scores of positive and negative pairs, one panel per model, with
    each model's chosen threshold as a vertical line; written atomically as PNG."""
    out = Path(path)
    if out.suffix.lower() != ".png":
        raise InputError(f"{out}: the plot is written as PNG; name the file *.png")
    if not out.parent.is_dir():
        raise InputError(f"{out.parent}: no such directory")
    plt = pyplot()
    fig, axes = plt.subplots(len(panels), 1, figsize=(7, 2.8 * len(panels)), squeeze=False)
    bins = np.linspace(-0.2, 1.0, 61)
    for ax, (name, (scores, labels, threshold)) in zip(axes[:, 0], panels.items()):
        ax.hist(scores[labels == 1], bins=bins, alpha=0.6, label=f"same meaning ({int((labels == 1).sum())})",
                color="tab:green")
        ax.hist(scores[labels == 0], bins=bins, alpha=0.6, label=f"different ({int((labels == 0).sum())})",
                color="tab:red")
        ax.axvline(threshold, color="black", linestyle="--", label=f"threshold {threshold:.3f} (best F1)")
        ax.set_title(name if len(name) <= 60 else "…" + name[-59:], fontsize=10)
        ax.set_xlabel("cosine similarity")
        ax.set_ylabel("pairs")
        ax.legend(fontsize=8, loc="upper left")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    try:
        with staged_file(out) as tmp:
            fig.savefig(tmp, format="png", dpi=110)
    finally:
        plt.close(fig)
    return out
