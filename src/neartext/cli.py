"""The ``neartext`` command: a thin layer over the library.

Every command takes ``--json`` for machine-readable output. Errors print one line naming the
file, row or value at fault and exit with status 1 (2 for usage errors).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from . import __version__
from .errors import InputError, MissingExtra, NeartextError
from .hybrid import DEFAULT_ALPHA, DEFAULT_FUSION


def _add_model_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("model")
    g.add_argument("--model", default=None,
                   help="built-in model name or local sentence-transformers directory "
                        "(default: all-MiniLM-L6-v2)")
    g.add_argument("--query-prefix", default=None, help="text put before every query")
    g.add_argument("--document-prefix", default=None, help="text put before every document")
    g.add_argument("--pooling", choices=["mean", "cls", "max"], help="override the model's pooling")
    g.add_argument("--max-seq-length", type=int, help="tokens read per text (longer: truncated)")
    g.add_argument("--no-normalize", action="store_true", help="keep raw vector lengths (dot product)")
    g.add_argument("--batch-size", type=int, default=32, help="texts per forward pass (default 32)")


def _add_index_options(g: Any) -> None:
    g.add_argument("--index", default="auto", choices=["auto", "flat", "hnsw", "ivf"],
                   help="vector index (auto: exact below 200k passages, IVF above; on a Milvus "
                        "server AUTOINDEX, on Milvus Lite exact)")
    g.add_argument("--index-param", action="append", default=[], metavar="KEY=VALUE",
                   help="Milvus index parameter, e.g. M=32, nlist=4096, metric_type=COSINE "
                        "(repeatable)")
    g.add_argument("--search-param", action="append", default=[], metavar="KEY=VALUE",
                   help="Milvus search parameter, e.g. ef=128 or nprobe=32 (repeatable)")


def _milvus_options(args: argparse.Namespace) -> dict[str, Any] | None:
    """``--index-param``/``--search-param`` as the ``milvus`` argument of Collection.create."""
    def parse(items: list[str], flag: str) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for item in items:
            key, sep, value = item.partition("=")
            if not sep or not key.strip() or not value.strip():
                raise InputError(f"{flag} '{item}': write KEY=VALUE, e.g. {flag} ef=128")
            v = value.strip()
            out[key.strip()] = int(v) if v.lstrip("-").isdigit() else v
        return out
    if not args.index_param and not args.search_param:
        return None
    return {"index_params": parse(args.index_param, "--index-param"),
            "search_params": parse(args.search_param, "--search-param")}


def _add_corpus_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("corpus")
    g.add_argument("--text", help="text column(s), comma-separated; several are joined")
    g.add_argument("--id", dest="id_column", help="id column (default: ids from the text)")
    g.add_argument("--encoding", default="utf-8", help="file encoding (default utf-8)")


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="neartext", description="Semantic search over your own texts.")
    ap.add_argument("--version", action="version", version=f"neartext {__version__}")
    sub = ap.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("index", help="build a collection from a corpus file (or re-index it)")
    p.add_argument("corpus", help=".txt, .csv, .tsv, .jsonl or .parquet file")
    p.add_argument("-c", "--collection", required=True,
                   help="collection: a directory, milvus://HOST:PORT/NAME or milvus-lite:FILE")
    _add_corpus_options(p)
    _add_model_options(p)
    g = p.add_argument_group("collection")
    g.add_argument("--chunk", type=int, help="split texts into passages of N words")
    g.add_argument("--overlap", type=int, default=0, help="words shared by adjacent passages")
    _add_index_options(g)
    g = p.add_argument_group("cleaning")
    g.add_argument("--no-clean", action="store_true", help="keep every row as it is")
    g.add_argument("--keep-duplicates", action="store_true", help="keep exact duplicate texts")
    g.add_argument("--junk", help="comma-separated placeholder values to drop (replaces defaults)")
    g.add_argument("--strip-html", action="store_true", help="remove HTML tags")
    g.add_argument("--strip-urls", action="store_true", help="remove URLs")
    g.add_argument("--collapse-whitespace", action="store_true", help="collapse runs of spaces")
    _add_near_dup_option(p)
    _add_output_options(p)

    p = sub.add_parser("upsert", help="add or replace documents without a full rebuild")
    p.add_argument("collection")
    p.add_argument("corpus")
    _add_corpus_options(p)
    _add_near_dup_option(p)
    _add_output_options(p)

    p = sub.add_parser("search", help="find the texts closest in meaning to a query")
    p.add_argument("collection")
    p.add_argument("query", nargs="?", help="the query text (or use --queries FILE)")
    p.add_argument("--queries", dest="queries_file", help="a file with one query per line")
    p.add_argument("-k", type=int, default=10, help="results per query (default 10)")
    p.add_argument("--threshold", type=float, help="minimum score, in [-1, 1]")
    p.add_argument("--where", action="append", default=[],
                   help="metadata condition, e.g. 'year>=2022' (repeat for AND)")
    p.add_argument("--contains", action="append", default=[],
                   help="only texts containing this word (repeatable)")
    _add_mode_options(p)
    p.add_argument("--model", help="check that this model is the collection's")
    _add_output_options(p)

    p = sub.add_parser("mine", help="every pair of paraphrases in a collection, best first")
    p.add_argument("collection")
    _add_threshold(p, "mine")
    p.add_argument("--top-k", type=int, default=100, help="neighbours considered per text (100)")
    p.add_argument("--max-pairs", type=int, help="keep only the best N pairs")
    p.add_argument("--method", default="auto", choices=["auto", "exact", "approx"],
                   help="exact, approx (k-means cell self-join), auto: approx above 50k texts")
    p.add_argument("--nprobe", type=int,
                   help="approx: cells each cell is compared with (default 1); more: slower, more complete")
    p.add_argument("--verify", type=int, metavar="N",
                   help="also run exact search for N random texts and report recall")
    p.add_argument("-o", "--output", help="write pairs to .csv, .jsonl or .parquet")
    _add_output_options(p)

    p = sub.add_parser("paraphrases", help="paraphrases of one text in a collection")
    p.add_argument("collection")
    p.add_argument("text")
    _add_threshold(p, "paraphrases")
    p.add_argument("--top-k", type=int, default=100, help="at most this many (100)")
    p.add_argument("-o", "--output", help="write them to .csv, .jsonl or .parquet")
    _add_output_options(p)

    p = sub.add_parser("dedup", help="groups of near-duplicates; optionally a cleaned corpus")
    p.add_argument("collection")
    _add_threshold(p, "dedup")
    p.add_argument("--method", default="components", choices=["components", "community"],
                   help="components (chains allowed) or community (members close to the centre)")
    p.add_argument("--representative", default="central", choices=["central", "first"],
                   help="which member represents a group (default: most central)")
    p.add_argument("--top-k", type=int, default=100, help="neighbours considered per text (100)")
    p.add_argument("-o", "--output", help="write groups to .csv, .jsonl or .parquet")
    p.add_argument("--write-clean", metavar="FILE",
                   help="write the corpus with one row per group (+ FILE's .mapping.csv: id -> kept id)")
    _add_output_options(p)

    p = sub.add_parser("cluster", help="clusters of the documents, with labels and central texts")
    p.add_argument("collection")
    _add_cluster_options(p)
    p.add_argument("--central", type=int, default=3, help="central texts shown per cluster (3)")
    p.add_argument("-o", "--output", help="write id, cluster, label, text to .csv, .jsonl or .parquet")
    _add_output_options(p)

    p = sub.add_parser("map", help="a 2-D map of the collection (UMAP) as PNG or offline HTML")
    p.add_argument("collection")
    p.add_argument("-o", "--output", required=True, help="map.png or map.html")
    p.add_argument("--color-by", help="'cluster' or a metadata column")
    p.add_argument("--sample", type=int, help="map a random sample of N documents")
    p.add_argument("--query", help="mark where this query lands")
    _add_cluster_options(p)
    _add_output_options(p)

    p = sub.add_parser("eval", help="evaluate models on labeled pairs (a column per model)")
    ev = p.add_subparsers(dest="eval_kind", required=True, metavar="KIND")
    for kind, what in (("sts", "Spearman/Pearson x100 against similarity scores"),
                       ("pairs", "average precision, best-F1 and best-accuracy thresholds "
                                 "on 0/1 labeled pairs")):
        q = ev.add_parser(kind, help=what)
        q.add_argument("file", help="CSV/TSV/JSONL with two texts and a score or label")
        q.add_argument("--model", action="append", default=[],
                       help="model name or path (repeat to compare; default: default)")
        _add_pair_columns(q)
        if kind == "pairs":
            q.add_argument("--min-precision", type=float,
                           help="also report the lowest threshold with at least this precision")
            q.add_argument("--plot", metavar="PNG",
                           help="write a histogram of both classes' scores with the best-F1 threshold")
        _add_output_options(q)

    q = ev.add_parser("retrieval", help="MRR@10, nDCG@10, Recall@1/5/10, MAP@100")
    q.add_argument("--pairs", help="(query, passage) rows: each query's gold is its passage")
    q.add_argument("--query", help="query column of --pairs (name or position)")
    q.add_argument("--passage", help="passage column of --pairs")
    q.add_argument("--corpus", help="BEIR corpus.jsonl")
    q.add_argument("--queries", help="BEIR queries.jsonl")
    q.add_argument("--qrels", help="BEIR qrels TSV (query-id, corpus-id, score)")
    q.add_argument("--model", action="append", default=[], help="model (repeat to compare)")
    _add_mode_options(q, repeat=True)
    q.add_argument("--encoding", default="utf-8")
    _add_output_options(q)

    p = sub.add_parser("train", help="fine-tune a model on your pairs (format and loss detected)")
    p.add_argument("file", help="CSV/TSV/JSONL: (anchor, positive[, negative]) or two texts + score/label")
    p.add_argument("-o", "--output", required=True, help="directory for the trained model")
    p.add_argument("--base", default="default", help="model to start from: name or path (default: default)")
    p.add_argument("--loss", choices=["mnrl", "cached-mnrl", "cosent", "cosine", "online-contrastive"],
                   help="override the loss chosen from the data format")
    p.add_argument("--epochs", type=float, default=1.0, help="passes over the data (default 1)")
    p.add_argument("--lr", "--learning-rate", dest="learning_rate", type=float, default=2e-5,
                   help="peak learning rate (default 2e-5)")
    p.add_argument("--warmup", type=float, default=0.1, help="fraction of steps warming up (0.1)")
    p.add_argument("--batch-size", default=None,
                   help="rows per step, or 'auto': the largest that fits, found by trial "
                        "(default: 32 for mnrl, 128 for cached-mnrl, 16 for the others)")
    p.add_argument("--mini-batch-size", type=int, default=32,
                   help="cached-mnrl: rows per forward pass inside a batch (32)")
    p.add_argument("--max-seq-length", type=int, help="tokens read per text while training")
    p.add_argument("--seed", type=int, default=42)
    g = p.add_argument_group("evaluation")
    g.add_argument("--eval", dest="eval_file", help="evaluation file, measured before, after each epoch "
                                                    "and after training; the best epoch is kept")
    g.add_argument("--eval-split", type=float,
                   help="hold out this fraction instead (default: 0.1 from 200 rows up; 0: none)")
    g = p.add_argument_group("data")
    g.add_argument("--anchor", help="first text column (name or 1-based position)")
    g.add_argument("--positive", help="second text column")
    g.add_argument("--negative", help="hard-negative column")
    g.add_argument("--score", help="score or label column")
    g.add_argument("--encoding", default="utf-8")
    g.add_argument("--balance", action="store_true",
                   help="labeled pairs: repeat the smaller class until both are equal")
    g.add_argument("--mine-hard-negatives", action="store_true",
                   help="pairs: add the closest wrong positive to each pair as a hard negative")
    g = p.add_argument_group("run")
    g.add_argument("--save-steps", type=int, help="checkpoint (and evaluate) every N steps, not per epoch")
    g.add_argument("--memory-budget", type=float, metavar="GB",
                   help="--batch-size auto: memory a step may use (default: half of what is free)")
    g.add_argument("--resume", action="store_true", help="continue an interrupted run of this output")
    g.add_argument("--overwrite", action="store_true", help="replace an existing output directory")
    _add_output_options(p)

    q = ev.add_parser("collection", help="retrieval metrics of an existing collection for held-out queries")
    q.add_argument("collection")
    q.add_argument("--pairs", required=True,
                   help="(query, passage) rows; each passage must be a document of the collection")
    q.add_argument("--query", help="query column (name or position)")
    q.add_argument("--passage", help="passage column (matched to documents by text)")
    q.add_argument("--gold-id", help="column with the gold document's id (instead of its text)")
    _add_mode_options(q)
    q.add_argument("--encoding", default="utf-8")
    _add_output_options(q)

    p = sub.add_parser("reindex", help="re-embed a collection with another model (swapped in when done)")
    p.add_argument("collection")
    p.add_argument("--model", required=True, help="the new model: name or local directory")
    p.add_argument("--query-prefix", default=None, help="text put before every query (default: the model's)")
    p.add_argument("--document-prefix", default=None, help="text put before every document")
    p.add_argument("--pooling", choices=["mean", "cls", "max"], help="override the model's pooling")
    p.add_argument("--max-seq-length", type=int, help="tokens read per text")
    p.add_argument("--keep-previous", action="store_true",
                   help="keep the old version at COLLECTION.previous")
    _add_output_options(p)

    p = sub.add_parser("calibrate", help="pick a similarity threshold from labeled pairs and "
                                         "store it in the collection")
    p.add_argument("collection")
    p.add_argument("--pairs", required=True, help="two texts + 0/1 label per row")
    p.add_argument("--min-precision", type=float,
                   help="choose the threshold with most recall at this precision "
                        "(default: best F1)")
    _add_pair_columns(p)
    _add_output_options(p)

    p = sub.add_parser("serve", help="serve collections over HTTP with a web UI (needs neartext[serve])")
    p.add_argument("collections", nargs="*", metavar="[NAME=]DIR",
                   help="collections to serve; the name is the directory's unless NAME= is given")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to bind (default 127.0.0.1; 0.0.0.0 serves other machines)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--model", help="model of /embed, /similarity and /v1/embeddings "
                                   "(default: the first collection's)")
    p.add_argument("--api-key", default=None,
                   help="require 'Authorization: Bearer KEY'; visible to other users in the "
                        "process list: prefer NEARTEXT_API_KEY or --api-key-file")
    p.add_argument("--api-key-file", metavar="FILE",
                   help="read the API key from FILE (default: $NEARTEXT_API_KEY, else no key)")
    from .serve.settings import ServeSettings as SS  # light: no FastAPI import

    g = p.add_argument_group("limits and batching")
    g.add_argument("--max-body-bytes", type=int, default=SS.max_body_bytes)
    g.add_argument("--max-texts", type=int, default=SS.max_texts, help="texts per request")
    g.add_argument("--max-text-chars", type=int, default=SS.max_text_chars)
    g.add_argument("--max-k", type=int, default=SS.max_k)
    g.add_argument("--max-results", type=int, default=SS.max_results,
                   help="queries x k per search request")
    g.add_argument("--max-batch", type=int, default=SS.max_batch,
                   help="texts encoded together from concurrent requests (1: no micro-batching)")
    g.add_argument("--max-wait-ms", type=float, default=SS.max_wait_ms,
                   help="how long a batch waits for more requests")
    g.add_argument("--forward-batch", type=int, default=SS.forward_batch,
                   help="texts per forward pass within a batch (small passes pad less)")
    p.set_defaults(json=False, quiet=False)

    p = sub.add_parser("export", help="deployable forms: an MLflow model of a collection, an ONNX model")
    ex = p.add_subparsers(dest="export_kind", required=True, metavar="FORMAT")
    q = ex.add_parser("mlflow", help="an MLflow pyfunc model: the encoder plus the stored vectors")
    q.add_argument("collection")
    q.add_argument("-o", "--output", help="directory to save the model in")
    q.add_argument("--log", action="store_true",
                   help="log it to MLflow's tracking store instead (MLFLOW_TRACKING_URI, else MLflow's "
                        "default)")
    q.add_argument("--force", action="store_true", help="replace an existing output directory")
    _add_output_options(q)
    q = ex.add_parser("onnx", help="an ONNX model (pooling inside) + tokenizer, run without torch")
    q.add_argument("--model", default="default", help="the model to export: name or local path")
    q.add_argument("-o", "--output", required=True, help="directory to write")
    q.add_argument("--quantize", choices=["int8"], help="also write an int8 model and use it")
    q.add_argument("--force", action="store_true", help="replace an existing output directory")
    _add_output_options(q)

    p = sub.add_parser("bench-encoders",
                       help="torch vs ONNX fp32/int8 vs static on your data; recommends one")
    p.add_argument("--model", default="default", help="a sentence-transformers model: name or path")
    p.add_argument("--sts", help="pairs with a similarity score to measure quality (Spearman)")
    p.add_argument("--pairs", help="(query, passage) rows to measure retrieval MRR@10 instead")
    p.add_argument("--tolerance", type=float, default=1.0,
                   help="points of quality a faster backend may lose (default 1)")
    p.add_argument("--keep", metavar="DIR", help="keep the built backends here (default: a temp dir)")
    p.add_argument("--rounds", type=int, default=2, help="timing rounds per backend (2)")
    _add_output_options(p)

    p = sub.add_parser("distill", help="a static (model2vec) model from a sentence-transformers model")
    p.add_argument("--model", default="default", help="the model to distill: name or local path")
    p.add_argument("-o", "--output", required=True, help="directory for the static model")
    p.add_argument("--pca-dims", type=int, default=256,
                   help="dimensions kept by PCA (default 256; 0 keeps the model's)")
    p.add_argument("--force", action="store_true", help="replace an existing output directory")
    _add_output_options(p)

    p = sub.add_parser("bot", help="a Telegram bot answering with the top-k results, 👍/👎 stored")
    p.add_argument("collection", nargs="?", help="collection directory (or use --url)")
    p.add_argument("--url", help="a running service's collection, e.g. http://127.0.0.1:8000/collections/memes")
    p.add_argument("--api-key", help="the service's API key (default: NEARTEXT_API_KEY; on the "
                                     "command line it is visible in the process list)")
    p.add_argument("-k", type=int, default=5, help="answers per question (5)")
    p.add_argument("--show", default="text",
                   help="fields in an answer, comma-separated: text and/or metadata columns")
    p.add_argument("--photo-column", help="metadata column holding an image URL: answers are photos")
    p.add_argument("--threshold", type=float, help="minimum score of an answer")
    p.add_argument("--per-minute", type=int, default=20, help="questions per chat per minute (20)")
    p.add_argument("--max-chars", type=int, default=500, help="longest question (500 characters)")
    for name, what in (("start", "/start"), ("help", "/help"), ("nothing", "no-answer")):
        p.add_argument(f"--{name}-text", help=f"the {what} message (text, or @file); "
                                              "{k} and {max_chars} are filled in")
    p.add_argument("--webhook", metavar="URL", help="receive updates at this public URL instead of polling")
    p.add_argument("--host", default="0.0.0.0", help="webhook: interface to listen on")
    p.add_argument("--port", type=int, default=8443, help="webhook: port to listen on (8443)")
    p.add_argument("--secret", help="webhook: secret Telegram sends back with every update")
    p.add_argument("--api-server", help="another Bot API server (default: Telegram's)")
    p.set_defaults(json=False, quiet=False)

    p = sub.add_parser("feedback", help="ratings stored by the service")
    fb = p.add_subparsers(dest="feedback_kind", required=True, metavar="ACTION")
    q = fb.add_parser("export", help="write ratings as training data for 'neartext train'")
    q.add_argument("collection")
    q.add_argument("-o", "--output", required=True, help=".csv or .tsv to write")
    _add_output_options(q)
    q = fb.add_parser("list", help="the stored ratings, newest first")
    q.add_argument("collection")
    q.add_argument("-n", "--limit", type=int, default=50)
    _add_output_options(q)

    p = sub.add_parser("delete", help="remove documents by id")
    p.add_argument("collection")
    p.add_argument("ids", nargs="+")
    _add_output_options(p)

    p = sub.add_parser("migrate", help="copy a collection to another store (a directory, Milvus) "
                                       "without re-embedding")
    p.add_argument("source", help="collection to copy (directory or Milvus address)")
    p.add_argument("destination", help="where to copy it (must not exist yet)")
    g = p.add_argument_group("destination index")
    _add_index_options(g)
    g.set_defaults(index=None)
    _add_output_options(p)

    p = sub.add_parser("repair", help="rebuild a collection's vector index from its database "
                                      "and report what was wrong")
    p.add_argument("collection")
    _add_output_options(p)

    p = sub.add_parser("info", help="size, model and settings of a collection")
    p.add_argument("collection")
    _add_output_options(p)
    return ap


def _add_cluster_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("clustering")
    g.add_argument("--method", default="community", choices=["community", "kmeans", "hdbscan"],
                   help="community (at --threshold), kmeans (--k clusters) or hdbscan")
    g.add_argument("--threshold", type=float,
                   help="community: cosine linking a text to a centre (default: the calibrated "
                        "threshold, else 0.75)")
    g.add_argument("--min-size", type=int, default=3, help="community/hdbscan: smallest cluster (3)")
    g.add_argument("--k", type=int, help="kmeans: number of clusters")
    g.add_argument("--seed", type=int, default=42)


def _add_mode_options(p: argparse.ArgumentParser, repeat: bool = False) -> None:
    modes = ["semantic", "keyword", "hybrid"]
    if repeat:
        p.add_argument("--mode", action="append", choices=modes,
                       help="semantic (default), keyword or hybrid; repeat to compare")
    else:
        p.add_argument("--mode", default="semantic", choices=modes,
                       help="semantic (vectors), keyword (BM25 over stemmed words) or hybrid (both)")
    p.add_argument("--fusion", default=DEFAULT_FUSION, choices=["blend", "rrf"],
                   help="hybrid: weighted blend (default) or reciprocal rank fusion")
    p.add_argument("--alpha", type=float, default=DEFAULT_ALPHA,
                   help=f"blend: weight of the cosine, the rest goes to BM25 (default {DEFAULT_ALPHA})")


def _add_threshold(p: argparse.ArgumentParser, op: str) -> None:
    from .analysis import DEFAULT_THRESHOLDS

    p.add_argument("--threshold", type=float,
                   help=f"minimum similarity (default: the collection's calibrated threshold, "
                        f"else {DEFAULT_THRESHOLDS[op]})")


def _add_pair_columns(p: argparse.ArgumentParser) -> None:
    p.add_argument("--text1", help="first text column (name or 1-based position)")
    p.add_argument("--text2", help="second text column")
    p.add_argument("--score", "--label", dest="score", help="score or 0/1 label column (name or position)")
    p.add_argument("--encoding", default="utf-8")


def _add_near_dup_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--skip-near-duplicates", type=float, metavar="T",
                   help="skip incoming texts scoring >= T against the collection or each other")


def _add_output_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit status."""
    args = _parser().parse_args(argv)
    if args.command not in ("serve", "bot"):  # those configure logging for a long run
        _log_warnings(args.command)
    try:
        result = COMMANDS[args.command](args)
        if args.json:
            json.dump(result, sys.stdout, ensure_ascii=False, indent=2)
            sys.stdout.write("\n")
        sys.stdout.flush()  # a closed pipe shows here, not at interpreter exit
    except NeartextError as e:
        if type(e).__name__ == "TrainingInterrupted":
            print(f"neartext {args.command}: interrupted: {e}", file=sys.stderr)
            return 130
        print(f"neartext {args.command}: error: {e}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # the reader went away (`neartext ... | head`): stop quietly
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141  # 128 + SIGPIPE, as a shell reports it
    except KeyboardInterrupt:
        if args.command in ("serve", "bot"):  # Ctrl-C is how a service is stopped
            print(f"neartext {args.command}: stopped", file=sys.stderr)
            return 0
        what = ("no model was written; checkpoints saved so far are kept (--resume)"
                if args.command == "train" else
                "the collection is unchanged (vectors computed so far are kept for the next run)")
        print(f"neartext {args.command}: interrupted; {what}", file=sys.stderr)
        return 130
    return 0


def _log_warnings(command: str) -> None:
    """Warnings the library logs (e.g. an index cache that could not be saved after a committed
    write) go to stderr as one line each."""
    logger = logging.getLogger("neartext")
    if not any(getattr(h, "_neartext_cli", False) for h in logger.handlers):
        h = logging.StreamHandler(sys.stderr)
        h.setFormatter(logging.Formatter(f"neartext {command}: warning: %(message)s"))
        h.setLevel(logging.WARNING)
        h._neartext_cli = True  # type: ignore[attr-defined]
        logger.addHandler(h)


def _progress(args: argparse.Namespace) -> bool:
    return not args.quiet and not args.json and sys.stderr.isatty()


def _cmd_index(args: argparse.Namespace) -> dict[str, Any]:
    from .store.factory import connected

    with connected(args.collection):  # asked whether it exists, then opened or built
        return _index(args)


def _index(args: argparse.Namespace) -> dict[str, Any]:
    from .address import parse_address
    from .cleaning import DEFAULT_JUNK, CleaningOptions
    from .collection import Collection
    from .encoders import EncoderSettings
    from .store.factory import store_exists

    text = _split(args.text)
    path = parse_address(args.collection)
    if store_exists(path):
        _refuse_creation_options(args, path)
        with Collection.open(path, model=args.model) as col:
            report = col.index_file(args.corpus, text, args.id_column, encoding=args.encoding,
                                    sync=True, progress=_progress(args),
                                    skip_near_duplicates=args.skip_near_duplicates)
        return _report(args, report, path)
    settings = EncoderSettings(
        model=args.model or "default", query_prefix=args.query_prefix,
        document_prefix=args.document_prefix, pooling=args.pooling,
        max_seq_length=args.max_seq_length, normalize=not args.no_normalize,
        batch_size=args.batch_size)
    junk = tuple(_split(args.junk) or ()) if args.junk is not None else DEFAULT_JUNK
    cleaning = CleaningOptions(
        enabled=not args.no_clean, drop_duplicates=not args.keep_duplicates, junk_values=junk,
        strip_html=args.strip_html, strip_urls=args.strip_urls,
        collapse_whitespace=args.collapse_whitespace)
    col, report = Collection.from_file(
        path, args.corpus, text, args.id_column, encoding=args.encoding,
        progress=_progress(args), model=settings, chunk=args.chunk, overlap=args.overlap,
        index=args.index, cleaning=cleaning, skip_near_duplicates=args.skip_near_duplicates,
        milvus=_milvus_options(args))
    col.close()
    return _report(args, report, path)


_CREATION_OPTIONS = (
    "query_prefix", "document_prefix", "pooling", "max_seq_length", "no_normalize", "chunk",
    "overlap", "index", "index_param", "search_param", "no_clean", "keep_duplicates", "junk",
    "strip_html", "strip_urls", "collapse_whitespace",
)


def _refuse_creation_options(args: argparse.Namespace, path: Any) -> None:
    defaults = _parser().parse_args(["index", "corpus", "-c", "dir"])
    given = [k for k in _CREATION_OPTIONS if getattr(args, k) != getattr(defaults, k)]
    if given:
        flags = ", ".join("--" + k.replace("_", "-") for k in given)
        raise InputError(
            f"{path}: the collection exists, and {flags} only apply when creating one; "
            "re-indexing keeps its settings (index into a new directory to change them)")


def _cmd_upsert(args: argparse.Namespace) -> dict[str, Any]:
    from .collection import Collection

    with Collection.open(args.collection) as col:
        report = col.index_file(args.corpus, _split(args.text), args.id_column,
                                encoding=args.encoding, progress=_progress(args),
                                skip_near_duplicates=args.skip_near_duplicates)
    return _report(args, report, args.collection)


def _report(args: argparse.Namespace, report: Any, path: Any) -> dict[str, Any]:
    if not args.json:
        print(f"{path}: {report.summary()}")
        for nd in report.near_duplicates[:10]:
            print(f"  skipped {nd['id']}: {nd['score']:.3f} to {nd['duplicate_of']}")
        if len(report.near_duplicates) > 10:
            print(f"  ... and {len(report.near_duplicates) - 10} more (see --json)")
    return {"collection": str(path), **report.to_dict()}


def _cmd_search(args: argparse.Namespace) -> Any:
    from .collection import Collection

    if (args.query is None) == (args.queries_file is None):
        raise InputError("give a query or --queries FILE (one of them)")
    if args.queries_file:
        from .readers import lines, read_text

        qpath = Path(args.queries_file)
        queries = [q.strip() for q in lines(read_text(qpath)) if q.strip()]
        if not queries:
            raise InputError(f"{qpath}: no queries in the file")
    else:
        queries = [args.query]
    with Collection.open(args.collection, model=args.model) as col:
        results = col.search_many(queries, args.k, threshold=args.threshold, where=args.where,
                                  contains=args.contains, mode=args.mode, fusion=args.fusion,
                                  alpha=args.alpha)
    if not args.json:
        for q, rows in zip(queries, results):
            if len(queries) > 1:
                print(f"\n# {q}")
            _print_results(rows)
    dicts = [[r.to_dict() for r in rows] for rows in results]
    if args.queries_file:
        return [{"query": q, "results": d} for q, d in zip(queries, dicts)]
    return dicts[0]


def _print_results(rows: list) -> None:
    if not rows:
        print("no results (nothing matched the filters or passed the threshold)")
    for i, r in enumerate(rows, 1):
        text = " ".join((r.passage or r.text).split())
        print(f"{i:>2}. {r.score:.3f}  {r.id}  {text}")
        meta = "  ".join(f"{k}={v}" for k, v in r.metadata.items() if v is not None)
        if meta:
            print(f"    {meta}")


def _cmd_mine(args: argparse.Namespace) -> dict[str, Any]:
    from .collection import Collection
    from .tables import check_output_path, write_table

    if args.output:
        check_output_path(args.output)
    with Collection.open(args.collection) as col:
        res = col.mine(args.threshold, args.top_k, max_pairs=args.max_pairs, method=args.method,
                       verify=args.verify, nprobe=args.nprobe, progress=_progress(args))
    if args.output:
        write_table(args.output, res.pairs, ["id1", "id2", "score", "text1", "text2"])
    if not args.json:
        if not args.output:
            for p in res.pairs[:20]:
                print(f"{p['score']:.3f}  {p['id1']}  {_one_line(p['text1'])}\n"
                      f"       {p['id2']}  {_one_line(p['text2'])}")
            if len(res.pairs) > 20:
                print(f"... {len(res.pairs) - 20} more pairs (use -o FILE to write them all)")
        print(res.summary() + (f"; written to {args.output}" if args.output else ""),
              file=sys.stderr)
    return res.to_dict()


def _cmd_paraphrases(args: argparse.Namespace) -> Any:
    from .collection import Collection
    from .tables import check_output_path, write_table

    if args.output:
        check_output_path(args.output)
    with Collection.open(args.collection) as col:
        results, notice = col.paraphrases(args.text, args.threshold, args.top_k)
    rows = [r.to_dict() for r in results]
    if args.output:
        write_table(args.output, rows, ["id", "score", "text", "metadata"])
    if notice:
        print(f"neartext paraphrases: {notice}", file=sys.stderr)
    if results and not args.json and not args.output:
        _print_results(results)
    return {"paraphrases": rows, "notice": notice}


def _cluster(col: Any, args: argparse.Namespace, central: int = 3) -> Any:
    return col.cluster(args.method, threshold=args.threshold, min_size=args.min_size, k=args.k,
                       seed=args.seed, central=central, progress=_progress(args))


def _cmd_cluster(args: argparse.Namespace) -> dict[str, Any]:
    from .collection import Collection
    from .tables import check_output_path, write_table

    if args.output:
        check_output_path(args.output)
    with Collection.open(args.collection) as col:
        res = _cluster(col, args, args.central)
        if args.output:
            texts = {d.id: d.text for d in col.get(res.ids)}
            write_table(args.output, res.rows(texts), ["id", "cluster", "label", "text"])
    if not args.json:
        print(res.summary())
        if args.output:
            print(f"wrote {len(res.ids)} rows to {args.output}", file=sys.stderr)
    return res.to_dict()


def _cmd_map(args: argparse.Namespace) -> dict[str, Any]:
    from .collection import Collection
    from .maps import MAP_FORMATS, draw, project

    out = Path(args.output)
    if out.suffix.lower() not in MAP_FORMATS or not out.parent.is_dir():
        raise InputError(f"{out}: give a .png or .html file in an existing folder")
    with Collection.open(args.collection) as col:
        if args.color_by and args.color_by != "cluster" and args.color_by not in \
                col.store.metadata_fields():
            known = ", ".join(sorted(col.store.metadata_fields())) or "none"
            raise InputError(f"unknown metadata column '{args.color_by}' for --color-by; "
                             f"columns: {known} (or 'cluster')")
        proj = project(col, sample=args.sample, seed=args.seed, progress=_progress(args))
        clusters = _cluster(col, args) if args.color_by == "cluster" else None
        draw(col, proj, out, color_by=args.color_by, clusters=clusters, query=args.query)
    if not args.json:
        how = "from the cache" if proj.cached else f"in {proj.seconds:.1f} s"
        print(f"wrote {out}: {len(proj.ids)} documents (projection {how})")
    return {"output": str(out), "documents": len(proj.ids), "cached": proj.cached,
            "projection_seconds": proj.seconds}


def _cmd_dedup(args: argparse.Namespace) -> dict[str, Any]:
    from .analysis import write_clean
    from .collection import Collection
    from .tables import check_output_path, write_table

    for out in (args.output, args.write_clean):
        if out:
            check_output_path(out)
    with Collection.open(args.collection) as col:
        res = col.dedup(args.threshold, method=args.method, representative=args.representative,
                        top_k=args.top_k, progress=_progress(args))
        if args.write_clean:
            kept, mapping = write_clean(col, res, args.write_clean)
            if not args.json:
                print(f"wrote {kept} rows to {args.write_clean} and the id mapping to {mapping}",
                      file=sys.stderr)
    if args.output:
        write_table(args.output, res.member_rows(), ["group", "id", "representative", "score", "text"])
    if not args.json:
        if not args.output:
            for g in res.groups[:10]:
                print(f"group {g['group']} ({len(g['members'])}):")
                for m in g["members"]:
                    mark = "*" if m["id"] == g["representative"] else " "
                    print(f"  {mark} {m['score']:.3f}  {m['id']}  {_one_line(m['text'])}")
            if len(res.groups) > 10:
                print(f"... {len(res.groups) - 10} more groups (use -o FILE to write them all)")
        print(res.summary(), file=sys.stderr)
    return res.to_dict()


def _one_line(text: str, width: int = 100) -> str:
    t = " ".join(text.split())
    return t if len(t) <= width else t[: width - 1] + "…"


def _cmd_eval(args: argparse.Namespace) -> dict[str, Any]:
    from .evaluate import evaluate_pairs, evaluate_retrieval_modes, evaluate_sts, load_pairs, pair_scores
    from .tables import check_output_path

    if args.eval_kind == "collection":
        return _eval_collection(args)
    models = args.model or ["default"]
    results: dict[str, dict[str, float]] = {}
    if args.eval_kind == "retrieval":
        data = _retrieval_data(args)
        modes = args.mode or ["semantic"]
        columns = []
        for m in models:
            by_mode = evaluate_retrieval_modes(m, data, modes, fusion=args.fusion, alpha=args.alpha)
            for mode in modes:
                col = m if len(modes) == 1 else f"{m} [{mode}]"
                results[col] = by_mode[mode]
                columns.append(col)
        models = columns
        heading = f"{data.source}: {len(data.qrels)} queries, {len(data.corpus)} documents"
        summary: dict[str, Any] = {"file": data.source, "queries": len(data.qrels),
                                   "documents": len(data.corpus)}
    else:
        pairs = load_pairs(args.file, args.text1, args.text2, args.score, encoding=args.encoding)
        plot = getattr(args, "plot", None)
        if plot:
            check_output_path(plot, (".png",))
        panels = {}
        for m in models:
            if args.eval_kind == "sts":
                results[m] = evaluate_sts(m, pairs)
                continue
            scores = pair_scores(m, pairs)
            results[m] = evaluate_pairs(m, pairs, args.min_precision, scores=scores)
            panels[m] = (scores, pairs.value.astype(int), results[m]["best_f1_threshold"])
        if plot:
            from .plots import pair_histogram

            pair_histogram(plot, panels, title=Path(pairs.source).name)
            if not args.json:
                print(f"histogram written to {plot}", file=sys.stderr)
        heading = f"{pairs.source}: {len(pairs.value)} pairs; columns {', '.join(pairs.columns)}"
        summary = {"file": pairs.source, "pairs": len(pairs.value), "columns": list(pairs.columns)}
    if not args.json:
        print(heading)
        width = max(len(k) for r in results.values() for k in r)
        print(" " * width + "".join(f"  {m[-24:]:>24}" for m in models))
        for key in next(iter(results.values())):
            print(f"{key:<{width}}" + "".join(f"  {results[m].get(key, float('nan')):>24.4f}"
                                             for m in models))
    return {**summary, "results": results}


def _eval_collection(args: argparse.Namespace) -> dict[str, Any]:
    from .collection import Collection
    from .evaluate import evaluate_collection

    with Collection.open(args.collection) as col:
        res = evaluate_collection(col, args.pairs, args.query, args.passage, args.gold_id,
                                  encoding=args.encoding, mode=args.mode, fusion=args.fusion,
                                  alpha=args.alpha)
        model = col.manifest.model.name
    if not args.json:
        skipped = f" ({res['skipped']} skipped: passage not in the collection)" if res["skipped"] else ""
        print(f"{args.collection} ({model}, {args.mode}): {res['queries']} queries from "
              f"{args.pairs}{skipped}")
        for k, v in res.items():
            if k not in ("queries", "skipped"):
                print(f"{k:<10} {v:.4f}")
    return {"collection": args.collection, "model": model, "mode": args.mode, "file": args.pairs,
            **res}


def _cmd_reindex(args: argparse.Namespace) -> dict[str, Any]:
    from .encoders import EncoderSettings
    from .reindex import reindex

    settings: Any = args.model
    if any(v is not None for v in (args.query_prefix, args.document_prefix, args.pooling,
                                   args.max_seq_length)):
        settings = EncoderSettings(model=args.model, query_prefix=args.query_prefix,
                                   document_prefix=args.document_prefix, pooling=args.pooling,
                                   max_seq_length=args.max_seq_length)
    report = reindex(args.collection, settings, progress=_progress(args), keep_previous=args.keep_previous)
    if not args.json:
        print(report.summary())
        for note in report.notes:
            print(f"  note: {note}")
    return report.to_dict()


def _retrieval_data(args: argparse.Namespace) -> Any:
    from .evaluate import load_beir, load_retrieval_pairs

    beir = (args.corpus, args.queries, args.qrels)
    if args.pairs and not any(beir):
        return load_retrieval_pairs(args.pairs, args.query, args.passage, encoding=args.encoding)
    if all(beir) and not args.pairs:
        return load_beir(*beir)
    raise InputError("give --pairs FILE, or all of --corpus, --queries and --qrels (BEIR layout)")


def _cmd_train(args: argparse.Namespace) -> dict[str, Any]:
    from .training import TrainConfig, train

    config = TrainConfig(
        output=args.output, base=args.base, loss=args.loss, epochs=args.epochs,
        learning_rate=args.learning_rate, warmup_ratio=args.warmup, batch_size=args.batch_size,
        mini_batch_size=args.mini_batch_size, max_seq_length=args.max_seq_length, seed=args.seed,
        eval_file=args.eval_file, eval_split=args.eval_split, balance=args.balance,
        mine_hard_negatives=args.mine_hard_negatives, save_steps=args.save_steps,
        memory_budget_gb=args.memory_budget, anchor=args.anchor, positive=args.positive,
        negative=args.negative, score=args.score, encoding=args.encoding)
    result = train(args.file, config, progress=_progress(args), resume=args.resume,
                   overwrite=args.overwrite)
    if not args.json:
        print(result.summary())
        for note in result.notes:
            print(f"  note: {note}")
    return {"output": str(result.output), **result.metrics}


def _cmd_calibrate(args: argparse.Namespace) -> dict[str, Any]:
    from .collection import Collection
    from .evaluate import load_pairs

    data = load_pairs(args.pairs, args.text1, args.text2, args.score, encoding=args.encoding)
    with Collection.open(args.collection) as col:
        cal = col.calibrate(data, min_precision=args.min_precision)
    if not args.json:
        print(f"{args.collection}: threshold {cal['threshold']:.4f} ({cal['rule']}): precision "
              f"{cal['precision']:.3f}, recall {cal['recall']:.3f} on {cal['pairs']} pairs; "
              "stored: mine, paraphrases and dedup now use it by default")
    return cal


def _cmd_delete(args: argparse.Namespace) -> dict[str, Any]:
    from .collection import Collection

    with Collection.open(args.collection) as col:
        removed = col.delete(args.ids)
        left = len(col)
    if not args.json:
        print(f"{args.collection}: {removed} removed, {len(args.ids) - removed} not found, "
              f"{left} documents left")
    return {"collection": args.collection, "removed": removed,
            "not_found": len(args.ids) - removed, "documents": left}


def _cmd_migrate(args: argparse.Namespace) -> dict[str, Any]:
    from .migrate import migrate

    report = migrate(args.source, args.destination, index=args.index,
                     milvus=_milvus_options(args), progress=_progress(args))
    if not args.json:
        print(report.summary())
    return report.to_dict()


def _cmd_info(args: argparse.Namespace) -> dict[str, Any]:
    from .collection import Collection

    with Collection.open(args.collection) as col:
        info = col.info()
    if not args.json:
        width = max(len(k) for k in info)
        for k, v in info.items():
            print(f"{k:<{width}}  {json.dumps(v, ensure_ascii=False) if isinstance(v, (dict, list)) else v}")
    return info


def _cmd_repair(args: argparse.Namespace) -> dict[str, Any]:
    from .collection import Collection

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


def _at_least_one(*options: tuple[str, int]) -> None:
    for name, value in options:
        if value < 1:
            raise InputError(f"{name} must be at least 1")


def _api_key(given: str | None, key_file: str | None) -> str | None:
    """The key from --api-key (with a warning: other users see it in ``ps``) or --api-key-file;
    None lets the environment variable decide."""
    if given is not None and key_file is not None:
        raise InputError("give --api-key or --api-key-file, not both")
    if given is not None:
        print("warning: --api-key is visible to other users of this machine in the process "
              "list; prefer NEARTEXT_API_KEY or --api-key-file", file=sys.stderr)
        return given
    if key_file is not None:
        from .readers import read_text

        key = read_text(key_file).strip()
        if not key or "\n" in key:
            raise InputError(f"{key_file}: expected one line holding the API key")
        return key
    return None


def _cmd_serve(args: argparse.Namespace) -> dict[str, Any]:
    try:
        import fastapi  # noqa: F401
        import uvicorn  # noqa: F401

        from .serve import ServeSettings, run
    except ImportError as e:
        raise MissingExtra(e.name or "fastapi", "serve") from None
    if not 0 < args.port < 65536:
        raise InputError(f"--port {args.port}: give a port between 1 and 65535")
    api_key = _api_key(args.api_key, args.api_key_file)
    _at_least_one(("--max-results", args.max_results),
                  ("--max-texts", args.max_texts), ("--max-k", args.max_k),
                  ("--max-batch", args.max_batch), ("--max-body-bytes", args.max_body_bytes),
                  ("--max-text-chars", args.max_text_chars), ("--forward-batch", args.forward_batch))
    settings = ServeSettings.from_args(
        args.collections, api_key=api_key, model=args.model, max_results=args.max_results,
        max_body_bytes=args.max_body_bytes, max_texts=args.max_texts,
        max_text_chars=args.max_text_chars, max_k=args.max_k, max_batch=args.max_batch,
        max_wait_ms=args.max_wait_ms, forward_batch=args.forward_batch)
    names = ", ".join(settings.collections) or "no collections"
    auth = "API key required" if settings.api_key else "no API key"

    def ready(url: str) -> None:
        print(f"neartext serving {names} at {url}  (web UI: {url}/, API docs: {url}/docs; {auth}; "
              "Ctrl-C stops)", flush=True)
        if args.host not in ("127.0.0.1", "localhost", "::1") and not settings.api_key:
            print("warning: reachable from other machines without an API key "
                  "(set NEARTEXT_API_KEY)", file=sys.stderr, flush=True)

    print(f"loading {names} ...", file=sys.stderr, flush=True)
    run(settings, host=args.host, port=args.port, on_ready=ready)
    return {}


def _cmd_bench_encoders(args: argparse.Namespace) -> dict[str, Any]:
    import tempfile

    from .backends import compare_backends
    from .evaluate import load_pairs, load_retrieval_pairs

    if (args.sts is None) == (args.pairs is None):
        raise InputError("give --sts FILE or --pairs FILE (one of them)")
    _at_least_one(("--rounds", args.rounds))
    sts = load_pairs(args.sts) if args.sts else None
    retrieval = load_retrieval_pairs(args.pairs) if args.pairs else None
    with tempfile.TemporaryDirectory(prefix="neartext-backends-") as tmp:
        work = Path(args.keep) if args.keep else Path(tmp)
        res = compare_backends(args.model, work=work, sts=sts, retrieval=retrieval,
                               tolerance=args.tolerance, rounds=args.rounds)
    if not args.json:
        print(f"{res['model']}: {res['metric']} and speed on {res['texts']} texts")
        print(f"{'backend':<10} {'quality':>8} {'lost':>6} {'texts/s':>10} {'speed':>7}")
        for name, r in res["results"].items():
            print(f"{name:<10} {r['quality']:>8.2f} {r['lost_points']:>6.2f} {r['texts_per_s']:>10.0f} "
                  f"{r['speed_vs_torch']:>6.2f}x")
        best = res["recommended"]
        where = f" ({res['paths'][best]})" if args.keep and best != "torch" else ""
        print(f"recommended: {best}{where} — the fastest within {args.tolerance:g} "
              "points of torch")
    return res


def _cmd_distill(args: argparse.Namespace) -> dict[str, Any]:
    from .encoders.static import distill_model

    if args.pca_dims < 0:
        raise InputError("--pca-dims must be 0 (keep all) or more")
    res = distill_model(args.model, args.output, pca_dims=args.pca_dims or None, force=args.force)
    if not args.json:
        print(f"wrote a static model to {res['output']}: {res['vocabulary']} tokens x {res['dim']} "
              f"dimensions, from {res['base']}; use it with --model {res['output']}")
    return res


def _cmd_export(args: argparse.Namespace) -> dict[str, Any]:
    if args.export_kind == "onnx":
        from .export.onnx import export_onnx

        res = export_onnx(args.model, args.output, quantize=args.quantize, force=args.force)
        if not args.json:
            for kind, p in res["parity"].items():
                print(f"{kind}: cosine with the torch model: min {p['min_cosine']:.5f}, mean "
                      f"{p['mean_cosine']:.5f}", file=sys.stderr)
            for w in res["warnings"]:
                print(f"warning: {w}", file=sys.stderr)
            print(f"exported {res['base']} to {res['output']}; use it with --model {res['output']}")
        return res
    from .export.mlflow_model import export_mlflow

    res = export_mlflow(args.collection, args.output, log=args.log, force=args.force)
    if not args.json:
        where = res.get("model_uri") or res["output"]
        print(f"exported {args.collection} ({res['documents']} documents, {res['model']}) as an "
              f"MLflow model: {where}")
        if not res.get("logged"):
            print(f"serve it: mlflow models serve -m {where} --env-manager local -p 5001",
                  file=sys.stderr)
    return res


def _cmd_bot(args: argparse.Namespace) -> dict[str, Any]:
    import asyncio
    import os

    try:
        import aiogram  # noqa: F401

        from .bot import BotSettings, LocalBackend, ServiceBackend, run_polling, run_webhook
    except ImportError as e:
        raise MissingExtra(e.name or "aiogram", "bot") from None
    token = os.environ.get("TELEGRAM_BOT_TOKEN", "").strip()
    if not token:
        raise InputError("set TELEGRAM_BOT_TOKEN to the token @BotFather gave you")
    if (args.collection is None) == (args.url is None):
        raise InputError("give a collection directory or --url of a running service (one of them)")
    _at_least_one(("-k", args.k), ("--per-minute", args.per_minute), ("--max-chars", args.max_chars))
    texts = {}
    for name in ("start", "help", "nothing"):
        value = getattr(args, f"{name}_text")
        if value and value.startswith("@"):
            path = Path(value[1:])
            if not path.is_file():
                raise InputError(f"{path}: no such file (--{name}-text)")
            value = path.read_text(encoding="utf-8").strip()
        if value:
            texts[f"{name}_text"] = value
    show = [f.strip() for f in args.show.split(",") if f.strip()]
    backend: Any
    if args.url:
        backend = ServiceBackend(args.url, _api_key(args.api_key, None)
                                 or os.environ.get("NEARTEXT_API_KEY"))
    else:
        backend = LocalBackend(args.collection)
        known = backend.collection.store.metadata_fields()
        for f in [*show, *([args.photo_column] if args.photo_column else [])]:
            if f != "text" and f not in known:
                raise InputError(f"unknown field '{f}' for --show/--photo-column; fields: text, "
                                 f"{', '.join(sorted(known))}")
    settings = BotSettings(k=args.k, show=show, threshold=args.threshold,
                           photo_column=args.photo_column, per_minute=args.per_minute,
                           max_chars=args.max_chars, **texts)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    how = f"webhook {args.webhook}" if args.webhook else "long polling"
    print(f"neartext bot answering from {backend.name} ({how}); Ctrl-C stops", file=sys.stderr,
          flush=True)
    try:
        if args.webhook:
            run_webhook(backend, settings, token, args.webhook, host=args.host, port=args.port,
                        secret=args.secret, api_server=args.api_server)
        else:
            asyncio.run(run_polling(backend, settings, token, args.api_server))
    finally:
        backend.close()
    return {}


def _cmd_feedback(args: argparse.Namespace) -> Any:
    from .collection import Collection
    from .feedback import FeedbackStore, export_feedback

    with Collection.open(args.collection) as col:
        if args.feedback_kind == "export":
            report = export_feedback(col, args.output)
            if not args.json:
                print(report.summary())
            return vars(report)
        rows = FeedbackStore(col.path).list(args.limit)
    if not args.json:
        for r in rows:
            print(f"{r['created']}  {'👍' if r['relevant'] else '👎'}  {r['doc_id']}  {r['query']}")
        if not rows:
            print(f"{args.collection}: no feedback stored")
    return rows


def _split(value: str | None) -> list[str] | None:
    if value is None:
        return None
    return [v.strip() for v in value.split(",") if v.strip()]


COMMANDS = {"index": _cmd_index, "upsert": _cmd_upsert, "search": _cmd_search,
            "mine": _cmd_mine, "paraphrases": _cmd_paraphrases, "dedup": _cmd_dedup,
            "cluster": _cmd_cluster, "map": _cmd_map,
            "eval": _cmd_eval, "train": _cmd_train, "reindex": _cmd_reindex, "calibrate": _cmd_calibrate,
            "serve": _cmd_serve, "feedback": _cmd_feedback, "bot": _cmd_bot,
            "export": _cmd_export, "distill": _cmd_distill, "bench-encoders": _cmd_bench_encoders,
            "delete": _cmd_delete, "info": _cmd_info, "migrate": _cmd_migrate,
            "repair": _cmd_repair}
