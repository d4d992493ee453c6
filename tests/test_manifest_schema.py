"""Every single-field edit of a real manifest.json opens or fails by name (issue 9, point 4).

Each field of a manifest written by a build (with an image and a text index) is set to each of
null, [], {}, "x", -1, 0, 10**12, 1.5, true, or deleted. Opening must then either raise a
CollectionError whose message names the field by its dotted path, or succeed: only for the
edits the format documents as valid (listed below, from docs/format.md), and with search intact.
"""

from __future__ import annotations

import copy
import json
import shutil
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mclip_explorer.collection import Collection
from mclip_explorer.collection.store import MANIFEST
from mclip_explorer.errors import CollectionError, DamageWarning
from mclip_explorer.models.toy import ToyEncoder
from tests.test_collection import make_images

DELETED = object()
EDITS: list[Any] = [None, [], {}, "x", -1, 0, 10**12, 1.5, True, DELETED]

# Edits the format accepts (docs/format.md): free text, informational numbers, optional keys.
# "*" matches one path segment. Anything else must be refused by name.
VALID = [
    ("paths", "x"), ("model.name", "x"), ("versions.*", "x"), ("versions.*", DELETED),
    ("versions", {}),
    ("model.preprocess_version", 0), ("generation", 0), ("generation", 10**12),
    ("index.*.ef", None), ("index.*.random_seed", 0), ("index.*.random_seed", 10**12),
    ("index.*.hnswlib", "x"),
    ("projection.method", "x"), ("projection.n", 0), ("projection.n", 10**12),
    ("projection.seconds", 0), ("projection.seconds", 10**12), ("projection.seconds", 1.5),
    ("projection.scale", 10**12), ("projection.scale", 1.5), ("projection", {}),
    ("projection.scale", DELETED), ("projection.scale_k", DELETED),
    ("projection.seconds", DELETED), ("projection.scale_k", 10**12 // 10**8),
]
# Edits after which the index is rebuilt from the embeddings, with a warning naming the field.
REBUILT = [("files.index_*", None), ("files.index_*", DELETED), ("files.index_*.bytes", 0),
           ("files.index_*.bytes", 10**12)]


def _fields(value: Any, prefix: str = "") -> Iterator[str]:
    if isinstance(value, dict):
        for key, sub in value.items():
            path = f"{prefix}.{key}" if prefix else key
            yield path
            yield from _fields(sub, path)


def _matches(field: str, pattern: str) -> bool:
    a, b = field.split("."), pattern.split(".")
    return len(a) == len(b) and all(q == "*" or p == q or (q.endswith("*") and
                                    p.startswith(q[:-1])) for p, q in zip(a, b, strict=True))


def _listed(field: str, edit: Any, table: list[tuple[str, Any]]) -> bool:
    return any(_matches(field, f) and (e is edit if edit is DELETED or e is DELETED
                                       else type(e) is type(edit) and e == edit)
               for f, e in table)


def _edited(manifest: dict[str, Any], field: str, edit: Any) -> dict[str, Any]:
    out = copy.deepcopy(manifest)
    *parents, last = field.split(".")
    node = out
    for key in parents:
        node = node[key]
    if edit is DELETED:
        del node[last]
    else:
        node[last] = copy.deepcopy(edit)
    return out


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("schema")
    make_images(root / "images", colours=("red", "blue", "green"), broken=True)
    coll = Collection.build(root / "images", model=ToyEncoder(), out=root / "coll",
                            progress=False)
    coll.add_texts(["red", "blue"])
    coll.remove([0])
    return root / "coll"


def test_every_single_field_edit_is_refused_by_name_or_harmless(built: Path, tmp_path: Path):
    manifest = json.loads((built / MANIFEST).read_text())
    original = Collection.open(built)
    query = original.vectors()[1][3]  # by vector: an edited model name is checked on use
    expected = original.search(query, k=4)["id"].tolist()
    fields = list(_fields(manifest))
    assert len(fields) > 60  # every nested field, not just the top level
    copy_path = tmp_path / "coll"
    shutil.copytree(built, copy_path)
    unexplained = []
    for field in fields:
        for edit in EDITS:
            edited = _edited(manifest, field, edit)
            if edited == manifest:
                continue  # e.g. ef set to null where it already is null
            (copy_path / MANIFEST).write_text(json.dumps(edited))
            shown = "deleted" if edit is DELETED else repr(edit)
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                try:
                    hits = Collection.open(copy_path).search(query, k=4)["id"].tolist()
                except CollectionError as exc:
                    if f"'{field}" not in str(exc):
                        unexplained.append(f"{field}={shown}: error does not name it: {exc}")
                    continue
                except Exception as exc:  # noqa: BLE001 - the point of the test
                    unexplained.append(f"{field}={shown}: {type(exc).__name__}: {exc}")
                    continue
            damage = [str(w.message) for w in caught if issubclass(w.category, DamageWarning)]
            if _listed(field, edit, REBUILT):
                if not any(f"'{field}" in m for m in damage):
                    unexplained.append(f"{field}={shown}: rebuilt without naming it: {damage}")
            elif not _listed(field, edit, VALID):
                unexplained.append(f"{field}={shown}: accepted")
            if hits != expected:
                unexplained.append(f"{field}={shown}: accepted, but the hits changed")
    assert not unexplained, "\n".join(unexplained)
