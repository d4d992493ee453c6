"""Tiny WebDataset and parquet shards of toy-colour images (img2dataset's layouts), offline."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from mclip_explorer.models.toy import COLOURS

NAMES = list(COLOURS)


def colour_png(name: str, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    pixels = np.clip(np.array(COLOURS[name][0]) + rng.integers(-25, 25, (24, 24, 3)), 0, 255)
    buffer = io.BytesIO()
    Image.fromarray(pixels.astype(np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def samples(shard: int, per_shard: int) -> list[tuple[str, str, bytes]]:
    """(key, colour, png) of one shard; keys follow img2dataset (shard * 10**4 + row, 9 digits)."""
    out = []
    for row in range(per_shard):
        name = NAMES[(shard * per_shard + row) % len(NAMES)]
        out.append((f"{shard * 10**4 + row:09d}", name, colour_png(name, shard * 100 + row)))
    return out


def add_member(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def write_tar(path: Path, shard: int, per_shard: int) -> list[tuple[str, str, bytes]]:
    rows = samples(shard, per_shard)
    with tarfile.open(path, "w") as tar:
        for key, name, png in rows:
            add_member(tar, f"{key}.png", png)
            add_member(tar, f"{key}.txt", f"a <b>{name}</b> square".encode())
            add_member(tar, f"{key}.json", json.dumps({"url": f"http://x/{key}",
                                                       "colour": name}).encode())
    return rows


def make_webdataset(root: Path, shards: int = 3, per_shard: int = 5) -> list[Path]:
    root.mkdir(parents=True, exist_ok=True)
    paths = [root / f"{s:05d}.tar" for s in range(shards)]
    for s, path in enumerate(paths):
        write_tar(path, s, per_shard)
    return paths


def make_parquet(root: Path, shards: int = 2, per_shard: int = 5) -> list[Path]:
    root.mkdir(parents=True, exist_ok=True)
    paths = []
    for s in range(shards):
        rows = samples(s, per_shard)
        frame = pd.DataFrame({"key": [k for k, _, _ in rows], "jpg": [p for _, _, p in rows],
                              "txt": [f"{n} square" for _, n, _ in rows],
                              "url": [f"http://x/{k}" for k, _, _ in rows],
                              "width": [24] * len(rows), "status": ["success"] * len(rows)})
        path = root / f"{s:05d}.parquet"
        frame.to_parquet(path, index=False, row_group_size=2)
        paths.append(path)
    return paths
