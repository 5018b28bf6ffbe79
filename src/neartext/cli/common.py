"""Options and output shared by the ``neartext`` commands."""

from __future__ import annotations

import argparse
import contextlib
import logging
import math
import sys
from collections.abc import Callable
from typing import Any, TypeVar

from neartext.data.encoder_settings import POOLING_MODES
from neartext.data.ranking import (
    DEFAULT_ALPHA,
    DEFAULT_FUSION,
    DEFAULT_MODE,
    FUSION_HELP,
    FUSIONS,
    MODE_HELP,
    MODES,
)
from neartext.engine.analysis import DEFAULT_THRESHOLDS
from neartext.engine.clustering import DEFAULT_METHOD as CLUSTER_DEFAULT
from neartext.engine.clustering import METHODS as CLUSTER_METHODS
from neartext.engine.compute import RayCompute, ray_session
from neartext.errors import SWAP_RETRIES, CollectionReplaced, InputError
from neartext.store.codec import PRECISIONS
from neartext.store.local import INDEX_KINDS
from neartext.util.readers import read_text


def choices_help(descriptions: dict[Any, str], lead: str = "", default: str | None = None
                 ) -> str:
    """A help text naming every choice with what it does, from the home of the choices.

    >>> choices_help({"a": "first", "b": "second"}, "pick", default="b")
    'pick: a (first), b (second; the default)'
    """
    items = ", ".join(f"{k} ({v}{'; the default' if k == default else ''})"
                      for k, v in descriptions.items())
    return f"{lead}: {items}" if lead else items


