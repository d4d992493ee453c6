"""Legacy M-CLIP heads: the restricted unpickler, shape checks, safetensors conversion."""

from __future__ import annotations

import builtins
import os
import pickle
from pathlib import Path

import numpy as np
import pytest

from mclip_explorer.errors import BadWeightsError, UnsafeFileError, WeightsNotFoundError
from mclip_explorer.models.heads import convert_head, load_head, read_head_pickle
from mclip_explorer.models.weights import HEAD_ENV, resolve_head
from tests.twins.mclip import keras_head_pickle


def _arrays(dim: int = 640, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.standard_normal((768, dim)).astype(np.float32), rng.standard_normal(dim).astype(
        np.float32)


class _Call:
    """Pickles as ``func(*args)``: what a malicious head file would do on load."""

    def __init__(self, func: object, *args: object) -> None:
        self.func, self.args = func, args

    def __reduce__(self) -> tuple[object, tuple[object, ...]]:
        return self.func, self.args


# ------------------------------------------------------------------------------ good files
# NumPy 1.x module paths are written by rewriting the text-named globals of protocols 2-3 (the
# 2021 files' protocols); protocols 4-5 name them length-prefixed.
@pytest.mark.parametrize(
    ("protocol", "numpy1_paths"), [(2, True), (3, True), (2, False), (3, False), (4, False),
                                   (5, False)])
def test_keras_list_reads_in_every_protocol(tmp_path: Path, protocol: int, numpy1_paths: bool):
    kernel, bias = _arrays()
    data = pickle.dumps([kernel, bias], protocol=protocol)
    if numpy1_paths:
        data = data.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
        assert b"numpy.core.multiarray" in data
    path = tmp_path / "head.pkl"
    path.write_bytes(data)
    head = load_head(path, out_features=640)
    np.testing.assert_array_equal(head.weight, kernel.T)
    np.testing.assert_array_equal(head.bias, bias)
    assert (head.in_features, head.out_features) == (768, 640)


def test_twin_pickle_matches_what_plain_pickle_reads(tmp_path: Path):
    path = tmp_path / "head.pkl"
    path.write_bytes(keras_head_pickle(512, seed=3))
    expected = pickle.loads(path.read_bytes())  # our own file: the reference reads it this way
    head = load_head(path, out_features=512)
    np.testing.assert_array_equal(head.weight, expected[0].T)
    np.testing.assert_array_equal(head.bias, expected[1])


def test_head_to_linear_computes_keras_dense(tmp_path: Path):
    kernel, bias = _arrays(dim=8 * 64)
    path = tmp_path / "head.pkl"
    path.write_bytes(pickle.dumps([kernel, bias]))
    x = np.random.default_rng(1).standard_normal((3, 768)).astype(np.float32)
    out = load_head(path).to_linear()(__import__("torch").from_numpy(x)).detach().numpy()
    np.testing.assert_allclose(out, x @ kernel + bias, atol=1e-4)


# ------------------------------------------------------------------------- malicious files
def test_os_system_pickle_is_refused_and_not_run(tmp_path: Path):
    marker = tmp_path / "pwned"
    payload = pickle.dumps([_Call(os.system, f"touch '{marker}'"), np.zeros(640, np.float32)])
    # Control: the file really does run its command when unpickled normally.
    pickle.loads(payload)
    assert marker.exists()
    marker.unlink()
    path = tmp_path / "evil.pkl"
    path.write_bytes(payload)
    with pytest.raises(UnsafeFileError) as info:
        load_head(path)
    assert not marker.exists()
    assert str(path) in str(info.value)
    assert "system" in str(info.value)


def test_eval_pickle_is_refused_and_not_run(tmp_path: Path):
    marker = tmp_path / "pwned"
    code = f"open({str(marker)!r}, 'w').close()"
    payload = pickle.dumps(_Call(builtins.eval, code), protocol=2)
    pickle.loads(payload)  # control: plain pickle runs it
    assert marker.exists()
    marker.unlink()
    path = tmp_path / "evil.pkl"
    path.write_bytes(payload)
    with pytest.raises(UnsafeFileError, match=r"builtin__\.eval"):  # protocol 2 names
        read_head_pickle(path)
    assert not marker.exists()


@pytest.mark.parametrize(
    "func", [np.load, getattr, pickle.loads], ids=["numpy.load", "getattr", "pickle.loads"]
)
def test_any_other_global_is_refused(tmp_path: Path, func: object):
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps([_Call(func, "x"), np.zeros(3)], protocol=3))
    with pytest.raises(UnsafeFileError, match="refusing to load"):
        load_head(path)


def test_codecs_helper_admits_latin1_only(tmp_path: Path):
    import codecs

    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps(_Call(codecs.encode, "abc", "rot13"), protocol=2))
    with pytest.raises(BadWeightsError, match="latin1"):
        read_head_pickle(path)


