"""``neartext`` commands: measuring models and collections, training, thresholds."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

from neartext.algo.adapters import KIND_HELP as ADAPTER_KIND_HELP
from neartext.algo.adapters import KINDS as ADAPTER_KINDS
from neartext.algo.adapters import SIDES as ADAPTER_SIDES
from neartext.cli.common import (
    add_mode_options,
    add_output_options,
    add_pair_columns,
    at_least_one,
    choices_help,
    finite_float,
    show_progress,
)
from neartext.collection import Collection
from neartext.data.evaldata import load_beir, load_pairs, load_retrieval_pairs, with_distractors
from neartext.data.ranking import DEFAULT_MODE, Ranking
from neartext.engine.modeleval import evaluate_pairs, evaluate_sts, pair_scores
from neartext.errors import InputError
from neartext.ops.evaluation import (
    distractor_texts,
    evaluate_collection,
    evaluate_retrieval_modes,
    model_with_adapter,
    retrieval_warnings,
)
from neartext.ops.improve import improve
from neartext.ops.plots import pair_histogram
from neartext.ops.tune import DEFAULT_MARGIN, tune
from neartext.ops.versions import list_versions, rollback, version_view
from neartext.training.losses import LOSSES
from neartext.util.tables import check_output_path


def register(sub: Any) -> None:
    """Add the eval, train, calibrate, tune, improve, versions, rollback, bench-encoders
    commands."""
    p = sub.add_parser("eval", help="evaluate models on labeled pairs (a column per model)")
    ev = p.add_subparsers(dest="eval_kind", required=True, metavar="KIND")
    for kind, what in (("sts", "Spearman/Pearson x100 against similarity scores"),
                       ("pairs", "average precision, best-F1 and best-accuracy thresholds "
                                 "on 0/1 labeled pairs")):
        q = ev.add_parser(kind, help=what)
        q.add_argument("file", help="CSV/TSV/JSONL with two texts and a score or label")
        q.add_argument("--model", action="append", default=[],
                       help="model name or path (repeat to compare; default: default)")
        add_pair_columns(q)
        if kind == "pairs":
            q.add_argument("--min-precision", type=finite_float,
                           help="also report the lowest threshold with at least this precision")
            q.add_argument("--plot", metavar="PNG",
                           help="write a histogram of both classes' scores with the best-F1 threshold")
        add_output_options(q)

    q = ev.add_parser("retrieval", help="MRR@10, nDCG@10, Recall@1/5/10, MAP@100")
    q.add_argument("--pairs", help="(query, passage) rows: each query's gold is its passage")
    q.add_argument("--query", help="query column of --pairs (name or position)")
    q.add_argument("--passage", help="passage column of --pairs")
    q.add_argument("--corpus", help="BEIR corpus.jsonl (with --queries, --qrels); with --pairs, "
                                    "a collection or corpus file whose texts each query is also "
                                    "ranked against")
    q.add_argument("--queries", help="BEIR queries.jsonl")
    q.add_argument("--qrels", help="BEIR qrels TSV (query-id, corpus-id, score)")
    q.add_argument("--model", action="append", default=[],
                   help="model (repeat to compare); MODEL+ADAPTER.npz adds a query adapter, "
                        "COLLECTION@v2 is a collection's model with that version's adapter")
    add_mode_options(q, repeat=True)
    q.add_argument("--encoding", default="utf-8")
    add_output_options(q)

    q = ev.add_parser("collection", help="retrieval metrics of an existing collection for held-out queries")
    q.add_argument("collection")
    q.add_argument("--pairs", required=True,
                   help="(query, passage) rows; each passage must be a document of the collection")
    q.add_argument("--query", help="query column (name or position)")
    q.add_argument("--passage", help="passage column: a document's text or id")
    q.add_argument("--gold-id", help="or: the column of the gold document's id (ids only)")
    q.add_argument("--model", action="append", default=[], metavar="VERSION",
                   help="rank as this version: a number (v2), 'current', 'base' (no adapter) or "
                        "an adapter file (.npz); repeat to compare side by side (default: current)")
    add_mode_options(q)
    q.add_argument("--encoding", default="utf-8")
    add_output_options(q)
    p.set_defaults(handler=_cmd_eval)

    p = sub.add_parser("train", help="fine-tune a model on your pairs (format and loss detected)")
    p.add_argument("file", help="CSV/TSV/JSONL: (anchor, positive[, negative]) or two texts + score/label")
    p.add_argument("-o", "--output", required=True, help="directory for the trained model")
    p.add_argument("--base", default="default", help="model to start from: name or path (default: default)")
    p.add_argument("--loss", choices=list(LOSSES),
                   help="override the loss chosen from the data format: " + "; ".join(
                       f"{name} ({', '.join(formats)})" for name, formats in LOSSES.items()))
    p.add_argument("--epochs", type=finite_float, default=1.0, help="passes over the data (default 1)")
    p.add_argument("--lr", "--learning-rate", dest="learning_rate", type=finite_float, default=2e-5,
                   help="peak learning rate (default 2e-5)")
    p.add_argument("--warmup", type=finite_float, default=0.1, help="fraction of steps warming up (0.1)")
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
    g.add_argument("--eval-split", type=finite_float,
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
    g.add_argument("--memory-budget", type=finite_float, metavar="GB",
                   help="memory a training step may add: with pairs/triplets a step over it uses "
                        "the gradient cache (default 2); --batch-size auto: the search's budget "
                        "(default: half of what is free)")
    g.add_argument("--resume", action="store_true", help="continue an interrupted run of this output")
    g.add_argument("--overwrite", action="store_true", help="replace an existing output directory")
    add_output_options(p)
    p.set_defaults(handler="neartext.cli.extras.train:run", extra="train")

    p = sub.add_parser("calibrate", help="pick a similarity threshold from labeled pairs and "
                                         "store it in the collection")
    p.add_argument("collection")
    p.add_argument("--pairs", required=True, help="two texts + 0/1 label per row")
    p.add_argument("--min-precision", type=finite_float,
                   help="choose the threshold with most recall at this precision "
                        "(default: best F1)")
    add_pair_columns(p)
    add_output_options(p)
    p.set_defaults(handler=_cmd_calibrate)

    p = sub.add_parser("tune", help="learn a query adapter from pairs and/or users' ratings; "
                                    "promoted as a new version only if held-out MRR@10 improves")
    _tune_options(p)
    p.add_argument("--feedback", action="store_true",
                   help="also learn from the collection's ratings (👍 relevant, 👎 hard negative)")
    p.set_defaults(handler=_cmd_tune)

    p = sub.add_parser("improve", help="when new ratings came in since the current version: "
                                       "tune on all ratings (and --pairs), promote only a gain")
    _tune_options(p)
    p.add_argument("--min-new", type=int, default=1,
                   help="new ratings needed to try (default 1)")
    p.add_argument("--full", action="store_true",
                   help="fine-tune the collection's model (sentence-transformers; at least 200 "
                        "pairs) and re-embed the documents as the new version, instead of an "
                        "adapter; promoted only on a held-out gain")
    p.add_argument("--epochs", type=finite_float, default=1.0, help="--full: training epochs (1)")
    p.set_defaults(handler=_cmd_improve)

    p = sub.add_parser("versions", help="a collection's versions (model, adapter, metrics)")
    p.add_argument("collection")
    add_output_options(p)
    p.set_defaults(handler=_cmd_versions)

    p = sub.add_parser("rollback", help="go back to an earlier version (default: the previous)")
    p.add_argument("collection")
    p.add_argument("--to", type=int, help="the version to go back to")
    add_output_options(p)
    p.set_defaults(handler=_cmd_rollback)

    p = sub.add_parser("bench-encoders",
                       help="torch vs ONNX fp32/int8 vs static on your data; recommends one")
    p.add_argument("--model", default="default", help="a sentence-transformers model: name or path")
    p.add_argument("--sts", help="pairs with a similarity score to measure quality (Spearman)")
    p.add_argument("--pairs", help="(query, passage) rows to measure retrieval MRR@10 instead")
    p.add_argument("--tolerance", type=finite_float, default=1.0,
                   help="points of quality a faster backend may lose (default 1)")
    p.add_argument("--keep", metavar="DIR", help="keep the built backends here (default: a temp dir)")
    p.add_argument("--rounds", type=int, default=2, help="timing rounds per backend (2)")
    add_output_options(p)
    p.set_defaults(handler="neartext.cli.extras.bench:run", extra="onnx,static")


def _cmd_eval(args: argparse.Namespace) -> dict[str, Any]:

    if args.eval_kind == "collection":
        return _eval_collection(args)
    models = args.model or ["default"]
    results: dict[str, dict[str, float]] = {}
    if args.eval_kind == "retrieval":
        data = _retrieval_data(args)
        modes = args.mode or [DEFAULT_MODE]
        columns = []
        for m in models:
            model, adapter = model_with_adapter(m)
            by_mode = evaluate_retrieval_modes(model, data, modes, fusion=args.fusion,
                                               alpha=args.alpha, adapter=adapter)
            for mode in modes:
                col = m if len(modes) == 1 else f"{m} [{mode}]"
                results[col] = by_mode[mode]
                columns.append(col)
        models = columns
        heading = (f"{data.source}: {len(data.qrels)} queries, each ranked against "
                   f"{len(data.corpus)} documents")
        warnings = retrieval_warnings(data, results)
        for w in warnings:
            logging.getLogger("neartext").warning(w)
        summary: dict[str, Any] = {"file": data.source, "queries": len(data.qrels),
                                   "documents": len(data.corpus), "warnings": warnings}
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

    with Collection.open(args.collection) as col:
        views = [version_view(col, spec) for spec in args.model or ["current"]]
        by_label = {label: evaluate_collection(
            col, args.pairs, args.query, args.passage, args.gold_id, encoding=args.encoding,
            mode=args.mode, fusion=args.fusion, alpha=args.alpha, version=(m, adapter))
            for label, m, adapter in views}
        model = col.manifest.model.name
    res = next(iter(by_label.values()))
    meta = ("queries", "skipped", "mode", "fusion", "alpha", "ranking", "remembered")
    warnings = [f"{r['remembered']} of the {r['queries']} queries are ones {label} remembers "
                "(the pairs and ratings tune learned from): for them this is no held-out "
                "measure"
                for label, r in by_label.items() if r["remembered"]]
    for w in warnings:
        logging.getLogger("neartext").warning(w)
    if not args.json:
        skipped = f" ({res['skipped']} skipped: passage not in the collection)" if res["skipped"] else ""
        print(f"{args.collection} ({model}): {res['queries']} queries from {args.pairs}{skipped}")
        labels = list(by_label)
        width = max(len(k) for k in res if k not in meta)
        print(" " * width + "".join(f"  {lb[-22:]:>22}" for lb in labels))
        print(f"{'ranking':<{width}}" + "".join(f"  {by_label[lb]['ranking'][-22:]:>22}"
                                                for lb in labels))
        for k in res:
            if k not in meta:
                print(f"{k:<{width}}" + "".join(f"  {by_label[lb][k]:>22.4f}" for lb in labels))
    out = {"collection": args.collection, "model": model, "file": args.pairs, **res,
           "warnings": warnings}
    if args.model:
        out["results"] = by_label
    return out


def _retrieval_data(args: argparse.Namespace) -> Any:

    beir = (args.corpus, args.queries, args.qrels)
    if args.pairs and not args.queries and not args.qrels:
        data = load_retrieval_pairs(args.pairs, args.query, args.passage, encoding=args.encoding)
        if args.corpus:
            data = with_distractors(data, distractor_texts(args.corpus, args.encoding),
                                    args.corpus)
        return data
    if all(beir) and not args.pairs:
        return load_beir(*beir)
    raise InputError("give --pairs FILE, or all of --corpus, --queries and --qrels (BEIR layout)")


def _cmd_calibrate(args: argparse.Namespace) -> dict[str, Any]:

    data = load_pairs(args.pairs, args.text1, args.text2, args.score, encoding=args.encoding)
    with Collection.open(args.collection) as col:
        cal = col.calibrate(data, min_precision=args.min_precision)
    if not args.json:
        print(f"{args.collection}: threshold {cal.threshold:.4f} ({cal.rule}): precision "
              f"{cal.precision:.3f}, recall {cal.recall:.3f} on {cal.pairs} pairs; "
              "stored: mine, paraphrases and dedup now use it by default")
    return cal.to_dict()


def _tune_options(p: Any) -> None:
    p.add_argument("collection")
    p.add_argument("--pairs", help="(query, passage) rows; the passage is a document's text or id")
    p.add_argument("--query", help="query column of --pairs (name or position)")
    p.add_argument("--passage", help="passage column of --pairs: a document's text or id")
    p.add_argument("--gold-id", help="or: the column of the gold document's id (ids only)")
    p.add_argument("--kind", choices=ADAPTER_KINDS, default="linear",
                   help=choices_help(ADAPTER_KIND_HELP, default="linear"))
    p.add_argument("--side", choices=ADAPTER_SIDES, default="query",
                   help="query (default: the documents' vectors stay), or both: the documents "
                        "are mapped too (their stored vectors, without the encoder), for "
                        "paraphrases, mining and dedup; linear, lowrank or diagonal")
    p.add_argument("--held-out", type=finite_float, default=0.2,
                   help="share of queries held out to measure before/after (default 0.2)")
    p.add_argument("--margin", type=finite_float, default=DEFAULT_MARGIN,
                   help=f"MRR@10 gain needed to promote (default {DEFAULT_MARGIN})")
    p.add_argument("--force", action="store_true", help="promote even without a gain")
    p.add_argument("--seed", type=int, default=0)
    add_output_options(p)


def _tune_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    if not 0 < args.held_out < 1:
        raise InputError(f"--held-out {args.held_out}: give a share between 0 and 1, e.g. 0.2")
    return {"kind": args.kind, "side": args.side, "held_out": args.held_out, "margin": args.margin,
            "force": args.force, "query_column": args.query, "passage_column": args.passage,
            "gold_id_column": args.gold_id, "seed": args.seed}


def _cmd_tune(args: argparse.Namespace) -> dict[str, Any]:

    kw = _tune_kwargs(args)
    with Collection.open(args.collection) as col:
        report = tune(col, args.pairs, feedback=args.feedback, progress=show_progress(args),
                      **kw)
    if not args.json:
        print(report.summary())
    return report.to_dict()


def _cmd_improve(args: argparse.Namespace) -> dict[str, Any]:

    at_least_one(("--min-new", args.min_new))
    kw = _tune_kwargs(args)
    if args.full:
        if args.kind != "linear" or args.side != "query":
            raise InputError("--kind and --side shape an adapter; --full fine-tunes the model")
        kw = {k: v for k, v in kw.items() if k not in ("kind", "side")}
        if not args.epochs > 0:
            raise InputError(f"--epochs {args.epochs}: give a number above 0, e.g. 1")
    with Collection.open(args.collection) as col:
        report, line = improve(col, args.pairs, min_new=args.min_new, full=args.full,
                               epochs=args.epochs, progress=show_progress(args), **kw)
    if not args.json:
        print(report.summary() if report else line)
    return report.to_dict() if report else {"collection": args.collection, "promoted": False,
                                            "reason": line}


def _cmd_versions(args: argparse.Namespace) -> list[dict[str, Any]]:

    with Collection.open(args.collection) as col:
        rows = list_versions(col)
    if not args.json:

        for v in rows:
            a = v.get("adapter") or {}
            ranking = Ranking.from_dict(v.get("search"))
            details = a or ranking.details
            what = (f"{a.get('kind')} adapter ({a.get('side', 'query')} side)" if a else
                    "fine-tuned model" if details.get("fine_tuned") else "no adapter")
            m = details.get("metrics") or {}
            score = f", held-out MRR@10 {m['mrr@10']:.4f}" if "mrr@10" in m else ""
            mark = "*" if v["current"] else " "
            print(f"{mark} {v['version']:>3}  {v['model']}  {what}, "
                  f"{ranking.describe()} ranking{score}")
    return rows


def _cmd_rollback(args: argparse.Namespace) -> dict[str, Any]:

    with Collection.open(args.collection) as col:
        now = rollback(col, args.to)
    if not args.json:
        what = f"{now['adapter']['kind']} adapter" if now.get("adapter") else "base model"
        print(f"{args.collection}: version {now['version']} is current ({now['model']}, {what})")
    return now
