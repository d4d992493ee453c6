"""Zero-shot classification: a list of labels in any language becomes a classifier.

Each class is embedded as text (every phrasing, through every template, averaged: CLIP's prompt
ensembling), and each item takes the class whose embedding is nearest. Because the text tower is
multilingual, one class may be named in several languages at once.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from mclip_explorer.analysis._common import as_ids, as_unit, check_kind, encode_texts, item_vectors

# CLIP's learned logit scale is 100; dividing by it gives the softmax CLIP itself would compute.
DEFAULT_TEMPERATURE = 0.01

Labels = Sequence[str] | Mapping[str, str | Sequence[str]]


def zero_shot(
    coll: Any,
    labels: Labels,
    *,
    template: str | Sequence[str] = "{}",
    kind: str = "image",
    temperature: float = DEFAULT_TEMPERATURE,
) -> pd.DataFrame:
    """Classify every item of a collection against labels written in any language(s).

    Args:
        coll: A :class:`~mclip_explorer.Collection`.
        labels: Either a list of label texts (each its own class, named by itself, e.g.
            ``["Hund", "chat", "鳥"]``) or a mapping of class name -> one phrasing or a list of
            phrasings, possibly in several languages (``{"dog": ["dog", "Hund", "犬"]}``).
        template: A format string with one ``{}`` (``"a photo of a {}"``), or several whose
            embeddings are averaged; the template should be in the labels' language.
        kind: Which items to classify: ``"image"`` (default) or ``"text"``.
        temperature: Softmax temperature over the cosines (models scored by softmax).

    Returns:
        One row per classified item: ``id``, ``label`` (the winning class), ``confidence`` (its
        probability), ``score`` (its cosine) and ``margin`` (cosine lead over the runner-up).
        For SigLIP models (``encoder.score_kind == "sigmoid"``) the confidence is the model's
        own sigmoid probability that the image matches the label, independent per label, as
        SigLIP was trained; for the others it is the softmax over the labels.
        ``frame.set_index("id")["label"]`` is a column the map can colour by.
    """
    check_kind(kind)
    names, prompts, owner = expand_labels(labels, template)
    ids, vectors = item_vectors(coll, kind)
    prompt_vectors = encode_texts(coll, prompts)
    class_vectors = class_embeddings(prompt_vectors, owner, len(names))
    encoder = coll.encoder
    scorer = encoder.score if getattr(encoder, "score_kind", "cosine") == "sigmoid" else None
    return classify(ids, vectors, class_vectors, names, temperature=temperature, scorer=scorer)


def expand_labels(
    labels: Labels, template: str | Sequence[str]
) -> tuple[list[str], list[str], np.ndarray]:
    """Class names, every prompt text, and the class index of each prompt.

    Raises:
        ValueError: Empty labels, a repeated class, an empty phrasing, or a template without
            exactly one ``{}``.
    """
    templates = [template] if isinstance(template, str) else list(template)
    if not templates:
        raise ValueError("template must be a string or a non-empty list of strings")
    for t in templates:
        if not isinstance(t, str) or t.count("{}") != 1:
            raise ValueError(f"each template needs exactly one '{{}}' placeholder, got {t!r}")
    if isinstance(labels, str):
        raise TypeError("labels must be a list of labels or a mapping, not a single string")
    if isinstance(labels, Mapping):
        classes = {str(name): [p] if isinstance(p, str) else list(p) for name, p in labels.items()}
    else:
        names = list(labels)
        if len(set(names)) != len(names):
            raise ValueError(f"labels holds repeated entries: {names}")
        classes = {str(name): [name] for name in names}
    if len(classes) < 2:
        raise ValueError(f"zero-shot needs at least two classes, got {list(classes)}")
    prompts: list[str] = []
    owner: list[int] = []
    for index, (name, phrasings) in enumerate(classes.items()):
        if not phrasings:
            raise ValueError(f"class {name!r} has no phrasing")
        for phrase in phrasings:
            if not isinstance(phrase, str) or not phrase.strip():
                raise ValueError(f"class {name!r} has an empty or non-string phrasing {phrase!r}")
            for t in templates:
                prompts.append(t.format(phrase.strip()))
                owner.append(index)
    return list(classes), prompts, np.asarray(owner, dtype=np.int64)


def class_embeddings(prompt_vectors: Any, owner: np.ndarray, n_classes: int) -> np.ndarray:
    """Average the unit prompt vectors of each class and re-normalise."""
    prompts = as_unit(prompt_vectors, "prompt_vectors")
    sums = np.zeros((n_classes, prompts.shape[1]), dtype=np.float64)
    np.add.at(sums, owner, prompts)
    return as_unit(sums)


def classify(
    ids: Any,
    vectors: Any,
    class_vectors: Any,
    names: list[str],
    *,
    temperature: float = DEFAULT_TEMPERATURE,
    scorer: Callable[[np.ndarray], np.ndarray] | None = None,
) -> pd.DataFrame:
    """The array-level core of :func:`zero_shot`: nearest class per row with a softmax.

    Args:
        ids: ``(n,)`` item ids.
        vectors: ``(n, dim)`` item embeddings.
        class_vectors: ``(n_classes, dim)`` class embeddings.
        names: Class names, in the order of ``class_vectors``.
        temperature: Softmax temperature over the cosines.
        scorer: The model's own cosine -> probability map (SigLIP's sigmoid,
            :meth:`Encoder.score`); when given, it gives the confidence instead of the softmax.

    Returns:
        ``id``, ``label``, ``confidence``, ``score``, ``margin`` per row.
    """
    if not temperature > 0:
        raise ValueError(f"temperature must be positive, got {temperature!r}")
    items = as_unit(vectors, "vectors")
    classes = as_unit(class_vectors, "class_vectors")
    if len(names) != len(classes) or len(classes) < 2:
        raise ValueError(
            f"need one name per class vector and >= 2 classes, got {len(names)} names "
            f"for {len(classes)} vectors"
        )
    ids = as_ids(ids, len(items))
    cosines = items @ classes.T
    logits = cosines / temperature
    logits -= logits.max(axis=1, keepdims=True)
    probs = np.exp(logits)
    probs /= probs.sum(axis=1, keepdims=True)
    order = np.argsort(-cosines, axis=1, kind="stable")
    best, second = order[:, 0], order[:, 1]
    rows = np.arange(len(items))
    if scorer is not None:
        probs[rows, best] = np.asarray(scorer(cosines[rows, best]), dtype=np.float64)
    return pd.DataFrame(
        {
            "id": ids,
            "label": pd.Categorical(np.asarray(names, dtype=object)[best], categories=names),
            "confidence": probs[rows, best].astype(np.float32),
            "score": cosines[rows, best].astype(np.float32),
            "margin": (cosines[rows, best] - cosines[rows, second]).astype(np.float32),
        }
    )
