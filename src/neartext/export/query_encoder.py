"""Making ONNX exports of a loaded model that later processes use instead of it: a collection's
query encoder (read by :mod:`neartext.engine.query_encoder`) and a model's twin in the user's
cache (read by :mod:`neartext.encoders.twin`), by the same export and parity check.

After a search that had to load the collection's model, the CLI calls
:func:`prepare_query_encoder`: the model is exported to ONNX (fp32) in the collection's cache
and kept only if its query vectors are the model's within 1e-5 on a fixed, mixed set of texts;
from then on a search in a new process encodes its queries without torch. It runs once per model:
a model that cannot be exported faithfully is marked so and never tried again. Two processes
preparing at once each write their own temporary directory; the first renamed into place wins.
After any command that loaded a model this machine had loaded before, the CLI calls
:func:`prepare_model_twin` the same way: its query and document vectors must both match.

Example::

    note = prepare_query_encoder(col.encoder, col.path)   # a line to show, or None
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import uuid
from pathlib import Path

import numpy as np

from neartext.encoders import Encoder, backend_of, load_encoder
from neartext.encoders.base import EncoderSettings, Kind
from neartext.encoders.deferred import DeferredEncoder
from neartext.encoders.twin import MAX_DIFFERENCE, ONNX_META, SOURCE_KEY, made_twin, twins_dir
from neartext.encoders.twin import enabled as twin_enabled
from neartext.engine.query_encoder import cache_dir, enabled
from neartext.errors import MissingExtra, NeartextError
from neartext.util.atomic import fsync_dir
from neartext.util.optional import optional


def prepare_query_encoder(encoder: Encoder, state: Path) -> str | None:
    """Export ``encoder`` (a collection's model, loaded) as the collection's ONNX query encoder
    under ``state`` (its local state directory). Returns a line saying what was done, or None
    when there was nothing to do (turned off, not a sentence-transformers model, not loaded,
    made already, the model has a twin, marked as not exportable, or the cache is not
    writable). Never raises for the export's own failures: the search it follows has
    succeeded. One export at a time in a process."""
    if not enabled() or made_twin(encoder.fingerprint):
        return None  # (the model's twin encodes the queries of every collection of it)
    made, why = _prepare(encoder, cache_dir(state), ("query",), only=True)
    if made is None:
        return why and (f"no fast query encoder was made for this model: {why}; searches load "
                        "the model")
    return f"later searches start fast: the model was exported to ONNX for queries ({made}, once)"


def prepare_model_twin(encoder: Encoder) -> str | None:
    """Export ``encoder`` (a model loaded in this process, and before on this machine) as its
    ONNX twin in the user's cache (:mod:`neartext.encoders.twin`), for documents and queries.
    Returns a line saying what was done, or None (nothing to do, as for
    :func:`prepare_query_encoder`)."""
    if not (twin_enabled("document") or twin_enabled("query")):
        return None
    made, why = _prepare(encoder, twins_dir(), ("document", "query"))
    if made is None:
        return why and f"no ONNX twin was made for this model: {why}; runs load the model"
    return (f"later runs start fast: the model was exported to ONNX to encode texts without torch "
            f"({made}, once)")


def needs_twin(fingerprint: str) -> bool:
    """Whether the model of ``fingerprint`` has no twin yet, nor a mark that it cannot have one
    (so that :func:`prepare_model_twin` would make one, if twins are on)."""
    if not (twin_enabled("document") or twin_enabled("query")):
        return False
    return not ((twins_dir() / fingerprint).exists() or _failed(twins_dir(), fingerprint).exists())


def _prepare(encoder: Encoder, cache: Path, kinds: tuple[Kind, ...], only: bool = False
             ) -> tuple[Path | None, str | None]:
    """Export ``encoder`` into ``cache``/<fingerprint>, kept if its vectors of ``kinds`` are
    the model's within :data:`MAX_DIFFERENCE` (``only``: the one export kept there): (the
    export, None), or (None, why none was made or None when there was nothing to do)."""
    fingerprint = encoder.fingerprint
    out = cache / fingerprint
    if (backend_of(encoder.settings.model) != "sbert" or out.exists()
            or _failed(cache, fingerprint).exists()
            or (isinstance(encoder, DeferredEncoder) and not encoder.loaded)):
        return None, None
    try:
        cache.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None, None
    if not os.access(cache, os.W_OK):
        return None, None
    try:  # torch is loaded already: the model was
        onnx = optional("neartext.export.onnx", "onnx", "onnx (to encode texts without torch)")
    except MissingExtra:
        return None, None
    tmp = cache / f".{fingerprint}.{os.getpid()}-{uuid.uuid4().hex[:8]}.partial"
    try:
        onnx.export_onnx(encoder.settings.model, tmp, encoder=encoder,
                         meta_extra={SOURCE_KEY: fingerprint})
        worst = max(_largest_difference(encoder, tmp, onnx.PARITY_TEXTS, kind) for kind in kinds)
        if worst > MAX_DIFFERENCE:
            return None, _give_up(cache, fingerprint, f"its vectors differ from the model's by "
                                                      f"up to {worst:.2g} (more than "
                                                      f"{MAX_DIFFERENCE:g})")
        try:
            os.rename(tmp, out)  # another process's export of the same model may be there first
        except OSError:
            return None, None
        fsync_dir(cache)
    except NeartextError as e:
        return None, _give_up(cache, fingerprint, str(e))
    except OSError as e:  # a full disk, a removed directory: another run tries again
        return None, f"the export could not be written ({e.strerror or e}; tried again later)"
    except Exception as e:  # torch's exporter raises many types for a model it cannot trace
        return None, _give_up(cache, fingerprint,
                              f"the export failed ({type(e).__name__}: {e})")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    _remove_others(cache, fingerprint, exports=only)
    return out, None


def _largest_difference(encoder: Encoder, export: Path, texts: list[str], kind: Kind) -> float:
    """The largest difference of one element between the model's vectors of ``kind`` and the
    export's, over texts of several languages and lengths, one at a time and batched."""
    s = encoder.settings
    onnx = load_encoder(EncoderSettings(model=str(export), normalize=s.normalize,
                                        batch_size=s.batch_size, query_prefix=s.query_prefix,
                                        document_prefix=s.document_prefix))
    want = encoder.encode(texts, kind=kind)
    batched = onnx.encode(texts, kind=kind)
    single = np.concatenate([onnx.encode([t], kind=kind) for t in texts])
    return max(float(np.abs(batched - want).max()), float(np.abs(single - want).max()))


