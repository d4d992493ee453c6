"""Where a model's weights come from: an explicit path, the local weights folder, or the hub id.

The local weights folder (``$MCLIP_EXPLORER_WEIGHTS`` or ``load_model(..., weights_dir=...)``)
mirrors hub ids: ``<weights_dir>/M-CLIP/M-BERT-Distil-40/`` holds what the hub repo
``M-CLIP/M-BERT-Distil-40`` holds. Legacy M-CLIP head files live in ``<weights_dir>/heads/``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from mclip_explorer.errors import BadWeightsError, WeightsNotFoundError

WEIGHTS_ENV = "MCLIP_EXPLORER_WEIGHTS"
HEAD_ENV = "MCLIP_EXPLORER_HEAD"
# Hub repos also carry ONNX/OpenVINO/TF/Flax copies of the weights that are never read.
OTHER_FRAMEWORK_FILES = ["onnx/*", "openvino/*", "*.onnx", "*.h5", "*.msgpack", "*.ot",
                         "tf_model*", "flax_model*", "rust_model*"]


def weights_home(weights_dir: str | Path | None = None) -> Path | None:
    """The local weights folder, if one is configured."""
    value = weights_dir if weights_dir is not None else os.environ.get(WEIGHTS_ENV)
    return Path(value).expanduser() if value else None


def resolve_repo(
    repo_id: str, override: str | Path | None = None, weights_dir: str | Path | None = None
) -> str:
    """Return a local folder for ``repo_id`` if there is one, else the hub id itself.

    Raises:
        WeightsNotFoundError: ``override`` was given but does not exist.
    """
    if override is not None:
        path = Path(override).expanduser()
        if not path.exists():
            raise WeightsNotFoundError(f"weights path for {repo_id!r} does not exist: {path}")
        return str(path)
    home = weights_home(weights_dir)
    if home is not None and (home / repo_id).exists():
        return str(home / repo_id)
    return repo_id


def locate_repo(
    repo: str,
    override: str | Path | None,
    weights_dir: str | Path | None,
    *,
    allow_patterns: list[str] | None = None,
    ignore_patterns: list[str] | None = None,
    file_ok: bool = False,
    check_local: bool = True,
) -> Path:
    """A local copy of hub repo ``repo``: override, weights folder, else the Hugging Face cache.

    The one place a model family turns a repo id into files; the hub (its local cache, or a
    download where allowed) is asked only when nothing local exists.

    Args:
        repo: Hub repo id.
        override: An explicit folder (or file, with ``file_ok``) given by the caller.
        weights_dir: The local weights folder (default ``$MCLIP_EXPLORER_WEIGHTS``).
        allow_patterns: Only these files of the repo are fetched from the hub.
        ignore_patterns: These files of the repo are never fetched.
        file_ok: A single checkpoint file is acceptable in place of a folder.
        check_local: Check the safetensors headers of a local copy too (a family that reads
            and checks its files itself, with its own messages, passes False); a copy from
            the hub cache is always checked.

    Raises:
        WeightsNotFoundError: Neither local nor obtainable from the hub (the message says how
            to provide it), or a file where a folder is needed.
        BadWeightsError: A safetensors file of the copy found is damaged (named).
    """
    found = Path(resolve_repo(repo, override, weights_dir))
    if found.is_dir() or (file_ok and found.exists()):
        if check_local:
            check_weight_files(found, repo)
        return found
    if found.exists():
        raise WeightsNotFoundError(f"{found} is a file; {repo!r} needs its repo folder")
    patterns = {"allow_patterns": allow_patterns, "ignore_patterns": ignore_patterns}
    return fetch_snapshot(repo, **{k: v for k, v in patterns.items() if v is not None})


def one_checkpoint(name: str, text: str | Path | None,
                   image: str | Path | None) -> str | Path | None:
    """The folder override of a model whose towers share one checkpoint (``text=`` or ``image=``).

    Raises:
        TypeError: Two different folders were given.
    """
    if text is not None and image is not None and Path(text) != Path(image):
        raise TypeError(f"{name} keeps both towers in one checkpoint: pass its folder once "
                        "(text= or image=)")
    return image if image is not None else text


def resolve_head(
    head_file: str, override: str | Path | None = None, weights_dir: str | Path | None = None,
    aliases: tuple[str, ...] = (),
) -> Path:
    """Find a legacy M-CLIP head: argument, ``$MCLIP_EXPLORER_HEAD``, then the weights folder.

    A ``.safetensors`` file next to the pickle (same stem) is preferred, as it needs no unpickling.
    In the weights folder ``head_file`` is looked for first, then each of ``aliases``.

    Raises:
        WeightsNotFoundError: The head is nowhere; the message lists every place looked at.
    """
    looked: list[str] = []
    candidates: list[Path] = []
    if override is not None:
        candidates.append(Path(override).expanduser())
    elif os.environ.get(HEAD_ENV):
        candidates.append(Path(os.environ[HEAD_ENV]).expanduser())
    else:
        home = weights_home(weights_dir)
        if home is not None:
            for name in (head_file, *aliases):
                stem = Path(name).stem
                candidates += [home / "heads" / f"{stem}.safetensors", home / "heads" / name]
    for path in candidates:
        looked.append(str(path))
        if path.is_file():
            return path
    where = ", ".join(looked) if looked else f"nowhere (set {HEAD_ENV} or {WEIGHTS_ENV})"
    raise WeightsNotFoundError(
        f"projection head {head_file!r} not found; looked at {where}. "
        "See the README section 'Legacy M-CLIP head files' for where to get it."
    )


def hub_hint(repo_id: str) -> str:
    """The advice appended to a failed load of ``repo_id``."""
    return (
        f"could not load {repo_id!r}: it is not a local folder and the Hugging Face Hub could not "
        f"provide it. Download it once with network access, or put a copy at "
        f"${WEIGHTS_ENV}/{repo_id}, or pass its folder explicitly (text=..., image=...)."
    )


def fetch_snapshot(repo_id: str, **patterns: Any) -> Path:
    """The Hugging Face cache's folder of ``repo_id``, downloading what is missing.

    Args:
        repo_id: The hub id.
        **patterns: ``allow_patterns`` / ``ignore_patterns`` for ``snapshot_download``.

    Raises:
        WeightsNotFoundError: Not in the cache and the hub cannot provide it (offline, unknown
            repo, no access). Any other failure (a broken install, a damaged cached file) is
            raised as itself, never blamed on the network.
        BadWeightsError: A cached safetensors file is damaged.
    """
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HFValidationError

    try:
        folder = Path(snapshot_download(repo_id, **patterns))
    except HFValidationError as exc:  # e.g. a path that does not exist: no hub id either
        raise WeightsNotFoundError(f"{repo_id!r} is neither a local folder nor a hub id "
                                   f"({exc})") from exc
    except OSError as exc:  # every hub and connection error of huggingface_hub is an OSError
        raise WeightsNotFoundError(hub_hint(repo_id)) from exc
    check_weight_files(folder, repo_id)
    return folder


def check_weight_files(folder: str | Path, repo_id: str) -> None:
    """Read the header of every safetensors file in ``folder`` (or of ``folder``, a file).

    Raises:
        BadWeightsError: A file is truncated or not safetensors; the message names it.
    """
    from safetensors import safe_open

    root = Path(folder)
    files = [root] if root.suffix == ".safetensors" else sorted(root.rglob("*.safetensors"))
    for path in files:
        try:
            with safe_open(str(path), framework="numpy"):
                pass
        except Exception as exc:  # noqa: BLE001 - safetensors raises its own error type
            raise BadWeightsError(
                f"damaged weights file {path} (of {repo_id!r}): {exc}. Delete it and download "
                "it again (a partial download or a full disk leaves such files)."
            ) from None
