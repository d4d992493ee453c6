"""Which model a notebook or demo runs: the real one when its weights can be had, else the toy.

This is the one place that decides it, so every notebook runs top to bottom however it is
opened (JupyterLab, ``jupyter nbconvert --execute``, VS Code), offline or not. Only *missing*
weights lead to the toy model: a damaged file, a wrong path or a broken install is an error.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from mclip_explorer.errors import WeightsNotFoundError
from mclip_explorer.models.registry import DEFAULT_MODEL

if TYPE_CHECKING:
    from pathlib import Path

    from mclip_explorer.models.base import Encoder

MODEL_ENV = "MCLIP_EXPLORER_MODEL"
FALLBACK_MODEL = "toy"


class ModelFallbackWarning(UserWarning):
    """The wanted model's weights are missing, so the toy model is used instead."""


@dataclass(frozen=True)
class ModelChoice:
    """The model picked by :func:`pick_model`.

    Attributes:
        name: The model in use (pass it, or ``encoder``, to ``explore``/``Collection.build``).
        encoder: The loaded model.
        wanted: The model that was asked for.
        note: Why another model than ``wanted`` is used and how to get it; empty if none.
    """

    name: str
    encoder: Encoder = field(repr=False)
    wanted: str
    note: str = ""

    @property
    def fell_back(self) -> bool:
        """Whether the toy model stands in for the wanted one."""
        return self.name != self.wanted

    def __str__(self) -> str:
        return f"model: {self.name}" + (f"\n{self.note}" if self.note else "")

    def _repr_markdown_(self) -> str:
        if not self.note:
            return f"Model: **{self.name}**"
        return f"Model: **{self.name}**\n\n> **Note:** {self.note}"


def pick_model(wanted: str | None = None, *, device: str | None = None,
               weights_dir: str | Path | None = None) -> ModelChoice:
    """Load ``wanted``; if its weights are missing and cannot be fetched, the toy model instead.

    Args:
        wanted: A model name. Default: ``$MCLIP_EXPLORER_MODEL``, else
            ``clip-ViT-B-32-multilingual-v1``. Only this default falls back: a model named here
            or in the environment must load, or its error is raised.
        device: Passed to :func:`~mclip_explorer.models.load_model`.
        weights_dir: Passed to :func:`~mclip_explorer.models.load_model`.

    Returns:
        The choice; when it fell back, a :class:`ModelFallbackWarning` carrying the same note
        has been issued, and displaying the choice in a notebook shows the note.

    Raises:
        WeightsNotFoundError: A model asked for explicitly has no weights here, or the weights
            folder given (``weights_dir`` or ``$MCLIP_EXPLORER_WEIGHTS``) does not exist.
        BadWeightsError: Weights were found but are damaged (the message names the file).
    """
    from mclip_explorer.models import load_model
    from mclip_explorer.models.weights import WEIGHTS_ENV, weights_home

    explicit = wanted or os.environ.get(MODEL_ENV) or None
    name = explicit or DEFAULT_MODEL
    home = weights_home(weights_dir)
    if home is not None and not home.is_dir():
        # A mistyped folder is not "no weights on this machine": say so instead of falling back.
        where = "weights_dir" if weights_dir is not None else f"${WEIGHTS_ENV}"
        raise WeightsNotFoundError(f"{where} points to {home}, which is not a folder")
    try:
        return ModelChoice(name, load_model(name, device=device, weights_dir=weights_dir), name)
    except WeightsNotFoundError as exc:
        if explicit is not None:
            raise
        reason = str(exc).split(". ")[0].rstrip(".")  # what was missing, without the advice
    note = (f"The weights of {name} are not on this machine and could not be downloaded "
            f"({reason}). Using the built-in '{FALLBACK_MODEL}' model instead: it only knows "
            "colours (colour words in 14 languages, colour histograms of images), so results are "
            f"about colour alone. To use {name}, run this once with network access (its weights "
            "are then cached), or put a copy under $MCLIP_EXPLORER_WEIGHTS (see the README, "
            "'Where the weights come from').")
    warnings.warn(note, ModelFallbackWarning, stacklevel=2)
    encoder = load_model(FALLBACK_MODEL, device=device)
    return ModelChoice(FALLBACK_MODEL, encoder, name, note)
