"""Legacy M-CLIP projection heads: Keras weight pickles read without running code, and safetensors.

The 2021 M-CLIP models publish their ``768 -> d`` linear head only as ``pickle.dump`` of a Keras
``Dense.get_weights()`` list, ``[kernel (768, d), bias (d,)]``. Unpickling calls whatever globals a
file names, so :class:`_HeadUnpickler` admits only the few NumPy callables that rebuild plain
arrays and refuses every other global *before* it can be called. :func:`convert_head` turns such
a pickle into a ``.safetensors`` head, which needs no unpickling at all.
"""

from __future__ import annotations

import hashlib
import io
import pickle
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mclip_explorer._files import atomic_write
from mclip_explorer.errors import BadWeightsError, UnsafeFileError

if TYPE_CHECKING:
    import torch

HEAD_IN_FEATURES = 768  # every legacy M-CLIP text tower is a 768-wide (Distil)BERT
HEAD_FORMAT = "mclip-explorer-head/1"


@dataclass(frozen=True)
class Head:
    """A linear projection head in torch ``Linear`` layout.

    Attributes:
        weight: ``(out_features, in_features)`` float32 (the transposed Keras kernel).
        bias: ``(out_features,)`` float32.
        source: The file it was read from.
    """

    weight: np.ndarray
    bias: np.ndarray
    source: Path

    @property
    def in_features(self) -> int:
        """Width of the pooled text vector the head expects."""
        return int(self.weight.shape[1])

    @property
    def out_features(self) -> int:
        """Size of the shared space the head maps into."""
        return int(self.weight.shape[0])

    def to_linear(self) -> torch.nn.Linear:
        """The head as a ``torch.nn.Linear`` (float32, CPU)."""
        import torch

        linear = torch.nn.Linear(self.in_features, self.out_features)
        with torch.no_grad():
            linear.weight.copy_(torch.from_numpy(self.weight))
            linear.bias.copy_(torch.from_numpy(self.bias))
        return linear


def load_head(
    path: str | Path, *, in_features: int = HEAD_IN_FEATURES, out_features: int | None = None
) -> Head:
    """Read a head from a ``.safetensors`` file or a Keras ``get_weights()`` pickle.

    Args:
        path: The head file; ``.safetensors`` files are read directly, anything else as a pickle
            through the restricted unpickler.
        in_features: Expected input width (the text tower's hidden size).
        out_features: Expected output size (the model's shared dim); ``None`` accepts any.

    Raises:
        UnsafeFileError: The pickle names a global other than the NumPy array machinery.
        BadWeightsError: The file is unreadable or holds the wrong keys, shapes or dtypes.
    """
    path = Path(path)
    if path.suffix == ".safetensors":
        weight, bias = _read_safetensors(path)
    else:
        kernel, bias = _validate_keras_list(read_head_pickle(path), path, in_features)
        weight = kernel.T
    return _checked_head(weight, bias, path, in_features, out_features)


