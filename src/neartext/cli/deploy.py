"""``neartext`` commands: serving, exporting and the Telegram bot; ratings."""

from __future__ import annotations

import argparse
from typing import Any

from neartext.cli.common import add_output_options, finite_float
from neartext.collection import Collection
from neartext.engine.feedback import FeedbackStore, export_feedback
from neartext.ops.vectors import export_vectors
from neartext.serve.settings import ServeSettings as SS  # light: no FastAPI import


def register(sub: Any) -> None:
    """Add the serve, export, distill, bot, feedback commands to ``sub``."""
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

    g = p.add_argument_group("limits and batching")
    g.add_argument("--max-body-bytes", type=int, default=SS.max_body_bytes)
    g.add_argument("--max-texts", type=int, default=SS.max_texts, help="texts per request")
    g.add_argument("--max-text-chars", type=int, default=SS.max_text_chars)
    g.add_argument("--max-k", type=int, default=SS.max_k)
    g.add_argument("--max-results", type=int, default=SS.max_results,
                   help="queries x k per search request")
    g.add_argument("--max-batch", type=int, default=SS.max_batch,
                   help="texts encoded together from concurrent requests (1: no micro-batching)")
    g.add_argument("--max-batch-tokens", type=int, default=SS.max_batch_tokens,
                   help="work encoded together, in tokens estimated from the characters: a "
                        "request costing more runs in turns, other clients' requests between")
    g.add_argument("--max-wait-ms", type=finite_float, default=SS.max_wait_ms,
                   help="how long a batch waits for more requests")
    g.add_argument("--forward-batch", type=int, default=SS.forward_batch,
                   help="texts per forward pass within a batch (small passes pad less)")
    p.add_argument("--improve-every", type=int, metavar="N",
                   help="run 'neartext improve' on a collection by itself after every N new "
                        "ratings, in the background (promoted only if held-out MRR@10 gains)")
    p.set_defaults(handler="neartext.cli.extras.serve:run", extra="serve", json=False, quiet=False)

    p = sub.add_parser("export", help="deployable forms: an MLflow model of a collection, an ONNX model")
    ex = p.add_subparsers(dest="export_kind", required=True, metavar="FORMAT")
    q = ex.add_parser("mlflow", help="an MLflow pyfunc model: the encoder plus the stored vectors")
    q.add_argument("collection")
    q.add_argument("-o", "--output", help="directory to save the model in")
    q.add_argument("--log", action="store_true",
                   help="log it to MLflow's tracking store instead (MLFLOW_TRACKING_URI, else MLflow's "
                        "default)")
    q.add_argument("--mode", choices=["search", "paraphrases"], default="search",
                   help="the model's default mode: search (the best documents; a query that is in "
                        "the corpus comes first) or paraphrases (other texts meaning the same, the "
                        "query and its copies left out); callers can still pass params.mode")
    q.add_argument("--force", action="store_true", help="replace an existing output directory")
    add_output_options(q)
    q.set_defaults(handler="neartext.cli.extras.mlflow:run", extra="mlflow")
    q = ex.add_parser("vectors", help="a collection's vectors as Parquet: id, start, end, hash, "
                                      "vector; the model in the file's metadata")
    q.add_argument("collection")
    q.add_argument("-o", "--output", required=True, help="the .parquet file to write")
    add_output_options(q)
    q.set_defaults(handler=_cmd_export_vectors)
    q = ex.add_parser("onnx", help="an ONNX model (pooling inside) + tokenizer, run without torch")
    q.add_argument("--model", default="default", help="the model to export: name or local path")
    q.add_argument("-o", "--output", required=True, help="directory to write")
    q.add_argument("--quantize", choices=["int8"], help="also write an int8 model and use it")
    q.add_argument("--force", action="store_true", help="replace an existing output directory")
    add_output_options(q)
    q.set_defaults(handler="neartext.cli.extras.onnx:run", extra="onnx")

    p = sub.add_parser("distill", help="a static (model2vec) model from a sentence-transformers model")
    p.add_argument("--model", default="default", help="the model to distill: name or local path")
    p.add_argument("-o", "--output", required=True, help="directory for the static model")
    p.add_argument("--pca-dims", type=int, default=256,
                   help="dimensions kept by PCA (default 256; 0 keeps the model's)")
    p.add_argument("--force", action="store_true", help="replace an existing output directory")
    add_output_options(p)
    p.set_defaults(handler="neartext.cli.extras.distill:run", extra="static")

    p = sub.add_parser(
        "bot", help="a Telegram bot answering with the top-k results, 👍/👎 stored",
        description="A Telegram bot answering each message with the top-k results of a "
                    "collection (or of a running service, --url); 👍/👎 buttons store ratings. "
                    "The bot's token is read from the environment variable TELEGRAM_BOT_TOKEN "
                    "(the token @BotFather gives you), never from the command line.")
    p.add_argument("collection", nargs="?", help="collection directory (or use --url)")
    p.add_argument("--url", help="a running service's collection, e.g. http://127.0.0.1:8000/collections/memes")
    p.add_argument("--api-key", help="the service's API key (default: NEARTEXT_API_KEY; on the "
                                     "command line it is visible in the process list)")
    p.add_argument("-k", type=int, default=5, help="answers per question (5)")
    p.add_argument("--show", default="text",
                   help="fields in an answer, comma-separated: text and/or metadata columns")
    p.add_argument("--photo-column", help="metadata column holding an image URL: answers are photos")
    p.add_argument("--threshold", type=finite_float, help="minimum score of an answer")
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
    p.set_defaults(handler="neartext.cli.extras.bot:run", extra="bot", json=False, quiet=False)

    p = sub.add_parser("feedback", help="ratings stored by the service")
    fb = p.add_subparsers(dest="feedback_kind", required=True, metavar="ACTION")
    q = fb.add_parser("export", help="write ratings as training data for 'neartext train'")
    q.add_argument("collection")
    q.add_argument("-o", "--output", required=True, help=".csv or .tsv to write")
    add_output_options(q)
    q = fb.add_parser("list", help="the stored ratings, newest first")
    q.add_argument("collection")
    q.add_argument("-n", "--limit", type=int, default=50)
    add_output_options(q)
    p.set_defaults(handler=_cmd_feedback)


def _cmd_feedback(args: argparse.Namespace) -> Any:

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


def _cmd_export_vectors(args: argparse.Namespace) -> dict[str, Any]:
    with Collection.open(args.collection) as col:
        rows = export_vectors(col, args.output)
        model = col.manifest.model
    if not args.json:
        print(f"wrote {rows} vectors of {args.collection} ({model.name}, fingerprint "
              f"{model.fingerprint[:12]}) to {args.output}")
    return {"output": args.output, "vectors": rows, "model": model.name,
            "fingerprint": model.fingerprint}