def finite_float(text: str) -> float:
    """An option's number: argparse's ``type`` for every float option (``nan`` and ``inf``
    parse as floats but mean nothing as a threshold, margin or weight)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid number: {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return value


def add_model_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("model")
    g.add_argument("--model", default=None,
                   help="built-in model name or local sentence-transformers directory "
                        "(default: all-MiniLM-L6-v2)")
    g.add_argument("--query-prefix", default=None, help="text put before every query")
    g.add_argument("--document-prefix", default=None, help="text put before every document")
    g.add_argument("--pooling", choices=POOLING_MODES,
                   help=f"override the model's pooling: {', '.join(POOLING_MODES)}")
    g.add_argument("--max-seq-length", type=int, help="tokens read per text (longer: truncated)")
    g.add_argument("--no-normalize", action="store_true", help="keep raw vector lengths (dot product)")
    g.add_argument("--batch-size", type=int, default=32, help="texts per forward pass (default 32)")


def add_ray_options(p: argparse.ArgumentParser, batch_size: bool = False,
                    actors: bool = True, what: str = "embed with encoder actors") -> None:
    """``--ray [ADDRESS]``, ``--actors``, ``--gpus-per-actor`` (unless ``actors`` is false) and
    ``--batch-size`` (when the command has no model options that define it)."""
    g = p.add_argument_group("Ray (neartext[ray])")
    g.add_argument("--ray", nargs="?", const="local", metavar="ADDRESS",
                   help=f"{what} on Ray: 'local' (a Ray started here, the "
                        "default), 'auto' (the cluster 'ray start' or RAY_ADDRESS names) or "
                        "ray://HOST:10001")
    if not actors:
        return
    g.add_argument("--actors", type=int, default=2, help="encoder actors (default 2)")
    g.add_argument("--gpus-per-actor", type=finite_float, default=0.0)
    if batch_size:
        g.add_argument("--batch-size", type=int, default=256, help="texts per actor call (256)")


def on_ray(args: argparse.Namespace, **compute: Any) -> tuple[Any, Any]:
    """The Ray session ``--ray`` asks for (a null context without it) and the
    :class:`neartext.engine.compute.RayCompute` (``compute``: its settings) to give the collection."""
    if args.ray is None:
        return contextlib.nullcontext(), None

    return ray_session(args.ray), RayCompute(**compute)


def add_index_options(g: Any) -> None:
    g.add_argument("--index", default=None, choices=INDEX_KINDS,
                   help="vector index: auto (exact below 20,000 passages, an HNSW graph above, "
                        "tuned at build to recall@10 >= 0.99; on a Milvus server AUTOINDEX, on "
                        "Milvus Lite exact), flat (exact), hnsw (a graph), ivf (inverted lists)")
    g.add_argument("--precision", default=None, choices=PRECISIONS,
                   help="how a local collection stores its vectors: float32 (default), float16 "
                        "(half the space) or int8 (a quarter); see docs for the measured cost")
    g.add_argument("--index-param", action="append", default=[], metavar="KEY=VALUE",
                   help="Milvus index parameter, e.g. M=32, nlist=4096, metric_type=COSINE "
                        "(repeatable)")
    g.add_argument("--search-param", action="append", default=[], metavar="KEY=VALUE",
                   help="Milvus search parameter, e.g. ef=128 or nprobe=32 (repeatable)")


def milvus_options(args: argparse.Namespace) -> dict[str, Any] | None:
    """``--index-param``/``--search-param`` as the ``milvus`` argument of Collection.create."""
    def parse(items: list[str], flag: str) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for item in items:
            key, sep, value = item.partition("=")
            if not sep or not key.strip() or not value.strip():
                raise InputError(f"{flag} '{item}': write KEY=VALUE, e.g. {flag} ef=128")
            v = value.strip()
            out[key.strip()] = int(v) if v.lstrip("-").isdecimal() else v
        return out
    if not args.index_param and not args.search_param:
        return None
    return {"index_params": parse(args.index_param, "--index-param"),
            "search_params": parse(args.search_param, "--search-param")}


def add_corpus_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("corpus")
    g.add_argument("--text", help="text column(s), comma-separated; several are joined")
    g.add_argument("--id", dest="id_column", help="id column (default: ids from the text)")
    g.add_argument("--encoding", default="utf-8", help="file encoding (default utf-8)")


def add_vector_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("vectors the rows bring")
    g.add_argument("--vectors", metavar="COLUMN",
                   help="a list column (.jsonl, .parquet) with each row's vector: stored instead "
                        "of encoding the text")
    g.add_argument("--vectors-from", metavar="MODEL",
                   help="the model that made them: the collection's model name, its fingerprint, "
                        "or 'same' (a file from 'neartext export vectors' says it itself)")


def add_cluster_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("clustering")
    g.add_argument("--method", default=CLUSTER_DEFAULT, choices=CLUSTER_METHODS,
                   help="kmeans (default: --k clusters, themes), community (groups of texts "
                        "saying nearly the same, at --threshold) or hdbscan")
    g.add_argument("--threshold", type=finite_float,
                   help="community: cosine linking a text to a centre (default: the calibrated "
                        "threshold, else 0.75)")
    g.add_argument("--min-size", type=int, default=3, help="community/hdbscan: smallest cluster (3)")
    g.add_argument("--k", type=int, help="kmeans: number of clusters (default: about the square "
                                         "root of the documents, 2 to 100; on a map 2 to 20)")
    g.add_argument("--seed", type=int, default=42)


def add_mode_options(p: argparse.ArgumentParser, repeat: bool = False) -> None:
    modes = list(MODES)
    if repeat:
        p.add_argument("--mode", action="append", choices=modes,
                       help=choices_help(MODE_HELP, default=DEFAULT_MODE) + "; repeat to compare")
    else:
        p.add_argument("--mode", default=None, choices=modes,
                       help=choices_help(MODE_HELP) + "; default: the collection's tuned "
                            f"ranking, else {DEFAULT_MODE}")
    p.add_argument("--fusion", default=None if not repeat else DEFAULT_FUSION, choices=FUSIONS,
                   help=choices_help(FUSION_HELP, "hybrid", default=DEFAULT_FUSION))
    p.add_argument("--alpha", type=finite_float, default=None if not repeat else DEFAULT_ALPHA,
                   help=f"blend: weight of the cosine, the rest goes to BM25 (default {DEFAULT_ALPHA})")


def add_threshold(p: argparse.ArgumentParser, op: str) -> None:

    p.add_argument("--threshold", type=finite_float,
                   help=f"minimum similarity (default: the collection's calibrated threshold, "
                        f"else {DEFAULT_THRESHOLDS[op]})")


def add_pair_columns(p: argparse.ArgumentParser) -> None:
    p.add_argument("--text1", help="first text column (name or 1-based position)")
    p.add_argument("--text2", help="second text column")
    p.add_argument("--score", "--label", dest="score", help="score or 0/1 label column (name or position)")
    p.add_argument("--encoding", default="utf-8")


def add_near_dup_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--skip-near-duplicates", type=finite_float, metavar="T",
                   help="skip incoming texts scoring >= T against the collection or each other")


def add_output_options(p: argparse.ArgumentParser, table: str | None = None) -> None:
    """``--json`` and ``-q``; with ``table`` (what the rows are) also ``-o FILE``."""
    if table:
        p.add_argument("-o", "--output", help=f"write {table} to .csv, .jsonl or .parquet")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")


T = TypeVar("T")


def again_after_swap(write: Callable[[], T]) -> T:
    """Run ``write`` (which opens the collection itself); when a new version was swapped in
    while it had the old one open (nothing was written), say so and run it again on the new
    version, at most :data:`~neartext.errors.SWAP_RETRIES` times."""
    for attempt in range(SWAP_RETRIES + 1):
        try:
            return write()
        except CollectionReplaced:
            if attempt == SWAP_RETRIES:
                raise
            print("note: a new version of the collection was swapped in while this write had "
                  "the old one open (nothing was written); making the change on the new "
                  "version", file=sys.stderr, flush=True)
    raise AssertionError("unreachable")


def show_progress(args: argparse.Namespace) -> bool:
    """Progress unless ``-q`` or ``--json``: a bar on a terminal, log lines otherwise
    (:mod:`neartext.util.progress`)."""
    return not args.quiet and not args.json


def split_list(value: str | None) -> list[str] | None:
    if value is None:
        return None
    return [v.strip() for v in value.split(",") if v.strip()]


def one_line(text: str, width: int = 100) -> str:
    t = " ".join(text.split())
    return t if len(t) <= width else t[: width - 1] + "…"


def at_least_one(*options: tuple[str, int]) -> None:
    for name, value in options:
        if value < 1:
            raise InputError(f"{name} must be at least 1")


def print_report(args: argparse.Namespace, report: Any, path: Any) -> dict[str, Any]:
    if not args.json:
        print(f"{path}: {report.summary()}")
        for nd in report.near_duplicates[:10]:
            print(f"  skipped {nd['id']}: {nd['score']:.3f} to {nd['duplicate_of']}")
        if len(report.near_duplicates) > 10:
            print(f"  ... and {len(report.near_duplicates) - 10} more (see --json)")
    return {"collection": str(path), **report.to_dict()}


def print_results(rows: list, show: list[str] | None = None) -> None:
    """Ranked results, a line each: rank, score, id and the text (the best passage of a chunked
    document), then its fields as ``name=value``. ``show`` (``search --show``): the first of
    those fields a result has on its line, the others below (``text`` is the text)."""
    if not rows:
        print("no results (nothing matched the filters or passed the threshold)")
    for i, r in enumerate(rows, 1):
        text = r.passage or r.text
        if show is None:
            head, rest = text, [(k, v) for k, v in r.metadata.items() if v is not None]
        else:
            values = [(f, text if f == "text" else r.metadata.get(f)) for f in show]
            values = [(f, v) for f, v in values if v is not None and v != ""]
            head, rest = (values[0][1] if values else ""), values[1:]
        print(f"{i:>2}. {r.score:.3f}  {r.id}  {' '.join(str(head).split())}".rstrip())
        meta = "  ".join(f"{k}={' '.join(str(v).split()) if k == 'text' else v}"
                         for k, v in rest)
        if meta:
            print(f"    {meta}")


class _CurrentStderr(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to ``sys.stderr`` as it is when a record is logged, not as it was when the
    handler was made (a caller that swaps stderr, as a test's capture does, is followed)."""

    @property  # type: ignore[override]
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass


