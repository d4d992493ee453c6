"""The Ray engine on one local cluster: same collection as the local engine, and its faults.

Tolerance: the toy encoder embeds each image on its own, so both engines must agree bit for bit
(embeddings, map, index graph, search results), whatever batches Ray forms. A torch model (a
tiny random-weight ViT-B/32 twin) sees other batch compositions under Ray, so its float32
embeddings may differ in the last bits: within 1e-5 absolute, with identical search results.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tarfile
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from mclip_explorer.collection import Collection
from tests.ray_encoders import KillOnceEncoder, LoggingEncoder, logged
from tests.shards import add_member, colour_png, make_parquet, make_webdataset
from tests.test_collection import make_images
from tests.test_resume import _assert_same, _state

pytestmark = pytest.mark.timeout(300)
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wds(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Three good shards and one with an undecodable image and a sample without an image."""
    root = tmp_path_factory.mktemp("wds")
    make_webdataset(root, shards=3, per_shard=5)
    with tarfile.open(root / "00003.tar", "w") as tar:
        add_member(tar, "bad.png", b"\x89PNG\r\n\x1a\n broken")
        add_member(tar, "nothing.txt", b"no image here")
        add_member(tar, "good.png", colour_png("purple", 77))
    return f"{root}/{{00000..00003}}.tar"


