"""Hash and encode one chunk of shard records: the per-chunk step both engines run.

The local engine calls :func:`process_records` in its loop; each Ray actor calls it on the batches
Ray Data hands it. Either way the result is the same rows (identity, content facts, metadata) and
the same embeddings of the cache misses, which the caller writes into the content-hash cache.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from mclip_explorer.collection.building import encode_batch, hash_payloads
from mclip_explorer.collection.sources.shards import Record
from mclip_explorer.models.base import Encoder


@dataclass
class Processed:
    """What one chunk of records produced.

    Attributes:
        rows: One dict per record: ``shard``, ``key``, ``seq``, ``sha256``, ``bytes``,
            ``width``, ``height``, ``error`` (read error), ``total`` and the record's metadata.
        keys: Content keys that were encoded (cache misses), aligned with ``vectors``.
        vectors: ``(len(keys), dim)`` float32; NaN rows where decoding failed.
        reasons: Decode failure reason per encoded key ("" = ok).
    """

    rows: list[dict[str, Any]]
    keys: list[str]
    vectors: np.ndarray
    reasons: list[str]


def process_records(records: Sequence[Record], encoder: Encoder,
                    missing: Callable[[Sequence[str | None]], np.ndarray], *,
                    batch_size: int = 32, num_workers: int | None = None,
                    on_batch: Callable[[int], object] | None = None) -> Processed:
    """Hash every record's image once and encode the content still ``missing`` (once per key).

    ``missing(keys)`` is a boolean mask of the keys not cached yet (one vectorised call).
    """
    readable = [i for i, r in enumerate(records) if r.error is None and r.image is not None]
    hashed = hash_payloads([records[i].image for i in readable])
    facts: dict[int, tuple[Any, ...]] = {}
    todo: dict[str, bytes] = {}
    absent = missing(hashed.sha256) if readable else np.zeros(0, bool)
    for position, index in enumerate(readable):
        sha = hashed.sha256[position]
        facts[index] = (sha, hashed.size[position], hashed.width[position],
                        hashed.height[position], hashed.errors.get(position))
        image = records[index].image
        if sha is not None and image is not None and sha not in todo and absent[position]:
            todo[sha] = image
    rows = []
    for index, record in enumerate(records):
        sha, size, width, height, error = facts.get(index, (None, None, None, None, None))
        rows.append({"shard": record.shard, "key": record.key, "seq": record.seq,
                     "sha256": sha, "bytes": size, "width": width, "height": height,
                     "error": record.error or error, "total": record.total, **record.meta})
    if not todo:
        return Processed(rows, [], np.empty((0, encoder.dim), np.float32), [])
    vectors, reasons = encode_batch(encoder, list(todo.values()), batch_size=batch_size,
                                    num_workers=num_workers, on_batch=on_batch)
    return Processed(rows, list(todo), vectors, reasons)


def records_to_columns(records: Sequence[Record]) -> dict[str, Any]:
    """A Ray-friendly columnar batch: ``record`` (JSON text) and ``image`` (bytes or None)."""
    return {
        "record": [json.dumps({"shard": r.shard, "key": r.key, "seq": r.seq, "error": r.error,
                               "meta": r.meta, "total": r.total}) for r in records],
        "image": [r.image for r in records],
    }


def records_from_columns(batch: dict[str, Any]) -> list[Record]:
    """Inverse of :func:`records_to_columns` (the JSON is data: parsed, never evaluated)."""
    out = []
    for text, image in zip(batch["record"], batch["image"], strict=True):
        fields = json.loads(text)
        out.append(Record(fields["shard"], fields["key"], int(fields["seq"]),
                          None if image is None else bytes(image), fields["error"],
                          fields["meta"], fields["total"]))
    return out
