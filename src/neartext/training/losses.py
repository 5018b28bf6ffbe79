"""Which loss trains which data format (building one is :func:`neartext.training.trainer.build_loss`).

=====================  ==========================  ===========================================
loss                   formats                     what it learns
=====================  ==========================  ===========================================
``mnrl``               pairs, triplets, labeled*   each anchor nearer its positive than to every
                                                   other text in the batch (in-batch negatives)
``cached-mnrl``        pairs, triplets, labeled*   the same with gradient caching: large batches
                                                   in the memory of small ones
``cosent``             scored, labeled             similarities ordered as the scores are
``cosine``             scored, labeled             cosine similarity regressed onto the score
``online-contrastive`` labeled                     positives together, negatives apart, on the
                                                   hard pairs of each batch
=====================  ==========================  ===========================================

``*`` labeled data trains MNRL on its label-1 rows.

Example:
    >>> default_loss("scored"), default_loss("pairs")
    ('cosent', 'mnrl')
    >>> check_loss("cosent", "pairs")  # doctest: +IGNORE_EXCEPTION_DETAIL
    Traceback (most recent call last):
    neartext.errors.InputError: loss 'cosent' needs scored or labeled pairs...
"""

from __future__ import annotations

from neartext.errors import InputError

LOSSES: dict[str, tuple[str, ...]] = {
    "mnrl": ("pairs", "triplets", "labeled"),
    "cached-mnrl": ("pairs", "triplets", "labeled"),
    "cosent": ("scored", "labeled"),
    "cosine": ("scored", "labeled"),
    "online-contrastive": ("labeled",),
}
_DEFAULT = {"pairs": "mnrl", "triplets": "mnrl", "scored": "cosent", "labeled": "online-contrastive"}
IN_BATCH_NEGATIVES = ("mnrl", "cached-mnrl")
# Default rows per step: in-batch losses gain negatives from larger batches; pair losses train
# better with more, smaller steps (CoSENT on STS-B: batch 16 lifts test Spearman, 32 lowers it).
DEFAULT_BATCH = {"mnrl": 32, "cached-mnrl": 128, "cosent": 16, "cosine": 16, "online-contrastive": 16}


def default_loss(fmt: str) -> str:
    """The loss a format trains with unless ``--loss`` says otherwise."""
    return _DEFAULT[fmt]


def check_loss(loss: str, fmt: str) -> None:
    """:class:`InputError` unless ``loss`` can train data of format ``fmt``."""
    if loss not in LOSSES:
        raise InputError(f"unknown loss '{loss}'; choose one of: {', '.join(LOSSES)}")
    if fmt not in LOSSES[loss]:
        raise InputError(f"loss '{loss}' needs {' or '.join(LOSSES[loss])} data, and the file "
                         f"holds {fmt} (default loss for it: {default_loss(fmt)})")