# --------------------------------------------------------------------------- wrong content
@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"kernel": 1}, "holds a dict"),
        (np.zeros((768, 640), np.float32), "holds a ndarray"),
        ([np.zeros((768, 640), np.float32)], "holds 1 item"),
        ([np.zeros((768, 640), np.float32), [0.0] * 640], "bias is a list"),
        ([np.zeros((640, 768), np.float32), np.zeros(640, np.float32)], r"kernel has shape"),
        ([np.zeros((768, 640), np.float32), np.zeros(512, np.float32)], r"bias has shape"),
        ([np.zeros((768, 640), np.int64), np.zeros(640, np.float32)], "expected floats"),
        ([np.full((768, 640), np.nan, np.float32), np.zeros(640, np.float32)], "NaN"),
    ],
    ids=["dict", "array", "one-item", "list-bias", "transposed", "bias-size", "ints", "nan"],
)
def test_wrong_payloads_are_refused_clearly(tmp_path: Path, payload: object, message: str):
    path = tmp_path / "head.pkl"
    path.write_bytes(pickle.dumps(payload))
    with pytest.raises(BadWeightsError, match=message) as info:
        load_head(path)
    assert str(path) in str(info.value)


def test_head_of_another_model_is_refused(tmp_path: Path):
    path = tmp_path / "head.pkl"
    path.write_bytes(keras_head_pickle(640, seed=0))
    with pytest.raises(BadWeightsError, match="maps to 640 dims but this model's space is 512"):
        load_head(path, out_features=512)


@pytest.mark.parametrize("data", [b"", b"not a pickle", b"\x80\x03]q\x00(K\x01"],
                         ids=["empty", "text", "truncated"])
def test_unreadable_files_are_refused_clearly(tmp_path: Path, data: bytes):
    path = tmp_path / "head.pkl"
    path.write_bytes(data)
    with pytest.raises(BadWeightsError, match="not a readable head pickle"):
        load_head(path)


# ------------------------------------------------------------------------------ conversion
def test_convert_head_round_trip(tmp_path: Path):
    src = tmp_path / "M BERT Distil 40 Linear Weights.pkl"
    src.write_bytes(keras_head_pickle(640, seed=5))
    dst = convert_head(src, tmp_path / "M BERT Distil 40 Linear Weights.safetensors")
    assert not list(tmp_path.glob(".*.tmp"))
    original, converted = load_head(src), load_head(dst, out_features=640)
    np.testing.assert_array_equal(original.weight, converted.weight)
    np.testing.assert_array_equal(original.bias, converted.bias)
    from safetensors import safe_open

    with safe_open(str(dst), "np") as handle:
        assert handle.metadata()["source"] == src.name


def test_convert_head_refuses_unsafe_input_and_keeps_existing_output(tmp_path: Path):
    good = tmp_path / "good.pkl"
    good.write_bytes(keras_head_pickle(640, seed=1))
    dst = convert_head(good, tmp_path / "out.safetensors")
    before = dst.read_bytes()
    evil = tmp_path / "evil.pkl"
    evil.write_bytes(pickle.dumps(_Call(os.system, "true")))
    with pytest.raises(UnsafeFileError):
        convert_head(evil, dst)
    assert dst.read_bytes() == before


def test_convert_head_wants_a_safetensors_name(tmp_path: Path):
    src = tmp_path / "head.pkl"
    src.write_bytes(keras_head_pickle(640, seed=1))
    with pytest.raises(ValueError, match=r"\.safetensors"):
        convert_head(src, tmp_path / "head.bin")


def test_bad_safetensors_heads_are_refused(tmp_path: Path):
    from safetensors.numpy import save_file

    path = tmp_path / "head.safetensors"
    save_file({"kernel": np.zeros((768, 640), np.float32)}, str(path))
    with pytest.raises(BadWeightsError, match="expected exactly 'weight' and 'bias'"):
        load_head(path)
    path.write_bytes(b"garbage")
    with pytest.raises(BadWeightsError, match="not a readable safetensors head"):
        load_head(path)


# ------------------------------------------------------------------------------ resolution
def test_resolve_head_prefers_safetensors_and_names_where_it_looked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.delenv(HEAD_ENV, raising=False)
    name = "M-BERT-Base-69 Linear Weights.pkl"
    with pytest.raises(WeightsNotFoundError) as info:
        resolve_head(name, weights_dir=tmp_path)
    assert str(tmp_path / "heads" / name) in str(info.value)
    (tmp_path / "heads").mkdir()
    (tmp_path / "heads" / name).write_bytes(keras_head_pickle(640, seed=2))
    assert resolve_head(name, weights_dir=tmp_path).name == name
    converted = convert_head(tmp_path / "heads" / name,
                             tmp_path / "heads" / "M-BERT-Base-69 Linear Weights.safetensors")
    assert resolve_head(name, weights_dir=tmp_path) == converted
