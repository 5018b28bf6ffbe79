"""Stores persist a collection's documents and vectors; one module per backend."""

from __future__ import annotations

from neartext.store.base import Document, Hit, Passage, Store, WriteResult

__all__ = ["Document", "Hit", "Passage", "Store", "WriteResult"]
