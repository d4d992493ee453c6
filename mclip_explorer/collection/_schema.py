"""The one schema of ``manifest.json``: every field's type and range, checked on open.

A manifest that does not match raises :class:`CollectionError` naming the field by its dotted
path (``counts.items``, ``files.index_image.bytes``), so a hand edit or a damaged file is never
met later as a ``TypeError`` or ``KeyError``. Checks that need the data files (row counts, array
shapes) are made where those files are read, with the field's name in the message too.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from mclip_explorer.errors import CollectionError

FORMAT_NAME = "mclip-explorer-collection"
# 2: float16 embeddings by default, memory-mapped on open; a map may be fitted on a sample
# with the other images placed (stretch > 0 on the first map). Version 1 folders still open.
FORMAT_VERSION = 2
ROLES = {  # generation file role -> file suffix
    "items": ".parquet",
    "embeddings": ".npy",
    "coords": ".npy",
    "stretch": ".npy",
    "index_image": ".hnsw",
    "index_text": ".hnsw",
}
REQUIRED_ROLES = ("items", "embeddings", "coords", "stretch")
CHECKSUM_KEY = "xxh3_128"
MAX_COUNT = 2**40  # items; far above any real collection, far below float64's exact integers
MAX_DIM = 65_536
MAX_FILE_BYTES = 2**50
_HEX = re.compile(r"[0-9a-f]+\Z")

Check = Callable[[Any, str], None]


class _FieldError(Exception):
    """One field failed: ``field`` is its dotted path, ``problem`` what is wrong."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(field, problem)
        self.field, self.problem = field, problem


def validate(manifest: Any, path: Path) -> dict[str, Any]:
    """Check a parsed ``manifest.json`` against the schema; return it unchanged.

    Raises:
        CollectionError: Naming the first field that is missing, of the wrong type or out of
            range, or that the format is newer than this version reads.
    """
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT_NAME:
        raise CollectionError(f"{path} is not an mclip-explorer collection manifest "
                              f"(field 'format' must be {FORMAT_NAME!r})")
    version = manifest.get("format_version")
    if isinstance(version, int) and not isinstance(version, bool) and version > FORMAT_VERSION:
        raise CollectionError(
            f"{path.parent} uses collection format {version}; this mclip-explorer reads up to "
            f"{FORMAT_VERSION} (field 'format_version'). Upgrade mclip-explorer to open it.")
    try:
        _TOP_CHECK(manifest, "")
    except _FieldError as bad:
        if bad.problem == "missing":
            raise CollectionError(f"damaged {path}: missing key {bad.field!r}") from None
        raise CollectionError(f"damaged {path}: field {bad.field!r} {bad.problem}") from None
    return manifest


# ------------------------------------------------------------------------------- field types
def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _int(low: int, high: int) -> Check:
    def check(value: Any, field: str) -> None:
        if not _is_int(value):
            raise _FieldError(field, f"must be an integer, got {_show(value)}")
        if not low <= value <= high:
            raise _FieldError(field, f"must be between {low} and {high}, got {value}")
    return check


def _number(*, positive: bool) -> Check:
    def check(value: Any, field: str) -> None:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _FieldError(field, f"must be a number, got {_show(value)}")
        if positive and not (math.isnan(value) or value > 0):
            raise _FieldError(field, f"must be positive, got {value}")
        if value < 0:
            raise _FieldError(field, f"must not be negative, got {value}")
    return check


def _text(*, pattern: re.Pattern[str] | None = None, choices: tuple[str, ...] = ()) -> Check:
    def check(value: Any, field: str) -> None:
        if not isinstance(value, str) or not value:
            raise _FieldError(field, f"must be a non-empty string, got {_show(value)}")
        if choices and value not in choices:
            raise _FieldError(field, f"must be one of {', '.join(choices)}, got {_show(value)}")
        if pattern is not None and not pattern.match(value):
            raise _FieldError(field, f"is malformed: {_show(value)}")
    return check


def _timestamp(value: Any, field: str) -> None:
    _text()(value, field)
    try:
        datetime.fromisoformat(value)
    except ValueError:
        raise _FieldError(field, f"must be an ISO 8601 time, got {_show(value)}") from None