def read_head_pickle(path: str | Path) -> Any:
    """Unpickle ``path`` admitting only what NumPy arrays and lists need; nothing else is called.

    Raises:
        UnsafeFileError: The pickle refers to any other global (a class, a function).
        BadWeightsError: The file cannot be read or is not a pickle.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise BadWeightsError(f"cannot read head file {path}: {exc}") from exc
    try:
        # Safe: _HeadUnpickler.find_class admits only NumPy array reconstruction (see below).
        return _HeadUnpickler(io.BytesIO(data), path).load()
    except UnsafeFileError:
        raise
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, IndexError, KeyError,
            AttributeError, OverflowError) as exc:
        raise BadWeightsError(
            f"{path} is not a readable head pickle ({type(exc).__name__}: {exc})"
        ) from exc


def convert_head(src: str | Path, dst: str | Path) -> Path:
    """Convert a head (Keras pickle or safetensors) to a ``.safetensors`` head, atomically.

    Args:
        src: The head pickle, e.g. ``M-BERT Distil 40 Linear Weights.pkl``.
        dst: The ``.safetensors`` file to write; an existing file is replaced only once the new
            one is complete. Put it next to the pickle with the same stem, or in
            ``<weights_dir>/heads/``, and it is preferred over the pickle.

    Returns:
        ``dst`` as a ``Path``.
    """
    from safetensors.numpy import save

    src, dst = Path(src), Path(dst)
    if dst.suffix != ".safetensors":
        raise ValueError(f"output must end in .safetensors, got {dst}")
    if dst.exists() and src.exists() and dst.resolve() == src.resolve():
        raise ValueError(f"output {dst} is the input file; choose another name")
    head = load_head(src, out_features=None)
    metadata = {
        "format": HEAD_FORMAT,
        "layout": "torch.nn.Linear: weight (out, in), bias (out,)",
        "source": src.name,
        "source_sha256": hashlib.sha256(src.read_bytes()).hexdigest(),
    }
    payload = save({"weight": np.ascontiguousarray(head.weight), "bias": head.bias}, metadata)
    atomic_write(dst, payload)
    return dst


# ---------------------------------------------------------------------------------- internals
def _allowed_globals() -> dict[tuple[str, str], Callable[..., Any]]:
    """The only globals a head pickle may name, mapped to the objects they resolve to.

    Both NumPy 1.x (``numpy.core``) and 2.x (``numpy._core``) module paths are mapped to the
    installed functions directly, so no module is ever imported on a file's behalf.
    """
    try:
        from numpy._core import multiarray, numeric  # NumPy >= 2
    except ImportError:  # pragma: no cover - NumPy 1.x
        from numpy.core import multiarray, numeric  # type: ignore[no-redef]

    allowed: dict[tuple[str, str], Callable[..., Any]] = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("_codecs", "encode"): _latin1_encode,
    }
    for package in ("numpy.core", "numpy._core"):
        allowed[(f"{package}.multiarray", "_reconstruct")] = multiarray._reconstruct
        allowed[(f"{package}.numeric", "_frombuffer")] = numeric._frombuffer  # type: ignore[attr-defined]
    return allowed


def _latin1_encode(text: object, encoding: object = "utf-8") -> bytes:
    # Protocol-2 pickles write bytes as _codecs.encode(str, "latin1"); nothing else is admitted,
    # since a codec name can make Python import a module.
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError(f"_codecs.encode admitted for latin1 only, not {encoding!r}")
    return text.encode("latin1")


class _HeadUnpickler(pickle.Unpickler):
    def __init__(self, file: io.BytesIO, path: Path) -> None:
        super().__init__(file, encoding="latin1")
        self._path = path
        self._allowed = _allowed_globals()

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self._allowed[(module, name)]
        except KeyError:
            raise UnsafeFileError(
                f"refusing to load {self._path}: it names the global {module}.{name}, which "
                "could run code; a head pickle may hold only NumPy arrays in a list"
            ) from None

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafeFileError(f"refusing to load {self._path}: it uses persistent ids")


def _validate_keras_list(
    payload: Any, path: Path, in_features: int
) -> tuple[np.ndarray, np.ndarray]:
    if not isinstance(payload, (list, tuple)):
        raise BadWeightsError(
            f"{path} holds a {type(payload).__name__}, expected the list [kernel, bias] that "
            "Keras get_weights() returns"
        )
    if len(payload) != 2:
        raise BadWeightsError(
            f"{path} holds {len(payload)} item(s), expected 2 ([kernel, bias] of one Dense layer)"
        )
    kernel, bias = payload
    for label, value in (("kernel", kernel), ("bias", bias)):
        if not isinstance(value, np.ndarray):
            raise BadWeightsError(f"{path}: {label} is a {type(value).__name__}, not an array")
    if kernel.ndim != 2 or kernel.shape[0] != in_features:
        raise BadWeightsError(
            f"{path}: kernel has shape {kernel.shape}, expected ({in_features}, d) (Keras layout)"
        )
    return kernel, bias


def _read_safetensors(path: Path) -> tuple[np.ndarray, np.ndarray]:
    from safetensors import SafetensorError
    from safetensors.numpy import load

    try:
        tensors = load(path.read_bytes())
    except (OSError, SafetensorError, ValueError) as exc:
        raise BadWeightsError(f"{path} is not a readable safetensors head: {exc}") from exc
    if set(tensors) != {"weight", "bias"}:
        raise BadWeightsError(
            f"{path} holds tensors {sorted(tensors)}, expected exactly 'weight' and 'bias'"
        )
    return tensors["weight"], tensors["bias"]


def _checked_head(
    weight: np.ndarray, bias: np.ndarray, path: Path, in_features: int, out_features: int | None
) -> Head:
    for label, value in (("weight", weight), ("bias", bias)):
        if value.dtype.kind != "f":
            raise BadWeightsError(f"{path}: {label} has dtype {value.dtype}, expected floats")
    if weight.ndim != 2 or weight.shape[1] != in_features:
        raise BadWeightsError(
            f"{path}: weight has shape {weight.shape}, expected (d, {in_features})"
        )
    d = weight.shape[0]
    if bias.shape != (d,):
        raise BadWeightsError(f"{path}: bias has shape {bias.shape}, expected ({d},)")
    if out_features is not None and d != out_features:
        raise BadWeightsError(
            f"{path}: the head maps to {d} dims but this model's space is {out_features}-d; "
            "is it the head of another model?"
        )
    weight = np.ascontiguousarray(weight, dtype=np.float32)
    bias = np.ascontiguousarray(bias, dtype=np.float32)
    if not (np.isfinite(weight).all() and np.isfinite(bias).all()):
        raise BadWeightsError(f"{path}: the head holds NaN or infinite values")
    return Head(weight=weight, bias=bias, source=path)
