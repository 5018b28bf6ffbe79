"""Checks of text at the boundary: what cannot be stored or encoded is refused with its place.

Python strings may hold lone surrogates (``"\\ud800"``, which valid JSON can carry as an escape);
they are not Unicode text, cannot be written as UTF-8 (SQLite, files) and make tokenizers fail.
Front ends check requests and files with these functions, so one bad text is a clear error for
its sender only.

Example:
    >>> invalid_text_path({"id": "a", "metadata": {"tags": ["ok", "\\ud800"]}})
    'metadata.tags[1]'
    >>> check_text("fine", "query")
"""

from __future__ import annotations

from typing import Any

from neartext.errors import InputError


def _bad_at(text: str) -> int | None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        return e.start
    return None


def check_text(text: str, what: str) -> None:
    """:class:`InputError` naming ``what`` when ``text`` is not valid Unicode text."""
    at = _bad_at(text)
    if at is not None:
        raise InputError(f"{what}: not valid Unicode text (a lone surrogate "
                         f"U+{ord(text[at]):04X} at character {at + 1})")


def invalid_text_path(value: Any, path: str = "") -> str | None:
    """The path (``a.b[2]``) of the first string in ``value`` (dicts, lists, keys included)
    that is not valid Unicode text, or None."""
    if isinstance(value, str):
        return path if _bad_at(value) is not None else None
    if isinstance(value, dict):
        for k, v in value.items():
            here = f"{path}.{k}" if path else str(k)
            if isinstance(k, str) and _bad_at(k) is not None:
                return f"{path}.<key>" if path else "<key>"
            found = invalid_text_path(v, here)
            if found is not None:
                return found
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            found = invalid_text_path(v, f"{path}[{i}]")
            if found is not None:
                return found
    return None


_CONTROL = {*range(0, 32), 127}


def _control_at(text: str) -> int | None:
    for i, ch in enumerate(text):
        if ord(ch) in _CONTROL:
            return i
    return None


def check_id(doc_id: Any) -> None:
    """A document id: text that is not blank and holds no control character (a NUL cut ids
    short in SQLite's JSON functions; ids are shown, typed and put in URLs)."""
    if not isinstance(doc_id, str):
        raise InputError(f"a document id must be text, got {type(doc_id).__name__} {doc_id!r}")
    check_text(doc_id, "a document id")
    if not doc_id.strip():
        raise InputError(f"a document id is blank ({doc_id!r}); give every document an id with "
                         "some text")
    at = _control_at(doc_id)
    if at is not None:
        raise InputError(f"document id {doc_id!r}: a control character (U+{ord(doc_id[at]):04X}) "
                         f"at character {at + 1}")


def check_field_names(metadata: Any, what: str) -> None:
    """Metadata field names: non-empty text without control characters (a NUL made SQLite list
    ``"to\\u0000pic"`` as the field ``to``)."""
    if not isinstance(metadata, dict):
        raise InputError(f"{what}: metadata must be a mapping of field names to values")
    for key in metadata:
        if not isinstance(key, str) or not key.strip():
            raise InputError(f"{what}: a metadata field name is blank ({key!r})")
        at = _control_at(key)
        if at is not None:
            raise InputError(f"{what}: metadata field {key!r}: a control character "
                             f"(U+{ord(key[at]):04X}) at character {at + 1}")


def check_value(value: Any, what: str) -> None:
    """:func:`check_text` for every string inside ``value`` (metadata, request bodies)."""
    bad = invalid_text_path(value)
    if bad is not None:
        where = f"{what}.{bad}" if bad and not bad.startswith("[") else f"{what}{bad}"
        raise InputError(f"{where}: not valid Unicode text (a lone surrogate)")
