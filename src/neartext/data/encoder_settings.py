"""The settings that shape an encoder's vectors (recorded in a collection's manifest).

Example:
    >>> EncoderSettings(model="default", query_prefix="query: ").to_dict()["query_prefix"]
    'query: '
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from neartext.errors import InputError

POOLING_MODES = ("mean", "cls", "max")


@dataclass
class EncoderSettings:
    """How to build an encoder. Everything here except ``batch_size`` changes the vectors.

    Attributes:
        model: a built-in name (``default``, ``all-MiniLM-L6-v2``) or a local model directory.
        query_prefix: prepended to queries (e.g. ``"query: "`` for e5 models).
        document_prefix: prepended to documents (e.g. ``"passage: "``).
        pooling: override the model's pooling: ``mean``, ``cls`` or ``max``.
        max_seq_length: tokens per text; longer texts are truncated (and counted).
        normalize: L2-normalize vectors so inner product is cosine similarity.
        batch_size: texts per forward pass.
    """

    model: str = "default"
    query_prefix: str | None = None
    document_prefix: str | None = None
    pooling: str | None = None
    max_seq_length: int | None = None
    normalize: bool = True
    batch_size: int = 32
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.pooling is not None and self.pooling not in POOLING_MODES:
            raise InputError(
                f"Unknown pooling '{self.pooling}'; choose one of: {', '.join(POOLING_MODES)}"
            )
        if self.max_seq_length is not None and self.max_seq_length < 1:
            raise InputError(f"--max-seq-length must be at least 1 (got {self.max_seq_length})")
        if self.batch_size < 1:
            raise InputError(f"--batch-size must be at least 1 (got {self.batch_size})")

    def to_dict(self) -> dict:
        return asdict(self)
