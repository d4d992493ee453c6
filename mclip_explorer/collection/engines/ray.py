"""The Ray engine: read shards with Ray Data, encode in an actor pool, cache on the driver.

Pipeline: a Ray Data datasource with one read task per unfinished shard (streaming the same
records as the local engine, in blocks of ``shard_size``) -> ``map_batches`` with a pool of
encoder actors (one model per actor; ``num_gpus=1`` each where the cluster has GPUs, else CPU
actors sized from the cluster's free CPUs) -> the driver, which writes each block's embeddings
into the collection's content-hash cache as it arrives and a shard's ledger once all its rows
are in. Local-files sources (folders, lists) are read with ``ray.data.read_binary_files``.

The built-in ``read_webdataset`` / ``read_parquet`` are not used for shards: they abort the whole
job on one damaged tar or parquet file and do not give a parquet row's position, while the
records here turn damage into failed items and are identical to the local engine's by
construction. Ray retries tasks and restarts actors that die (a killed worker costs only its
block); a killed driver leaves finished blocks and shards in the cache, and the rerun skips them.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator, Sequence
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mclip_explorer.collection import building, store
from mclip_explorer.collection.engines import ledger
from mclip_explorer.collection.engines.local import batched
from mclip_explorer.collection.engines.records import (
    process_records,
    records_from_columns,
    records_to_columns,
)
from mclip_explorer.collection.sources.local import SourceItems
from mclip_explorer.collection.sources.shards import Record, ShardedSource, iter_records

if TYPE_CHECKING:
    import pandas as pd

    from mclip_explorer.models.base import Encoder

LOG = logging.getLogger("mclip_explorer.engines")


def encode(folder: Path, source: SourceItems | ShardedSource, encoder: Encoder, *,
           model: Any, device: str | None, batch_size: int | None, num_workers: int | None,
           shard_size: int, progress: bool, address: str | None,
           concurrency: int | None, dtype: Any = "float32") -> tuple[pd.DataFrame, np.ndarray]:
    """See :func:`mclip_explorer.collection.engines.encode`."""
    from mclip_explorer.models.base import Encoder

    ray = connect(address)
    shipped = model if model is not None else encoder
    if isinstance(shipped, Encoder):  # a model object goes to the object store once, by ref
        shipped = ray.put(shipped)
    actor = _ActorSpec(shipped, device, batch_size or 32,
                       num_workers if num_workers is not None else 0)
    if isinstance(source, SourceItems):
        hook = partial(_encode_misses, ray, actor, concurrency)
        return building.encode_source(folder, source, encoder, batch_size, num_workers,
                                      shard_size, progress, encode=hook, dtype=dtype)
    cache = building.EmbeddingCache(folder / store.CACHE_DIR, encoder.fingerprint, encoder.dim)
    plans = ledger.plan(cache, source)
    todo = {item.url: item for item in plans if not item.done}
    if todo:
        # Keys cached by blocks of unfinished shards (a killed run): actors skip them.
        partial_keys = cache.keys() - ledger.finished_keys(plans)
        data = ray.data.read_datasource(_shard_datasource(source, list(todo), shard_size),
                                        override_num_blocks=len(todo))
        encoded = _run(ray, data, actor, frozenset(partial_keys), concurrency, progress,
                       cache, todo)
        LOG.info("ray engine: %d shard(s) read, %d finished before; %d image(s) encoded",
                 len(todo), len(plans) - len(todo), encoded)
    return ledger.assemble(plans, cache, folder, dtype)


def connect(address: str | None) -> Any:
    """The ``ray`` module, connected: to ``address``, else the running cluster, else a new one.

    Raises:
        ImportError: Ray is not installed (with the install command).
    """
    try:
        import ray
    except ImportError:
        raise ImportError('engine="ray" needs Ray: pip install "mclip-explorer[ray]"') from None
    for attempt in (1, 2):
        if ray.is_initialized():
            break
        try:
            ray.init(address=address, ignore_reinit_error=True, logging_level=logging.WARNING,
                     log_to_driver=False)
        except Exception:
            # A new local node gets a fixed 30 s to register, which a busy machine can miss;
            # one more try usually makes it. A remote address fails as it is.
            ray.shutdown()
            if address is not None or attempt == 2:
                raise
    return ray


def pool_options(ray: Any, concurrency: int | None) -> dict[str, Any]:
    """Actor-pool size and resources: one actor per GPU, else CPU actors from free CPUs.

    On CPUs at least one CPU (or half the free ones, if fewer) stays unreserved so the read
    tasks can run: a pool that reserves every CPU waits forever for its own input.
    """
    gpus = int(ray.cluster_resources().get("GPU", 0))
    if gpus:
        size = concurrency or gpus
        return {"size": size, "num_gpus": 1, "num_cpus": 1, "threads": None, "device": "cuda"}
    free = float(ray.available_resources().get("CPU", 0.0)) or 1.0
    size = concurrency or max(1, int(free // 4))
    spare = min(1.0, free / 2)
    num_cpus = max(0.1, round((free - spare) / size, 2))
    threads = max(1, int(free // size))  # the readers mostly wait on I/O: let torch use them
    return {"size": size, "num_gpus": 0, "num_cpus": num_cpus, "threads": threads,
            "device": None}


class _ActorSpec:
    """What each encoder actor needs (picklable; ``model``: a name, or a ref to an Encoder)."""

    def __init__(self, model: Any, device: str | None, batch_size: int,
                 num_workers: int) -> None:
        self.model, self.device = model, device
        self.batch_size, self.num_workers = batch_size, num_workers


class EncodeActor:
    """One model per actor; encodes the cache misses of each batch of records."""

    def __init__(self, spec: _ActorSpec, skip: frozenset[str], threads: int | None,
                 device: str | None) -> None:
        import ray

        from mclip_explorer.models.base import Encoder

        model = ray.get(spec.model) if isinstance(spec.model, ray.ObjectRef) else spec.model
        if isinstance(model, Encoder):
            self.encoder = model
        else:
            from mclip_explorer.collection._loading import load_encoder

            self.encoder = load_encoder(model, spec.device or device)
        if threads and "torch" in sys.modules:  # only a torch model has threads to size
            sys.modules["torch"].set_num_threads(threads)
        self.spec, self.skip = spec, skip

    def _missing(self, keys: Sequence[str | None]) -> np.ndarray:
        return np.array([k not in self.skip for k in keys], dtype=bool)

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        """Hash and encode one batch; one output row per record, vectors on first rows."""
        if "record" in batch:
            records = records_from_columns(batch)
        else:  # read_binary_files rows of a local-files source
            records = [Record(str(p), None, i, bytes(b)) for i, (p, b) in
                       enumerate(zip(batch["path"], batch["bytes"], strict=True))]
        done = process_records(records, self.encoder, self._missing,
                               batch_size=self.spec.batch_size,
                               num_workers=self.spec.num_workers)
        # One output row per record; a key's vector rides on its first row.
        vectors = np.full((len(records), self.encoder.dim), np.nan, dtype=np.float32)
        keys, reasons = [""] * len(records), [""] * len(records)
        first: dict[str | None, int] = {}
        for position, row in enumerate(done.rows):
            first.setdefault(row["sha256"], position)
        for key, vector, reason in zip(done.keys, done.vectors, done.reasons, strict=True):
            position = first[key]
            vectors[position], keys[position], reasons[position] = vector, key, reason
        return {"row": [json.dumps(row) for row in done.rows], "vector": vectors,
                "key": keys, "reason": reasons}


def _encode_stage(ray: Any, data: Any, actor: _ActorSpec, skip: frozenset[str],
                  concurrency: int | None, progress: bool, block_rows: int | None) -> Any:
    options = pool_options(ray, concurrency)
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = progress
    return data.map_batches(
        EncodeActor, batch_size=block_rows, batch_format="numpy",
        fn_constructor_kwargs={"spec": actor, "skip": skip, "threads": options["threads"],
                               "device": options["device"]},
        compute=ray.data.ActorPoolStrategy(size=options["size"]),
        num_cpus=options["num_cpus"], num_gpus=options["num_gpus"])


def _run(ray: Any, data: Any, actor: _ActorSpec, skip: frozenset[str],
         concurrency: int | None, progress: bool, cache: building.EmbeddingCache,
         todo: dict[str, ledger.ShardPlan]) -> int:
    """Drive the pipeline: cache each block as it arrives, write ledgers of complete shards."""
    stream = _encode_stage(ray, data, actor, skip, concurrency, progress, None)
    rows: dict[str, list[dict[str, Any]]] = {url: [] for url in todo}
    totals: dict[str, int] = {}
    encoded = 0
    for number, block in enumerate(_blocks(stream), start=1):
        encoded += _cache_block(cache, block)
        store.checkpoint(f"ray-block:{number}")
        touched = set()
        for text in block["row"]:
            row = json.loads(text)
            rows[row["shard"]].append(row)
            touched.add(row["shard"])
            if row["total"] is not None:
                totals[row["shard"]] = int(row["total"])
        for url in touched:
            if len(rows[url]) == totals.get(url, -1):
                ledger.write(todo[url], rows.pop(url))
    unfinished = [url for url in rows if url in todo and not todo[url].done]
    if unfinished:
        raise RuntimeError(f"the Ray pipeline ended before shards {unfinished[:3]} were complete")
    return encoded


def _encode_misses(ray: Any, actor: _ActorSpec, concurrency: int | None, encoder: Encoder,
                   cache: building.EmbeddingCache, keys: Sequence[str | None],
                   payloads: Sequence[Any], *, batch_size: int, num_workers: int | None,
                   shard_size: int, progress: bool) -> int:
    """``encode_images`` for local-files sources: files via ``read_binary_files``."""
    todo: dict[str, Any] = {}
    for key, payload, absent in zip(keys, payloads, cache.missing(keys), strict=True):
        if key is not None and absent and key not in todo:
            todo[key] = payload
    if not todo:
        return 0
    paths = [p for p in todo.values() if isinstance(p, str)]
    others = [p for p in todo.values() if not isinstance(p, str)]
    parts = []
    if paths:
        parts.append(ray.data.read_binary_files(paths, include_paths=True))
    if others:
        images = [building._read(p)[0] for p in others]
        records = [Record("", None, i, image) for i, image in enumerate(images)]
        parts.append(ray.data.from_items([
            {"record": r, "image": i} for r, i in zip(*records_to_columns(records).values(),
                                                      strict=True)]))
    data = parts[0] if len(parts) == 1 else parts[0].union(*parts[1:])
    stream = _encode_stage(ray, data, actor, frozenset(), concurrency, progress, shard_size)
    encoded = 0
    for number, block in enumerate(_blocks(stream), start=1):
        encoded += _cache_block(cache, block)
        store.checkpoint(f"ray-block:{number}")
    return encoded


def _blocks(stream: Any) -> Iterator[dict[str, Any]]:
    yield from stream.iter_batches(batch_size=None, batch_format="numpy")


def _cache_block(cache: building.EmbeddingCache, block: dict[str, Any]) -> int:
    chosen = [i for i, key in enumerate(block["key"]) if key]
    if chosen:
        cache.add_shard([str(block["key"][i]) for i in chosen],
                        np.asarray(block["vector"])[chosen],
                        [str(block["reason"][i]) for i in chosen])
    return len(chosen)


def _shard_datasource(source: ShardedSource, urls: list[str], block_rows: int) -> Any:
    """A Ray Data datasource with one read task per shard, streaming :class:`Record` blocks."""
    from ray.data.block import BlockMetadata
    from ray.data.datasource import Datasource, ReadTask

    class ShardDatasource(Datasource):
        def estimate_inmemory_data_size(self) -> int | None:
            return None

        def get_read_tasks(self, parallelism: int, per_task_row_limit: int | None = None,
                           data_context: Any = None) -> list[Any]:
            return [ReadTask(partial(_read_shard, source, url, block_rows),
                             BlockMetadata(num_rows=None, size_bytes=None, exec_stats=None,
                                           input_files=(url,))) for url in urls]

    return ShardDatasource()  # type: ignore[no-untyped-call]


def _read_shard(source: ShardedSource, url: str, block_rows: int) -> Iterator[Any]:
    import pyarrow as pa

    schema = pa.schema([("record", pa.string()), ("image", pa.binary())])
    for chunk in batched(iter_records(source, url), max(1, block_rows)):
        yield pa.table(records_to_columns(chunk), schema=schema)
