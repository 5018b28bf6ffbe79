"""``neartext`` commands: paraphrase mining, duplicates, clusters and maps of a collection."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from neartext.algo.groups import GROUPINGS, REPRESENTATIVES
from neartext.algo.mining import METHODS as MINING_METHODS
from neartext.cli.common import (
    add_cluster_options,
    add_output_options,
    add_ray_options,
    add_threshold,
    on_ray,
    one_line,
    print_results,
    show_progress,
)
from neartext.collection import Collection
from neartext.engine.analysis import write_clean
from neartext.errors import InputError
from neartext.ops.maps import MAP_FORMATS, check_color_by, draw, projected
from neartext.util.tables import (
    check_output_path,
    check_shard_dir,
    is_shard_dir,
    write_shards,
    write_table,
)

if TYPE_CHECKING:
    from neartext.collection import Collection
    from neartext.engine.clustering import ClusterResult


def register(sub: Any) -> None:
    """Add the mine, paraphrases, dedup, cluster, map commands to ``sub``."""
    p = sub.add_parser("mine", help="every pair of paraphrases in a collection, best first")
    p.add_argument("collection")
    add_threshold(p, "mine")
    p.add_argument("--top-k", type=int, default=100, help="neighbours considered per text (100)")
    p.add_argument("--max-pairs", type=int, help="keep only the best N pairs")
    p.add_argument("--method", default="auto", choices=MINING_METHODS,
                   help="exact, approx (k-means cell self-join), auto: approx above 50k texts")
    p.add_argument("--nprobe", type=int,
                   help="approx: cells each cell is compared with (default 1); more: slower, more complete")
    p.add_argument("--verify", type=int, metavar="N",
                   help="also run exact search for N random texts and report recall")
    add_ray_options(p, actors=False, what="run the approximate path's cell self-joins as tasks")
    add_output_options(p, table="pairs (a directory, e.g. pairs/: Parquet shards)")
    p.set_defaults(handler=_cmd_mine)

    p = sub.add_parser("paraphrases", help="paraphrases of one text in a collection")
    p.add_argument("collection")
    p.add_argument("text")
    add_threshold(p, "paraphrases")
    p.add_argument("--top-k", type=int, default=100, help="at most this many (100)")
    add_output_options(p, table="them")
    p.set_defaults(handler=_cmd_paraphrases)

    p = sub.add_parser("dedup", help="groups of near-duplicates; optionally a cleaned corpus")
    p.add_argument("collection")
    add_threshold(p, "dedup")
    p.add_argument("--method", default="components", choices=GROUPINGS,
                   help="components (chains allowed) or community (members close to the centre)")
    p.add_argument("--representative", default="central", choices=REPRESENTATIVES,
                   help="which member represents a group: central (the default: the member "
                        "closest to the others) or first (the first in the corpus)")
    p.add_argument("--top-k", type=int, default=100, help="neighbours considered per text (100)")
    p.add_argument("-o", "--output", help="write groups to .csv, .jsonl or .parquet")
    p.add_argument("--write-clean", metavar="FILE",
                   help="write the corpus with one row per group (+ FILE's .mapping.csv: id -> kept id)")
    add_ray_options(p, actors=False, what="mine the pairs (approximate path) as tasks")
    add_output_options(p)
    p.set_defaults(handler=_cmd_dedup)

    p = sub.add_parser("cluster", help="clusters of the documents, with labels and central texts")
    p.add_argument("collection")
    add_cluster_options(p)
    p.add_argument("--central", type=int, default=3, help="central texts shown per cluster (3)")
    add_output_options(p, table="id, cluster, label, text")
    p.set_defaults(handler=_cmd_cluster)

    p = sub.add_parser("map", help="a 2-D map of the collection (UMAP) as PNG or offline HTML")
    p.add_argument("collection")
    p.add_argument("-o", "--output", required=True, help="map.png or map.html")
    p.add_argument("--color-by", help="'cluster' or a metadata column")
    p.add_argument("--sample", type=int, help="map a random sample of N documents")
    p.add_argument("--query", help="mark where this query lands")
    p.add_argument("--hover", metavar="FIELD",
                   help="HTML: a metadata field (a title, a link) shown with the text on hover")
    add_cluster_options(p)
    add_output_options(p)
    p.set_defaults(handler=_cmd_map)


def _cmd_mine(args: argparse.Namespace) -> dict[str, Any]:

    shards = bool(args.output) and is_shard_dir(args.output)
    if args.output:
        (check_shard_dir if shards else check_output_path)(args.output)
    session, compute = on_ray(args)
    with Collection.open(args.collection) as col, session:
        col.compute = compute
        res = col.mine(args.threshold, args.top_k, max_pairs=args.max_pairs, method=args.method,
                       verify=args.verify, nprobe=args.nprobe, progress=show_progress(args))
    columns = ["id1", "id2", "score", "text1", "text2"]
    if shards:
        _, n = write_shards(args.output, res.pairs, columns)
        args.output = f"{args.output} ({n} Parquet shard{'s' if n > 1 else ''})"
    elif args.output:
        write_table(args.output, res.pairs, columns)
    if not args.json:
        if not args.output:
            for p in res.pairs[:20]:
                print(f"{p['score']:.3f}  {p['id1']}  {one_line(p['text1'])}\n"
                      f"       {p['id2']}  {one_line(p['text2'])}")
            if len(res.pairs) > 20:
                print(f"... {len(res.pairs) - 20} more pairs (use -o FILE to write them all)")
        print(res.summary() + (f"; written to {args.output}" if args.output else ""),
              file=sys.stderr)
    return res.to_dict()


def _cmd_paraphrases(args: argparse.Namespace) -> Any:

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
        print_results(results)
    return {"paraphrases": rows, "notice": notice}


def _cmd_dedup(args: argparse.Namespace) -> dict[str, Any]:

    for out in (args.output, args.write_clean):
        if out:
            check_output_path(out)
    session, compute = on_ray(args)
    with Collection.open(args.collection) as col, session:
        col.compute = compute
        res = col.dedup(args.threshold, method=args.method, representative=args.representative,
                        top_k=args.top_k, progress=show_progress(args))
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
                print(f"group {g.group} ({len(g.members)}):")
                for m in g.members:
                    mark = "*" if m.id == g.representative else " "
                    print(f"  {mark} {m.score:.3f}  {m.id}  {one_line(m.text)}")
            if len(res.groups) > 10:
                print(f"... {len(res.groups) - 10} more groups (use -o FILE to write them all)")
        print(res.summary(), file=sys.stderr)
    return res.to_dict()


def _cluster(col: Collection, args: argparse.Namespace, central: int = 3) -> ClusterResult:
    return col.cluster(args.method, threshold=args.threshold, min_size=args.min_size, k=args.k,
                       seed=args.seed, central=central, progress=show_progress(args))


def _cmd_cluster(args: argparse.Namespace) -> dict[str, Any]:

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

    out = Path(args.output)
    if out.suffix.lower() not in MAP_FORMATS or not out.parent.is_dir():
        raise InputError(f"{out}: give a .png or .html file in an existing folder")
    with Collection.open(args.collection) as col:
        check_color_by(col, args.hover, option="--hover")
        proj, clusters = projected(col, color_by=args.color_by, sample=args.sample,
                                   seed=args.seed, method=args.method, threshold=args.threshold,
                                   k=args.k, min_size=args.min_size,
                                   progress=show_progress(args))
        draw(col, proj, out, color_by=args.color_by, clusters=clusters, query=args.query,
             hover=args.hover)
    if not args.json:
        how = "from the cache" if proj.cached else f"in {proj.seconds:.1f} s"
        print(f"wrote {out}: {len(proj.ids)} documents (projection {how})")
    return {"output": str(out), "documents": len(proj.ids), "cached": proj.cached,
            "projection_seconds": proj.seconds}
