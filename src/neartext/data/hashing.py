"""The content hash of a text: with a model's fingerprint it identifies a vector, so a text
stored or staged once is never embedded again.

Example:
    >>> text_hash("hello") == text_hash("hello"), len(text_hash("hello"))
    (True, 32)
"""

from __future__ import annotations

import hashlib


def text_hash(text: str) -> str:
    """Content hash of a text; with the model fingerprint it decides whether to re-embed."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]
