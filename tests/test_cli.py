"""The ``mclip-explorer`` command: every subcommand and its bad-input paths (exit 2, one line)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mclip_explorer.cli import main
from tests.test_collection import make_images
from tests.twins.mclip import keras_head_pickle


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("cli_images")
    make_images(root, colours=("red", "green", "blue", "yellow"))
    return root


@pytest.fixture(scope="module")
def built(images: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("cli") / "coll"
    assert main(["build", str(images), "--model", "toy", "--out", str(out), "-q"]) == 0
    return out


def _bad(capsys: pytest.CaptureFixture[str], argv: list[str], match: str) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert err.startswith("mclip-explorer: error: ") and match in err, err


def test_build_reports_counts_and_failures(images: Path, tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]):
    out = tmp_path / "c"
    assert main(["build", str(images), "--model", "toy", "--out", str(out), "--batch-size", "4",
                 "--workers", "0", "--device", "cpu", "--precision", "float32", "-q"]) == 0
    captured = capsys.readouterr()
    assert f"built {out}: 12 items searchable, 1 failed (toy)" in captured.out
    assert "broken.jpg: not an image" in captured.err
    assert json.loads((out / "manifest.json").read_text())["precision"] == "float32"


def test_build_with_a_map_sample(images: Path, tmp_path: Path):
    out = tmp_path / "c"
    assert main(["build", str(images), "--model", "toy", "--out", str(out), "--workers", "0",
                 "--map-sample", "5", "-q"]) == 0
    projection = json.loads((out / "manifest.json").read_text())["projection"]
    assert projection["sample"] == 5 and projection["placed"] == 12 - 5


def test_build_the_sample(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    out = tmp_path / "sample"
    assert main(["build", "--sample", "--model", "toy", "--out", str(out), "-q"]) == 0
    assert "built" in capsys.readouterr().out
    assert main(["search", str(out), "red", "-k", "1", "--json"]) == 0
    hit = json.loads(capsys.readouterr().out)[0]
    assert hit["category"] and hit["title"] and Path(hit["path"]).is_file()
    _bad(capsys, ["build", "--sample", "x", "--model", "toy", "--out", str(tmp_path / "y")],
         "either an IMAGES folder or --sample")


def test_search_table_and_json(built: Path, capsys: pytest.CaptureFixture[str]):
    assert main(["search", str(built), "rouge", "-k", "2"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split() == ["rank", "score", "id", "title", "path"]
    assert len(table) == 3 and all(" red " in line for line in table[1:])
    assert main(["search", str(built), "grün", "-k", "3", "--json"]) == 0
    hits = json.loads(capsys.readouterr().out)
    assert [hit["rank"] for hit in hits] == [1, 2, 3]
    assert {hit["title"] for hit in hits} == {"green"}
    assert {"id", "path", "score", "x", "y", "folder"} <= set(hits[0])


def test_add_and_info(built: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    coll = tmp_path / "coll"
    shutil.copytree(built, coll)
    more = tmp_path / "more"
    make_images(more, colours=("pink",), per_colour=2, seed=4, broken=False)
    assert main(["add", str(coll), str(more), "-q"]) == 0
    assert "added 2 items" in capsys.readouterr().out
    assert main(["info", str(coll)]) == 0
    info = capsys.readouterr().out
    assert "model       toy" in info and "items       15 (15 images, 0 texts; 14 searchable" in info
    assert main(["info", str(coll), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["counts"]["items"] == 15


def test_models_lists_the_registry(capsys: pytest.CaptureFixture[str]):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "clip-ViT-B-32-multilingual-v1" in out and "toy" in out


def test_convert_head(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    src = tmp_path / "head.pkl"
    src.write_bytes(keras_head_pickle(640, seed=1))
    assert main(["convert-head", str(src), str(tmp_path / "head.safetensors")]) == 0
    assert (tmp_path / "head.safetensors").is_file() and "wrote" in capsys.readouterr().out
    _bad(capsys, ["convert-head", str(src), str(tmp_path / "head.bin")], ".safetensors")
    _bad(capsys, ["convert-head", str(tmp_path / "missing.pkl"),
                  str(tmp_path / "x.safetensors")], "missing.pkl")


def test_bad_input_is_one_line_and_exit_2(images: Path, built: Path, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]):
    out = str(tmp_path / "out")
    _bad(capsys, ["build", str(tmp_path / "nope"), "--model", "toy", "--out", out],
         "folder not found")
    (tmp_path / "empty").mkdir()
    _bad(capsys, ["build", str(tmp_path / "empty"), "--model", "toy", "--out", out],
         "no images found")
    _bad(capsys, ["build", str(images), "--model", "no-such-model", "--out", out],
         "unknown model 'no-such-model'")
    assert not Path(out).exists()  # nothing is created for a build that cannot start
    _bad(capsys, ["search", str(images), "red"], "not a collection")
    damaged = tmp_path / "damaged"
    shutil.copytree(built, damaged)
    # A damaged index is rebuilt (test_collection); damaged embeddings cannot be.
    embeddings = next(damaged.glob("embeddings.*.npy"))
    embeddings.write_bytes(embeddings.read_bytes()[:100])
    for argv in (["info", str(damaged)], ["search", str(damaged), "red"],
                 ["add", str(damaged), str(images)]):
        _bad(capsys, argv, "truncated")
    _bad(capsys, ["search", str(built), "red", "-k", "0"], "must be a positive integer")
    _bad(capsys, ["frobnicate"], "invalid choice")
    _bad(capsys, ["build", str(images)], "--out")


def test_console_script_never_shows_a_traceback(tmp_path: Path):
    done = subprocess.run([sys.executable, "-m", "mclip_explorer.cli", "info", str(tmp_path)],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2
    assert done.stderr.strip() == f"mclip-explorer: error: not a collection (no manifest.json): " \
                                  f"{tmp_path}"


@pytest.mark.parametrize("query", ["", "   ", "\t\n"])
def test_an_empty_query_is_an_error(built: Path, query: str, capsys: pytest.CaptureFixture[str]):
    _bad(capsys, ["search", str(built), query], "empty query")
    assert capsys.readouterr().out == ""  # no hits printed


def test_a_different_source_is_not_replaced_without_overwrite(
        images: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    out = tmp_path / "coll"
    assert main(["build", str(images), "--model", "toy", "--out", str(out), "-q"]) == 0
    other = tmp_path / "other"
    make_images(other, colours=("black", "white"), per_colour=1, broken=False)
    before = (out / "manifest.json").read_bytes()
    capsys.readouterr()
    _bad(capsys, ["build", str(other), "--model", "toy", "--out", str(out), "-q"], "--overwrite")
    assert (out / "manifest.json").read_bytes() == before
    # The same source resumes (nothing to encode again), and --overwrite replaces.
    assert main(["build", str(images), "--model", "toy", "--out", str(out), "-q"]) == 0
    assert main(["build", str(other), "--model", "toy", "--out", str(out), "-q",
                 "--overwrite"]) == 0
    capsys.readouterr()
    assert main(["info", str(out), "--json"]) == 0
    manifest = json.loads(capsys.readouterr().out)
    assert manifest["counts"]["items"] == 2


def test_missing_weights_exit_3_and_damaged_weights_exit_2(
        images: Path, tmp_path: Path, weights_dir: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]):
    # Exit 3 is what scripts/quickstart.sh falls back to the toy model on; nothing else is.
    import huggingface_hub.constants as constants

    from mclip_explorer.models import DEFAULT_MODEL, get_spec

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.delenv("MCLIP_EXPLORER_WEIGHTS", raising=False)
    argv = ["build", str(images), "--model", DEFAULT_MODEL, "--out", str(tmp_path / "c"), "-q"]
    assert main(argv) == 3
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "could not load" in err and "clip-ViT-B-32" in err
    spec = get_spec(DEFAULT_MODEL)
    local = tmp_path / "weights"
    for repo in (spec.text_repo, spec.image_repo):
        shutil.copytree(weights_dir / repo, local / repo)
    bad = local / spec.text_repo / "model.safetensors"
    bad.write_bytes(b"\0" * 64)
    monkeypatch.setenv("MCLIP_EXPLORER_WEIGHTS", str(local))
    _bad(capsys, argv, str(bad))