def _failed(cache: Path, fingerprint: str) -> Path:
    return cache / f"{fingerprint}.failed"


def _give_up(cache: Path, fingerprint: str, why: str) -> str:
    """Mark the model as not exportable (so that no later run tries); returns ``why``."""
    with contextlib.suppress(OSError):  # a read-only cache: the next run asks again
        _failed(cache, fingerprint).write_text(json.dumps({"reason": why}) + "\n",
                                               encoding="utf-8")
    return why


def _remove_others(cache: Path, keep: str, exports: bool) -> None:
    """What killed preparations left, and with ``exports`` the exports and marks of other
    models (a collection's earlier versions'; a rollback makes its own anew)."""
    for p in cache.iterdir():
        if p.name.startswith("."):
            if p.name.endswith(".partial") and not _running(p.name):
                shutil.rmtree(p, ignore_errors=True)
            continue
        if not exports or p.name.startswith(keep):
            continue
        if p.is_dir() and (p / ONNX_META).exists():
            shutil.rmtree(p, ignore_errors=True)
        elif p.name.endswith(".failed"):
            p.unlink(missing_ok=True)


def _running(partial: str) -> bool:
    """Whether the process that named a temporary directory ``.FP.PID-HEX.partial`` runs."""
    try:
        pid = int(partial.split(".")[2].split("-")[0])
        os.kill(pid, 0)
    except (IndexError, ValueError, ProcessLookupError):
        return False
    except PermissionError:
        return True
    return True
