"""The ``mclip-explorer`` command: build, grow, search and inspect collections from a shell.

Bad input (a missing folder, an unknown model, a damaged collection, no images) prints one line
on stderr and exits with status 2; it never shows a traceback. Model weights that are not on this
machine and cannot be downloaded exit with status 3, so a script can tell "offline" apart from
"broken" (a damaged weights file is status 2).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

EXIT_BAD_INPUT = 2
EXIT_NO_WEIGHTS = 3
EXIT_INTERNAL = 1
DEBUG_ENV = "MCLIP_EXPLORER_DEBUG"


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr like every other bad input."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_BAD_INPUT, f"mclip-explorer: error: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    """The command-line grammar."""
    from mclip_explorer._version import __version__

    parser = _Parser(prog="mclip-explorer",
                     description="Encode image collections with multilingual CLIP and search "
                                 "them in any language.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    build = commands.add_parser("build", help="encode images into a new collection (resumable)")
    build.add_argument("images", nargs="?", help="image folder, glob pattern, a single image, "
                       "or WebDataset/parquet shards ('shards/{00000..00099}.tar', s3://...)")
    build.add_argument("--sample", action="store_true",
                       help="build from the bundled sample images (308 clip-art pictures)")
    build.add_argument("--model", default=None, help="model name (see `mclip-explorer models`)")
    build.add_argument("--out", required=True, help="collection folder to create")
    build.add_argument("--device", default=None, help="cuda, mps or cpu (default: best found)")
    build.add_argument("--batch-size", type=_positive, default=None, help="images per batch")
    build.add_argument("--workers", type=_non_negative, default=None, help="decoding processes")
    build.add_argument("--precision", choices=("float16", "float32"), default="float16",
                       help="stored embedding precision")
    build.add_argument("--map", choices=("auto", "umap", "pca"), default="auto",
                       help="map layout: UMAP, PCA, or auto (PCA below 500 items; default)")
    build.add_argument("--map-sample", type=_positive, default=None, metavar="N",
                       help="above N images fit the map on N of them and place the rest "
                            "(default 200000)")
    build.add_argument("--overwrite", action="store_true",
                       help="replace a collection of other images at --out (the same images "
                            "resume without it)")
    _engine(build)
    _quiet(build)

    add = commands.add_parser("add", help="encode and add new images to a collection")
    add.add_argument("dir", help="collection folder")
    add.add_argument("source", help="image folder, glob pattern, a single image, or shards")
    add.add_argument("--device", default=None)
    _engine(add)
    _quiet(add)

    search = commands.add_parser("search", help="search a collection by text (any language) or "
                                 "by an image file")
    search.add_argument("dir", help="collection folder")
    search.add_argument("query", help="text, or the path of an image file")
    search.add_argument("-k", type=_positive, default=10, help="number of hits (default 10)")
    search.add_argument("--kind", choices=("image", "text"), default="image",
                        help="search image items (default) or text items")
    search.add_argument("--json", action="store_true", help="print JSON instead of a table")
    search.add_argument("--device", default=None)

    info = commands.add_parser("info", help="show what a collection holds")
    info.add_argument("dir", help="collection folder")
    info.add_argument("--json", action="store_true", help="print the manifest as JSON")

    commands.add_parser("models", help="list the available models")

    convert = commands.add_parser("convert-head", help="convert a legacy M-CLIP head (pickle) "
                                  "to safetensors without running its code")
    convert.add_argument("src", help="legacy head file (.pkl)")
    convert.add_argument("dst", help="output .safetensors file")
    return parser


def _engine(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--engine", choices=("local", "ray"), default="local",
                        help="encode in this process (default) or on a Ray cluster "
                             "(pip install 'mclip-explorer[ray]')")
    parser.add_argument("--address", default=None,
                        help="Ray cluster address: auto, HOST:6379 or ray://HOST:10001 "
                             "(default: a new local cluster)")
    parser.add_argument("--concurrency", type=_positive, default=None,
                        help="Ray encoder actors (default: one per GPU, else from free CPUs)")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    from mclip_explorer.errors import MclipExplorerError, WeightsNotFoundError

    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # --help, --version and usage errors: return, don't exit
        return exc.code if isinstance(exc.code, int) else EXIT_BAD_INPUT
    try:
        return int(_COMMANDS[args.command](args) or 0)
    except BrokenPipeError:  # `mclip-explorer search ... | head`: the reader left, not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        _say("interrupted; rerun the same command to resume (finished work is kept)")
        return 130
    except (MclipExplorerError, ValueError, KeyError, TypeError, OSError, ImportError) as exc:
        if os.environ.get(DEBUG_ENV):
            raise
        _say(_one_line(exc))
        return EXIT_NO_WEIGHTS if isinstance(exc, WeightsNotFoundError) else EXIT_BAD_INPUT
    except Exception as exc:  # the promise is "never a traceback"
        if os.environ.get(DEBUG_ENV):
            raise
        _say(f"internal error: {type(exc).__name__}: {_one_line(exc)} "
             f"(set {DEBUG_ENV}=1 for the traceback)")
        return EXIT_INTERNAL


def _build(args: argparse.Namespace) -> int:
    from mclip_explorer.collection import Collection
    from mclip_explorer.models import DEFAULT_MODEL

    if (args.images is None) == (not args.sample):
        raise ValueError("give either an IMAGES folder or --sample")
    if args.sample:
        from mclip_explorer.data import sample_table

        source = sample_table()
    else:
        source = args.images
    coll = Collection.build(source, model=args.model or DEFAULT_MODEL, out=args.out,
                            batch_size=args.batch_size, num_workers=args.workers,
                            device=args.device, progress=not args.quiet,
                            precision=args.precision, map_method=args.map,
                            overwrite=args.overwrite, engine=args.engine,
                            address=args.address, concurrency=args.concurrency,
                            **({"map_sample": args.map_sample} if args.map_sample else {}))
    counts = coll.manifest["counts"]
    print(f"built {coll.path}: {counts['live']} items searchable, {counts['failed']} failed "
          f"({coll.model_name})")
    _report_failures(coll)
    return 0


def _add(args: argparse.Namespace) -> int:
    from mclip_explorer.collection import Collection

    coll = Collection.open(args.dir, device=args.device)
    ids = coll.add(args.source, progress=not args.quiet, engine=args.engine,
                   address=args.address, concurrency=args.concurrency)
    print(f"added {len(ids)} items to {coll.path} ({coll.manifest['counts']['live']} searchable)")
    _report_failures(coll, ids)
    return 0


def _search(args: argparse.Namespace) -> int:
    from mclip_explorer.collection import Collection

    if not args.query.strip():
        raise ValueError("empty query: give a text in any language, or the path of an image file")
    coll = Collection.open(args.dir, device=args.device)
    hits = coll.search(args.query, k=args.k, kind=args.kind)
    if args.json:
        records = [{key: _jsonable(value) for key, value in row.items()}
                   for row in hits.to_dict(orient="records")]
        print(json.dumps(records, ensure_ascii=False, indent=2))
    elif hits.empty:
        print("no results")
    else:
        shown = [c for c in ("rank", "score", "id", "title", "text", "lang", "path")
                 if c in hits.columns]
        print(hits[shown].to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    return 0


def _info(args: argparse.Namespace) -> int:
    from mclip_explorer.collection import store
    from mclip_explorer.collection.core import Collection

    coll = Collection.open(args.dir)  # a full open also validates every file
    manifest = coll.manifest
    if args.json:
        print(json.dumps(manifest, indent=2, ensure_ascii=False))
        return 0
    counts = manifest["counts"]
    index = manifest["index"].get("image") or {}
    projection = manifest.get("projection") or {}
    lines = [
        f"collection  {coll.path}",
        f"format      {store.FORMAT_NAME} v{manifest['format_version']}",
        f"model       {coll.model_name} (fingerprint {manifest['model']['fingerprint']}, "
        f"dim {coll.dim})",
        f"items       {counts['items']} ({counts['images']} images, {counts['texts']} texts; "
        f"{counts['live']} searchable, {counts['failed']} failed, {counts['deleted']} removed)",
        f"embeddings  {manifest['precision']}",
        f"index       hnswlib M={index.get('M')} ef_construction={index.get('ef_construction')} "
        f"ef={index.get('ef') or 'auto (grows with the item count)'}",
        f"map         {projection.get('method', 'none')}",
        f"created     {manifest.get('created')}   updated {manifest.get('updated')}",
    ]
    print("\n".join(lines))
    return 0


def _models(args: argparse.Namespace) -> int:
    del args
    from mclip_explorer.models import available_models

    table = available_models()[["name", "dim", "languages", "image_tower", "image_size"]]
    print(table.to_string(index=False))
    return 0


def _convert_head(args: argparse.Namespace) -> int:
    from mclip_explorer.models.heads import convert_head

    convert_head(args.src, args.dst)
    print(f"wrote {args.dst}")
    return 0


_COMMANDS = {"build": _build, "add": _add, "search": _search, "info": _info, "models": _models,
             "convert-head": _convert_head}


def _report_failures(coll: Any, ids: Any = None) -> None:
    items = coll.items if ids is None else coll.items.iloc[list(ids)]
    failed = items[items["error"].notna()]
    for _, row in failed.head(5).iterrows():
        _say(f"could not encode {row['path']}: {row['error']}", prefix="warning")
    if len(failed) > 5:
        _say(f"... and {len(failed) - 5} more (see the 'error' column of the items)",
             prefix="warning")


def _jsonable(value: Any) -> Any:
    if hasattr(value, "item"):  # NumPy scalars
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is not None and not isinstance(value, (str, int, float, bool, list, dict)):
        try:
            import pandas as pd

            if pd.isna(value):
                return None
        except (TypeError, ValueError):
            pass
        return str(value)
    return value


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    if isinstance(exc, KeyError) and text.startswith(("'", '"')):
        text = text[1:-1]
    return " ".join(text.split())


def _say(message: str, *, prefix: str = "error") -> None:
    print(f"mclip-explorer: {prefix}: {message}", file=sys.stderr)


def _positive(text: str) -> int:
    value = _non_negative(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
    return value


def _non_negative(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative, got {text!r}")
    return value


def _quiet(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars")


if __name__ == "__main__":
    sys.exit(main())
