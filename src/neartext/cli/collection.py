"""``neartext`` commands: building, updating, searching and looking after collections."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from neartext.cli.common import (
    add_corpus_options,
    add_index_options,
    add_mode_options,
    add_model_options,
    add_near_dup_option,
    add_output_options,
    add_ray_options,
    add_vector_options,
    again_after_swap,
    at_least_one,
    finite_float,
    milvus_options,
    on_ray,
    print_report,
    print_results,
    show_progress,
    split_list,
)
from neartext.collection import Collection
from neartext.data.cleaning import DEFAULT_JUNK, CleaningOptions
from neartext.data.encoder_settings import POOLING_MODES
from neartext.data.evaldata import load_queries
from neartext.data.filters import WHERE_HELP
from neartext.data.ranking import TEXT_MODES
from neartext.encoders import EncoderSettings, load_encoder
from neartext.encoders.registry import AGAIN
from neartext.engine.embedding import embed_file
from neartext.engine.searching import check_fields
from neartext.errors import InputError
from neartext.export.query_encoder import needs_twin, prepare_model_twin, prepare_query_encoder
from neartext.ops.migrate import migrate
from neartext.ops.reindex import reindex
from neartext.util.readers import lines, read_text


def register(sub: Any) -> None:
    """Add the index, embed, upsert, search, delete, info, repair, migrate, reindex commands to
    ``sub``."""
    p = sub.add_parser("index", help="build a collection from a corpus file (or re-index it)")
    p.add_argument("corpus", help=".txt, .csv, .tsv, .jsonl or .parquet file, or a directory "
                   "of them (read in path order)")
    p.add_argument("-c", "--collection", required=True,
                   help="collection: a directory, milvus://HOST:PORT/NAME or milvus-lite:FILE")
    add_corpus_options(p)
    add_vector_options(p)
    add_model_options(p)
    g = p.add_argument_group("collection")
    g.add_argument("--chunk", type=int, help="split texts into passages of N words")
    g.add_argument("--overlap", type=int, default=0, help="words shared by adjacent passages")
    add_index_options(g)
    g.add_argument("--tune-queries", metavar="FILE",
                   help="queries like your users' (.txt one a line, .csv/.jsonl with a 'query' "
                        "column, or .npy query vectors; at least 100): the vector index's search "
                        "setting is chosen on them (recall@10 >= 0.99 at the least cost) "
                        "instead of on rows held out of the corpus, and kept for later rebuilds")
    g = p.add_argument_group("cleaning")
    g.add_argument("--no-clean", action="store_true", help="keep every row as it is")
    g.add_argument("--keep-duplicates", action="store_true", help="keep exact duplicate texts")
    g.add_argument("--junk", help="comma-separated placeholder values to drop (replaces defaults)")
    g.add_argument("--strip-html", action="store_true", help="remove HTML tags")
    g.add_argument("--strip-urls", action="store_true", help="remove URLs")
    g.add_argument("--collapse-whitespace", action="store_true", help="collapse runs of spaces")
    p.add_argument("--prune", action="store_true",
                   help="re-indexing: remove the stored documents the corpus lacks (by default "
                        "they are kept, and counted)")
    add_near_dup_option(p)
    add_ray_options(p)
    add_output_options(p)
    p.set_defaults(handler=_cmd_index)

    p = sub.add_parser("embed", help="a corpus file to a Parquet file of vectors (id, hash, "
                                     "vector; the model recorded), here or on a Ray cluster")
    p.add_argument("corpus", help=".txt, .csv, .tsv, .jsonl or .parquet file, or a directory "
                   "of them (read in path order)")
    p.add_argument("-o", "--output", required=True, help="the .parquet file to write")
    p.add_argument("--model", default="default", help="model name or path (default: default)")
    add_corpus_options(p)
    add_ray_options(p, batch_size=True)
    add_output_options(p)
    p.set_defaults(handler=_cmd_embed)

    p = sub.add_parser("upsert", help="add or replace documents without a full rebuild")
    p.add_argument("collection")
    p.add_argument("corpus", help="a corpus file or a directory of them")
    add_corpus_options(p)
    add_vector_options(p)
    add_near_dup_option(p)
    add_ray_options(p, batch_size=True)
    add_output_options(p)
    p.set_defaults(handler=_cmd_upsert)

    p = sub.add_parser("search", help="find the texts closest in meaning to a query")
    p.add_argument("collection")
    p.add_argument("query", nargs="?", help="the query text (or use --queries FILE)")
    p.add_argument("--queries", dest="queries_file", help="a file with one query per line")
    p.add_argument("-k", type=int, default=10, help="results per query (default 10)")
    p.add_argument("--threshold", type=finite_float, help="minimum score, in [-1, 1]")
    p.add_argument("--where", action="append", default=[], metavar="EXPR", help=WHERE_HELP)
    p.add_argument("--contains", action="append", default=[],
                   help="only texts containing this word (repeatable)")
    add_mode_options(p)
    p.add_argument("--model", help="check that this model is the collection's")
    p.add_argument("--show", metavar="FIELDS",
                   help="what each result shows, comma-separated: text and/or fields of the "
                        "documents, e.g. title,link (default: the text, then every field; "
                        "--json gives everything)")
    add_output_options(p)
    p.set_defaults(handler=_cmd_search)

    p = sub.add_parser("delete", help="remove documents by id, or those a filter selects",
                       description="Remove documents by id, or every document a filter selects "
                                   "(--where, --contains; the count is shown and confirmed, or "
                                   "--yes).")
    p.add_argument("collection")
    p.add_argument("ids", nargs="*", help="ids of the documents to remove")
    p.add_argument("--where", action="append", metavar="EXPR", help=WHERE_HELP)
    p.add_argument("--contains", action="append", metavar="WORD",
                   help="only documents containing this word (repeat for AND)")
    p.add_argument("--yes", action="store_true", help="delete what the filter selects without asking")
    add_output_options(p)
    p.set_defaults(handler=_cmd_delete)

    p = sub.add_parser("info", help="size, model and settings of a collection")
    p.add_argument("collection")
    add_output_options(p)
    p.set_defaults(handler=_cmd_info)

    p = sub.add_parser("repair", help="rebuild a collection's vector index from its database "
                                      "and report what was wrong")
    p.add_argument("collection")
    add_output_options(p)
    p.set_defaults(handler=_cmd_repair)

    p = sub.add_parser("migrate", help="copy a collection to another store (a directory, Milvus) "
                                       "without re-embedding")
    p.add_argument("source", help="collection to copy (directory or Milvus address)")
    p.add_argument("destination", help="where to copy it (must not exist yet)")
    g = p.add_argument_group("destination index")
    add_index_options(g)
    g.set_defaults(index=None)
    add_output_options(p)
    p.set_defaults(handler=_cmd_migrate)

    p = sub.add_parser("reindex", help="re-embed a collection with another model (swapped in when done)")
    p.add_argument("collection")
    p.add_argument("--model", required=True, help="the new model: name or local directory")
    p.add_argument("--query-prefix", default=None, help="text put before every query (default: the model's)")
    p.add_argument("--document-prefix", default=None, help="text put before every document")
    p.add_argument("--pooling", choices=POOLING_MODES,
                   help=f"override the model's pooling: {', '.join(POOLING_MODES)}")
    p.add_argument("--max-seq-length", type=int, help="tokens read per text")
    p.add_argument("--keep-previous", action="store_true",
                   help="keep the old version at COLLECTION.previous")
    add_output_options(p)
    p.set_defaults(handler=_cmd_reindex)


def _cmd_index(args: argparse.Namespace) -> dict[str, Any]:

    encoder_options = {k: v for k, v in (
        ("query_prefix", args.query_prefix), ("document_prefix", args.document_prefix),
        ("pooling", args.pooling), ("max_seq_length", args.max_seq_length),
        ("normalize", False if args.no_normalize else None)) if v is not None}
    cleaning = None
    if (args.no_clean or args.keep_duplicates or args.junk is not None or args.strip_html
            or args.strip_urls or args.collapse_whitespace):
        junk = tuple(split_list(args.junk) or ()) if args.junk is not None else DEFAULT_JUNK
        cleaning = CleaningOptions(
            enabled=not args.no_clean, drop_duplicates=not args.keep_duplicates,
            junk_values=junk, strip_html=args.strip_html, strip_urls=args.strip_urls,
            collapse_whitespace=args.collapse_whitespace)
    if args.ray is not None:
        at_least_one(("--actors", args.actors))
    session, compute = on_ray(args, actors=args.actors, batch_size=max(args.batch_size, 64),
                              gpus_per_actor=args.gpus_per_actor)
    with session:
        return _index(args, encoder_options, cleaning, compute)


def _index(args: argparse.Namespace, encoder_options: dict[str, Any], cleaning: Any,
           compute: Any) -> dict[str, Any]:
    tune_queries = None if args.tune_queries is None else load_queries(args.tune_queries)

    report, _ = again_after_swap(lambda: Collection.index_corpus(
        args.collection, args.corpus, split_list(args.text), args.id_column,
        encoding=args.encoding, progress=show_progress(args),
        skip_near_duplicates=args.skip_near_duplicates, model=args.model,
        batch_size=args.batch_size, prune=args.prune, encoder_options=encoder_options,
        chunk=args.chunk,
        overlap=args.overlap, index=args.index, cleaning=cleaning, milvus=milvus_options(args),
        vectors=args.vectors, vectors_from=args.vectors_from, precision=args.precision,
        compute=compute, tune_queries=tune_queries))
    return print_report(args, report, args.collection)


def _cmd_embed(args: argparse.Namespace) -> dict[str, Any]:

    at_least_one(("--actors", args.actors), ("--batch-size", args.batch_size))
    report = embed_file(args.corpus, args.output, model=args.model,
                        text=split_list(args.text),
                        id_column=args.id_column, ray=args.ray, actors=args.actors,
                        batch_size=args.batch_size, gpus_per_actor=args.gpus_per_actor,
                        encoding=args.encoding, progress=show_progress(args))
    if not args.json and not args.quiet:
        print(report.summary())
    return report.to_dict()


def _cmd_upsert(args: argparse.Namespace) -> dict[str, Any]:

    at_least_one(("--actors", args.actors), ("--batch-size", args.batch_size))
    session, compute = on_ray(args, actors=args.actors, batch_size=args.batch_size,
                              gpus_per_actor=args.gpus_per_actor)

    def write() -> Any:
        with Collection.open(args.collection) as col:
            col.compute = compute
            return col.index_file(args.corpus, split_list(args.text), args.id_column,
                                  encoding=args.encoding, progress=show_progress(args),
                                  skip_near_duplicates=args.skip_near_duplicates,
                                  vectors=args.vectors, vectors_from=args.vectors_from)

    with session:
        report = again_after_swap(write)
    return print_report(args, report, args.collection)


def _cmd_search(args: argparse.Namespace) -> Any:

    if (args.query is None) == (args.queries_file is None):
        raise InputError("give a query or --queries FILE (one of them)")
    if args.queries_file:

        qpath = Path(args.queries_file)
        queries = [q.strip() for q in lines(read_text(qpath)) if q.strip()]
        if not queries:
            raise InputError(f"{qpath}: no queries in the file")
    else:
        queries = [args.query]
    show = split_list(args.show) or None
    with Collection.open(args.collection, model=args.model) as col:
        if show is not None:
            check_fields(col.store, show)
        opts = col.search_options(args.k, args.threshold, args.mode, args.fusion, args.alpha)
        results = col.search_many(queries, where=args.where, contains=args.contains,
                                  options=opts)
        if opts.mode not in TEXT_MODES:  # the model was loaded: keep an export for the next search
            encoder, state = col.query_encoder, col.path
            args.afterwards = lambda: _note(args, prepare_query_encoder(encoder, state))
    if not args.json:
        for q, rows in zip(queries, results):
            if len(queries) > 1:
                print(f"\n# {q}")
            print_results(rows, show)
    dicts = [[r.to_dict() for r in rows] for rows in results]
    if args.queries_file:
        return [{"query": q, "results": d} for q, d in zip(queries, dicts)]
    return dicts[0]


def make_twins(args: argparse.Namespace) -> None:
    """After a command: an ONNX twin for each sentence-transformers model it loaded that this
    machine had loaded before (:mod:`neartext.encoders.twin`), so later runs skip torch."""
    wanted = [s for fp, s in AGAIN.items() if needs_twin(fp)]
    AGAIN.clear()
    for settings in wanted:  # loaded again (torch is): the command has let go of it
        _note(args, prepare_model_twin(load_encoder(settings)))
    AGAIN.clear()


def _note(args: argparse.Namespace, line: str | None) -> None:
    """A line about what a command did after its output (on stderr, unless --quiet)."""
    if line and not getattr(args, "quiet", False):
        print(f"neartext {args.command}: {line}", file=sys.stderr)


def _cmd_delete(args: argparse.Namespace) -> dict[str, Any]:

    by_filter = bool(args.where or args.contains)
    if by_filter == bool(args.ids):
        raise InputError("give the ids to delete, or --where/--contains (one of them)")
    with Collection.open(args.collection) as col:
        if not by_filter:
            removed = col.delete(args.ids)
            left = len(col)
            if not args.json:
                print(f"{args.collection}: {removed} removed, {len(args.ids) - removed} not "
                      f"found, {left} documents left")
            return {"collection": args.collection, "removed": removed,
                    "not_found": len(args.ids) - removed, "documents": left}
        selected = len(col.matching(args.where, args.contains))
        if selected and not args.yes and not _confirm(
                f"{args.collection}: delete {selected} of {len(col)} documents? [y/N] ", args):
            raise InputError(f"{args.collection}: the filter selects {selected} documents; "
                             "nothing deleted (pass --yes to delete them)")
        removed = col.delete_where(args.where, args.contains) if selected else 0
        left = len(col)
    if not args.json:
        print(f"{args.collection}: {removed} removed (matched by the filter), {left} documents "
              "left")
    return {"collection": args.collection, "removed": removed, "documents": left}


def _confirm(question: str, args: argparse.Namespace) -> bool:
    """Ask on a terminal; never elsewhere (a script must say --yes)."""
    if args.json or not sys.stdin.isatty():
        return False
    print(question, end="", file=sys.stderr, flush=True)
    return sys.stdin.readline().strip().lower() in ("y", "yes")


def _cmd_info(args: argparse.Namespace) -> dict[str, Any]:

    with Collection.open(args.collection) as col:
        info = col.info().to_dict()
    if not args.json:
        width = max(len(k) for k in info)
        for k, v in info.items():
            print(f"{k:<{width}}  {json.dumps(v, ensure_ascii=False) if isinstance(v, (dict, list)) else v}")
    return info


def _cmd_repair(args: argparse.Namespace) -> dict[str, Any]:

    with Collection.open(args.collection) as col:
        res = col.repair()
    if not args.json:
        before = res.get("index_file_before")
        if before is not None:
            was = (f"the index file held {before.get('vectors')} vectors of generation "
                   f"{before.get('generation')}" if "vectors" in before else
                   f"the index file was unusable ({before.get('problem')})")
            print(f"{args.collection}: index rebuilt from the database: {res['passages']} vectors "
                  f"for {res['documents']} documents at generation {res['generation']} ({was}); "
                  f"database check: {res['database']}")
            for key, what in (("passages_without_document", "passages without a document"),
                              ("documents_without_passage", "documents without a passage")):
                if res.get(key):
                    print(f"warning: {res[key]} {what}", file=sys.stderr)
        else:
            print(f"{args.collection}: {res.get('note')}; {res['documents']} documents")
    return res


def _cmd_migrate(args: argparse.Namespace) -> dict[str, Any]:

    report = migrate(args.source, args.destination, index=args.index,
                     milvus=milvus_options(args), progress=show_progress(args),
                     precision=args.precision)
    if not args.json:
        print(report.summary())
    return report.to_dict()


def _cmd_reindex(args: argparse.Namespace) -> dict[str, Any]:

    settings: Any = args.model
    if any(v is not None for v in (args.query_prefix, args.document_prefix, args.pooling,
                                   args.max_seq_length)):
        settings = EncoderSettings(model=args.model, query_prefix=args.query_prefix,
                                   document_prefix=args.document_prefix, pooling=args.pooling,
                                   max_seq_length=args.max_seq_length)
    report = reindex(args.collection, settings, progress=show_progress(args),
                     keep_previous=args.keep_previous)
    if not args.json:
        print(report.summary())
        for note in report.notes:
            print(f"  note: {note}")
    return report.to_dict()