def _object(fields: Mapping[str, Check], *, extra: Check | None = None,
            optional: tuple[str, ...] = ()) -> Check:
    def check(value: Any, field: str) -> None:
        if not isinstance(value, dict):
            raise _FieldError(field, f"must be an object, got {_show(value)}")
        for key, sub in fields.items():
            if key not in value:
                if key in optional:
                    continue
                raise _FieldError(_join(field, key), "missing")
            sub(value[key], _join(field, key))
        for key in value.keys() - fields.keys():
            if extra is None:
                raise _FieldError(_join(field, key), "is not a known field")
            extra(value[key], _join(field, key))
    return check


def _nullable(inner: Check) -> Check:
    def check(value: Any, field: str) -> None:
        if value is not None:
            inner(value, field)
    return check


def _json_scalar(value: Any, field: str) -> None:
    if not (value is None or isinstance(value, (str, int, float, bool))):
        raise _FieldError(field, f"must be a plain value, got {_show(value)}")


def _file_name(role: str) -> Check:
    def check(value: Any, field: str) -> None:
        _text()(value, field)
        # A name with a separator could point outside the collection folder.
        if Path(value).name != value or value.startswith(".") or not value.endswith(ROLES[role]):
            raise _FieldError(field, f"is a bad file name for {role}: {_show(value)}")
    return check


def _files(value: Any, field: str) -> None:
    if not isinstance(value, dict):
        raise _FieldError(field, f"must be an object, got {_show(value)}")
    for role in value.keys() - ROLES.keys():
        raise _FieldError(_join(field, role), "is not a known file role")
    checked = any(isinstance(entry, dict) and CHECKSUM_KEY in entry for entry in value.values())
    for role in ROLES:
        where = _join(field, role)
        if role not in value:
            if role in REQUIRED_ROLES:
                raise _FieldError(where, "missing")
            continue
        if value[role] is None and role not in REQUIRED_ROLES:
            continue
        # Checksums are optional only for collections written before they existed: once one
        # file has one, every file must (a deleted checksum would switch verification off).
        _object({"name": _file_name(role), "bytes": _int(0, MAX_FILE_BYTES),
                 CHECKSUM_KEY: _text(pattern=re.compile(r"[0-9a-f]{32}\Z"))},
                optional=() if checked else (CHECKSUM_KEY,))(value[role], where)


def _index(value: Any, field: str) -> None:
    if not isinstance(value, dict):
        raise _FieldError(field, f"must be an object, got {_show(value)}")
    for kind in value.keys() - {"image", "text"}:
        raise _FieldError(_join(field, kind), "is not a known index")
    params = _object({
        "space": _text(choices=("ip",)), "dim": _int(1, MAX_DIM), "M": _int(2, 4096),
        "ef_construction": _int(1, 1 << 20), "ef": _nullable(_int(1, 1 << 20)),
        "random_seed": _int(0, 2**63 - 1), "count": _int(0, MAX_COUNT),
        "live": _int(0, MAX_COUNT), "hnswlib": _text(),
    }, extra=_json_scalar)
    for kind in value:
        _nullable(params)(value[kind], _join(field, kind))


def _projection(value: Any, field: str) -> None:
    if value == {}:
        return  # no map yet (a collection without images)
    _object({"method": _text(), "n": _int(0, MAX_COUNT), "scale": _number(positive=True),
             "scale_k": _int(1, 10_000), "seconds": _number(positive=False)},
            extra=_json_scalar, optional=("scale", "scale_k", "seconds"))(value, field)


def _versions(value: Any, field: str) -> None:
    _object({}, extra=_text())(value, field)


_COUNT = _int(0, MAX_COUNT)
_TOP: dict[str, Check] = {
    "format": _text(choices=(FORMAT_NAME,)),
    "format_version": _int(1, FORMAT_VERSION),
    "created": _timestamp,
    "updated": _timestamp,
    "model": _object({"name": _text(), "fingerprint": _text(pattern=_HEX),
                      "preprocess_version": _int(0, 1 << 16)}),
    "dim": _int(1, MAX_DIM),
    "precision": _text(choices=("float16", "float32")),
    "generation": _int(0, 2**53),
    "counts": _object({key: _COUNT for key in ("items", "images", "texts", "failed", "deleted",
                                               "live")}),
    "index": _index,
    "projection": _projection,
    "files": _files,
    "paths": _text(),
    "versions": _versions,
}
_TOP_CHECK = _object(_TOP, extra=lambda value, field: None)  # later versions may add fields


def _join(parent: str, key: str) -> str:
    return f"{parent}.{key}" if parent else key


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
