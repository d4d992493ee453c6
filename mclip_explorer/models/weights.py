"""Where a model's weights come from: an explicit path, the local weights folder, or the hub id.

The local weights folder (``$MCLIP_EXPLORER_WEIGHTS`` or ``load_model(..., weights_dir=...)``)
mirrors hub ids: ``<weights_dir>/M-CLIP/M-BERT-Distil-40/`` holds what the hub repo
``M-CLIP/M-BERT-Distil-40`` holds. Legacy M-CLIP head files live in ``<weights_dir>/heads/``.
"""

from __future__ import annotations

import os
from pathlib import Path

from mclip_explorer.errors import WeightsNotFoundError

WEIGHTS_ENV = "MCLIP_EXPLORER_WEIGHTS"
HEAD_ENV = "MCLIP_EXPLORER_HEAD"


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
