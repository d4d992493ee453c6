"""The encoder interface: one object that embeds texts and images into one shared space.

Subclasses supply ``_encode_text_batch`` (raw, unnormalised vectors for a batch of strings) and
``iter_image_batches``; this class owns everything every model shares: input validation,
length-sorted batching with the input order restored, and L2 normalisation in float32.
"""

from __future__ import annotations

import abc
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from mclip_explorer.errors import BadImageError, BadImageWarning, BadTextError
from mclip_explorer.images import ImageInput

ErrorMode = Literal["report", "raise"]


@dataclass(frozen=True)
class ImageBatch:
    """The result of one batch of an image stream.

    Attributes:
        indices: Input positions encoded in this batch (int64), in the order of ``embeddings``.
        embeddings: ``(len(indices), dim)`` float32, L2-normalised.
        failures: Input position -> reason, for items of this batch that could not be decoded.
    """

    indices: np.ndarray
    embeddings: np.ndarray
    failures: dict[int, str] = field(default_factory=dict)


class Encoder(abc.ABC):
    """A text tower and the image tower it was trained against, sharing one ``dim``-d space.

    Attributes:
        name: Registry name (or the path it was loaded from).
        dim: Size of the shared embedding space.
        languages: ISO 639-1 codes the text tower was trained on (empty if unknown).
        image_size: Side in pixels of the square the image tower sees.
        text_max_tokens: Token limit of the text tower; longer texts are truncated with a warning.
        needs_language: Whether the text tower needs each text's language (NLLB-CLIP);
            :meth:`encode_text` then detects it offline unless ``lang=`` names it.
        logit_scale: The model's learned scale of image-text cosines, where it has one.
        logit_bias: SigLIP's learned bias; when set, :meth:`score` gives sigmoid probabilities.
    """

    name: str
    dim: int
    languages: tuple[str, ...] = ()
    image_size: int
    text_max_tokens: int
    needs_language: bool = False
    logit_scale: float | None = None
    logit_bias: float | None = None

    # ----------------------------------------------------------------------------------- text
    def encode_text(
        self,
        texts: str | Sequence[str],
        *,
        batch_size: int = 32,
        progress: bool = False,
        lang: str | Sequence[str | None] | None = None,
    ) -> np.ndarray:
        """Embed texts in any language.

        Args:
            texts: One string or a sequence of strings. Empty and whitespace-only strings are
                encoded as the empty text (the tower's embedding of its special tokens alone).
            batch_size: Texts per forward pass; batches are formed from length-sorted texts.
            progress: Show a progress bar.
            lang: For models that need it (:attr:`needs_language`): the texts' language, one
                code for all or one per text (``None`` entries are detected); ISO 639-1
                (``"de"``) or FLORES-200 (``"deu_Latn"``). Other models ignore it.

        Returns:
            ``(n, dim)`` float32, each row L2-normalised.
        """
        items = [texts] if isinstance(texts, str) else list(texts)
        for position, text in enumerate(items):
            if not isinstance(text, str):
                raise TypeError(f"texts[{position}] is {type(text).__name__}, expected str")
            check_unicode(text, f"texts[{position}]")
        _check_batch_size(batch_size)
        cleaned = ["" if not text.strip() else text for text in items]
        languages = self.text_languages(cleaned, lang)
        out = np.empty((len(cleaned), self.dim), dtype=np.float32)
        # Longest first, as sentence-transformers does: padding waste is smallest and an
        # out-of-memory error shows on the first batch rather than the last. A batch holds
        # one language, as the tokenizer's language tag is set per batch.
        order = sorted(range(len(cleaned)), key=lambda i: (languages[i] or "", -len(cleaned[i])))
        chunks: list[list[int]] = []
        for i in order:
            if chunks and len(chunks[-1]) < batch_size and languages[chunks[-1][0]] == languages[i]:
                chunks[-1].append(i)
            else:
                chunks.append([i])
        for index in _progress(range(len(chunks)), progress, "texts", batch_size):
            chunk = chunks[index]
            language = languages[chunk[0]]
            batch = [cleaned[i] for i in chunk]
            raw = (self._encode_text_batch(batch) if language is None
                   else self._encode_text_batch_in(batch, language))
            out[chunk] = normalize(raw)
        return out

    def text_languages(
        self, texts: Sequence[str], lang: str | Sequence[str | None] | None = None
    ) -> list[str | None]:
        """The language code the text tower gets for each text (``None``: it takes none).

        For models with :attr:`needs_language`, a FLORES-200 code from ``lang`` or, where
        that is ``None``, detected offline (see :mod:`mclip_explorer.models.langid`).
        """
        if not self.needs_language:
            return [None] * len(texts)
        from mclip_explorer.models.langid import query_flores

        given = [lang] * len(texts) if lang is None or isinstance(lang, str) else list(lang)
        if len(given) != len(texts):
            raise ValueError(f"lang has {len(given)} entries for {len(texts)} texts")
        return [query_flores(text, code) for text, code in zip(texts, given, strict=True)]

    def score(self, similarity: np.ndarray | float) -> np.ndarray:
        """The model's own image-text score of cosine similarities.

        SigLIP models (``logit_bias`` set) give ``sigmoid(logit_scale * cos + logit_bias)``,
        the probability that the pair matches; other models give the cosine unchanged.
        """
        sims = np.asarray(similarity, dtype=np.float32)
        if self.logit_bias is None or self.logit_scale is None:
            return sims
        logits = self.logit_scale * sims.astype(np.float64) + self.logit_bias
        return (1.0 / (1.0 + np.exp(-logits))).astype(np.float32)

    @property
    def score_kind(self) -> str:
        """``"sigmoid"`` when :meth:`score` gives probabilities, else ``"cosine"``."""
        return "sigmoid" if self.logit_bias is not None else "cosine"

    @abc.abstractmethod
    def _encode_text_batch(self, texts: list[str]) -> np.ndarray:
        """Return raw (unnormalised) ``(len(texts), dim)`` vectors for one batch."""

    def _encode_text_batch_in(self, texts: list[str], language: str) -> np.ndarray:
        """Like ``_encode_text_batch`` for texts of one ``language`` (models that need it)."""
        del language
        return self._encode_text_batch(texts)

    # --------------------------------------------------------------------------------- images
    def encode_images(
        self,
        images: Sequence[ImageInput],
        *,
        batch_size: int = 32,
        num_workers: int | None = None,
        errors: ErrorMode = "report",
        progress: bool = False,
    ) -> np.ndarray:
        """Embed images given as paths, encoded bytes or PIL images.

        Args:
            images: The images; a single image is accepted too.
            batch_size: Images per forward pass.
            num_workers: Decoding worker processes (``None``: the encoder's default).
            errors: ``"report"`` leaves a NaN row for each bad item and issues one
                :class:`BadImageWarning` naming every bad item and its reason; ``"raise"``
                raises :class:`BadImageError` at the first bad item.
            progress: Show a progress bar.

        Returns:
            ``(n, dim)`` float32, each good row L2-normalised.
        """
        items = _as_image_list(images)
        out = np.full((len(items), self.dim), np.nan, dtype=np.float32)
        failures: dict[int, str] = {}
        for batch in self.iter_image_batches(
            items, batch_size=batch_size, num_workers=num_workers, errors=errors, progress=progress
        ):
            out[batch.indices] = batch.embeddings
            failures.update(batch.failures)
        if failures:
            warnings.warn(BadImageWarning(failures), stacklevel=2)
        return out

    @abc.abstractmethod
    def iter_image_batches(
        self,
        images: Sequence[ImageInput],
        *,
        batch_size: int = 32,
        num_workers: int | None = None,
        errors: ErrorMode = "report",
        progress: bool = False,
    ) -> Iterator[ImageBatch]:
        """Stream embeddings batch by batch; bad items are reported in ``ImageBatch.failures``.

        Collections use this directly so each batch can be flushed to disk as it arrives.
        """

    # ---------------------------------------------------------------------------- identity
    @property
    @abc.abstractmethod
    def fingerprint(self) -> str:
        """A stable hex id of the exact weights and preprocessing of both towers."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, dim={self.dim})"


def normalize(vectors: np.ndarray) -> np.ndarray:
    """L2-normalise rows in float32; an all-zero row stays zero instead of becoming NaN."""
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.where(norms > 0, norms, 1.0)


def _as_image_list(images: Sequence[ImageInput] | ImageInput) -> list[ImageInput]:
    from pathlib import Path

    from PIL import Image

    if isinstance(images, (str, Path, bytes, bytearray, memoryview, Image.Image)):
        return [images]
    return list(images)


def _check_batch_size(batch_size: int) -> None:
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")


def _progress(iterable: range, enabled: bool, unit: str, scale: int) -> Iterator[int]:
    if not enabled:
        yield from iterable
        return
    from tqdm.auto import tqdm

    with tqdm(total=len(iterable) * scale, unit=unit.rstrip("s")) as bar:
        for value in iterable:
            yield value
            bar.update(scale)


def raise_or_record(errors: ErrorMode, item: object, reason: str) -> str:
    """Used by image pipelines: raise under ``errors="raise"``, else return the reason to record."""
    if errors == "raise":
        raise BadImageError(reason, item)
    return reason


def check_unicode(text: str, what: str) -> None:
    """Refuse a string that is not valid Unicode (a lone surrogate), naming the character.

    Tokenizers fail on these with a ``TypeError`` or encode them silently; they come from a
    surrogate pair cut in half or an undecodable byte in a command line (``surrogateescape``).

    Raises:
        BadTextError: Naming ``what``, the code point and its position.
    """
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        code = ord(text[exc.start])
        raise BadTextError(
            f"{what} is not valid Unicode: a lone surrogate U+{code:04X} at character "
            f"{exc.start} (half of a pair such as an emoji, or an undecodable byte); remove or "
            "replace it") from None