def log_warnings(command: str) -> None:
    """Warnings the library logs (e.g. an index cache that could not be saved after a committed
    write) go to stderr as one line each."""
    logger = logging.getLogger("neartext")
    h = next((h for h in logger.handlers if getattr(h, "_neartext_cli", False)), None)
    if h is None:
        h = _CurrentStderr()
        h.setLevel(logging.WARNING)
        h._neartext_cli = True  # type: ignore[attr-defined]
        logger.addHandler(h)
    # (again for each command run in one process: the line names the command running now)
    h.setFormatter(logging.Formatter(f"neartext {command}: warning: %(message)s"))


def resolve_api_key(given: str | None, key_file: str | None) -> str | None:
    """The key from --api-key (with a warning: other users see it in ``ps``) or --api-key-file;
    None lets the environment variable decide."""
    if given is not None and key_file is not None:
        raise InputError("give --api-key or --api-key-file, not both")
    if given is not None:
        print("warning: --api-key is visible to other users of this machine in the process "
              "list; prefer NEARTEXT_API_KEY or --api-key-file", file=sys.stderr)
        return given
    if key_file is not None:

        key = read_text(key_file).strip()
        if not key or "\n" in key:
            raise InputError(f"{key_file}: expected one line holding the API key")
        return key
    return None