@pytest.fixture(scope="module")
def reference(wds: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    out = tmp_path_factory.mktemp("reference") / "c"
    Collection.build(wds, model="toy", out=out, progress=False)
    return _state(out)


def test_webdataset_builds_the_same_collection_on_ray(ray_cluster: str, wds: str,
                                                      reference: dict[str, object],
                                                      tmp_path: Path):
    coll = Collection.build(wds, model="toy", out=tmp_path / "c", progress=False, engine="ray",
                            shard_size=3)
    state = _state(coll.path)
    _assert_same(state, reference)
    assert state["items"]["error"].notna().sum() == 2  # the failures travel too


def test_parquet_builds_the_same_collection_on_ray(ray_cluster: str, tmp_path: Path):
    make_parquet(tmp_path / "pq", shards=3, per_shard=4)
    local = Collection.build(tmp_path / "pq", model="toy", out=tmp_path / "l", progress=False)
    remote = Collection.build(tmp_path / "pq", model="toy", out=tmp_path / "r", progress=False,
                              engine="ray")
    _assert_same(_state(remote.path), _state(local.path))
    assert remote.items["url"].notna().all()


def test_torch_twin_agrees_within_float_tolerance(ray_cluster: str, wds: str, tmp_path: Path):
    from mclip_explorer.models import load_model
    from tests.twins.openclip import CLIP_TEXT, IMAGE_TOWERS, write_open_clip_repo

    repo = "timm/vit_base_patch32_clip_224.openai"
    dim, vision, _ = IMAGE_TOWERS[repo]
    write_open_clip_repo(tmp_path / "weights" / repo, {"embed_dim": dim, "vision_cfg": vision,
                                                       "text_cfg": CLIP_TEXT, "quick_gelu": True})
    encoder = load_model("open_clip:ViT-B-32-quickgelu/openai", device="cpu",
                         weights_dir=tmp_path / "weights")
    options = {"model": encoder, "progress": False, "batch_size": 4, "precision": "float32"}
    local = Collection.build(wds, out=tmp_path / "l", **options)
    remote = Collection.build(wds, out=tmp_path / "r", engine="ray", shard_size=3, **options)
    assert remote.items.equals(local.items)
    np.testing.assert_allclose(remote.vectors()[1], local.vectors()[1], rtol=0, atol=1e-5)
    queries = [int(i) for i in local.vectors()[0][:5]]
    assert (remote.search(queries, k=5)["id"].tolist()
            == local.search(queries, k=5)["id"].tolist())


def test_image_folder_through_read_binary_files(ray_cluster: str, tmp_path: Path):
    make_images(tmp_path / "img", colours=("red", "green", "blue"))
    local = Collection.build(tmp_path / "img", model="toy", out=tmp_path / "l", progress=False)
    remote = Collection.build(tmp_path / "img", model="toy", out=tmp_path / "r", progress=False,
                              engine="ray")
    _assert_same(_state(remote.path), _state(local.path))


def test_add_with_the_ray_engine(ray_cluster: str, wds: str, reference: dict[str, object],
                                 tmp_path: Path):
    first = wds.replace("{00000..00003}", "{00000..00001}")
    coll = Collection.build(first, model="toy", out=tmp_path / "c", progress=False, engine="ray")
    added = coll.add(wds, progress=False, engine="ray")
    assert len(added) == len(reference["items"]) - 10
    assert coll.items["key"].tolist() == reference["items"]["key"].tolist()


def test_cli_engine_ray(ray_cluster: str, wds: str, reference: dict[str, object],
                        tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    from mclip_explorer.cli import main

    out = tmp_path / "c"
    assert main(["build", wds, "--model", "toy", "--out", str(out), "--engine", "ray",
                 "--address", ray_cluster, "--concurrency", "1", "--quiet"]) == 0
    _assert_same(_state(out), reference)
    assert main(["build", wds, "--model", "toy", "--out", str(tmp_path / "d"),
                 "--address", ray_cluster, "--quiet"]) == 2
    assert "engine='ray' only" in capsys.readouterr().err


def test_a_killed_worker_is_retried_and_the_result_is_unchanged(
        ray_cluster: str, wds: str, reference: dict[str, object], tmp_path: Path):
    marker = tmp_path / "killed"
    coll = Collection.build(wds, model=KillOnceEncoder(str(marker)), out=tmp_path / "c",
                            progress=False, engine="ray", shard_size=3)
    victim = int(marker.read_text())
    assert victim != os.getpid()  # a Ray worker died, not this driver
    _assert_same(_state(coll.path), reference)


DRIVER = textwrap.dedent("""
    import sys
    from mclip_explorer.collection import Collection
    from tests.ray_encoders import LoggingEncoder
    source, out, log, address = sys.argv[1:5]
    Collection.build(source, model=LoggingEncoder(log, delay=0.5), out=out, progress=False,
                     engine="ray", address=address, shard_size=2)
""")


def _cached_keys(out: Path) -> set[str]:
    keys: set[str] = set()
    for shard in out.glob("cache/*/shard-*.npz"):
        with np.load(shard) as data:
            keys.update(data["keys"].astype(str))
    return keys


def _wait(condition, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_a_killed_driver_resumes_and_encodes_only_unfinished_work(
        ray_cluster: str, wds: str, reference: dict[str, object], tmp_path: Path):
    import ray

    out, log = tmp_path / "c", tmp_path / "first.log"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    child = subprocess.Popen([sys.executable, "-c", DRIVER, wds, str(out), str(log), ray_cluster],
                             env=env, start_new_session=True, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE)
    try:
        _wait(lambda: len(list(out.glob("cache/*/shard-*.npz"))) >= 2 or child.poll() is not None,
              180, "the first blocks")
        assert child.poll() is None, child.stderr.read().decode()[-2000:] if child.stderr else ""
        os.killpg(child.pid, signal.SIGKILL)  # the driver's whole process group
        assert child.wait(30) == -signal.SIGKILL
    finally:
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGKILL)
    assert not (out / "manifest.json").exists()
    # Ray kills the dead job's actors (they are not in the driver's process group); wait until
    # their CPUs are back, so nothing else can be in flight before the files are judged.
    _wait(lambda: ray.available_resources().get("CPU", 0) >= 2, 120, "the dead job's workers")
    cached = _cached_keys(out)
    every = {k for k in reference["items"]["sha256"] if isinstance(k, str)}
    assert 0 < len(cached & every) < len(every)  # killed mid-build
    rerun_log = tmp_path / "rerun.log"
    coll = Collection.build(wds, model=LoggingEncoder(str(rerun_log)), out=out, progress=False,
                            engine="ray", shard_size=2)
    assert logged(rerun_log) == len(every - cached)
    assert logged(log) + logged(rerun_log) >= len(every)
    _assert_same(_state(coll.path), reference)


class _FakeRay:
    def __init__(self, cpus: float, gpus: int = 0) -> None:
        self.cpus, self.gpus = cpus, gpus

    def cluster_resources(self) -> dict[str, float]:
        return {"CPU": self.cpus, "GPU": self.gpus} if self.gpus else {"CPU": self.cpus}

    def available_resources(self) -> dict[str, float]:
        return {"CPU": self.cpus}


@pytest.mark.parametrize(("cpus", "gpus", "concurrency", "expected"), [
    # 2 free CPUs: one actor; one CPU stays free for the read tasks; torch may use both cores.
    (2, 0, None, {"size": 1, "num_gpus": 0, "num_cpus": 1.0, "threads": 2}),
    # 16 free CPUs: one actor per 4 CPUs, 15 CPUs shared among them.
    (16, 0, None, {"size": 4, "num_gpus": 0, "num_cpus": 3.75, "threads": 4}),
    (2, 0, 3, {"size": 3, "num_gpus": 0, "num_cpus": 0.33, "threads": 1}),
    (1, 0, None, {"size": 1, "num_gpus": 0, "num_cpus": 0.5, "threads": 1}),
    # GPUs: one actor per GPU, each holding one.
    (16, 2, None, {"size": 2, "num_gpus": 1, "num_cpus": 1}),
])
def test_actor_pool_is_sized_from_free_resources(cpus: float, gpus: int,
                                                 concurrency: int | None, expected: dict):
    from mclip_explorer.collection.engines.ray import pool_options

    options = pool_options(_FakeRay(cpus, gpus), concurrency)
    assert {k: options[k] for k in expected} == expected
