"""A deterministic toy encoder that needs no weights and no torch.

It embeds images by their colours and texts by colour words in a dozen languages (plus a hashed
character-trigram part), so "rot", "красный", "赤" and "red" all find red images. It exists for
tests, offline demos and teaching the *mechanics* of a shared space; it knows nothing else.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator, Sequence

import numpy as np

from mclip_explorer.errors import BadImageError
from mclip_explorer.images import ImageInput, load_image
from mclip_explorer.models.base import (
    Encoder,
    ErrorMode,
    ImageBatch,
    _check_batch_size,
    normalize,
)

# Name -> (RGB, words in en, de, fr, es, it, ru, el, ar, he, hi, zh, ja, ko, th).
COLOURS: dict[str, tuple[tuple[int, int, int], tuple[str, ...]]] = {
    "red": ((220, 30, 30), ("red", "rot", "rouge", "rojo", "rosso", "красный", "κόκκινο",
                            "أحمر", "אדום", "लाल", "红", "赤", "빨간", "แดง")),
    "orange": ((245, 140, 20), ("orange", "naranja", "arancione", "оранжевый", "πορτοκαλί",
                                "برتقالي", "כתום", "नारंगी", "橙", "オレンジ", "주황", "ส้ม")),
    "yellow": ((240, 220, 30), ("yellow", "gelb", "jaune", "amarillo", "giallo", "жёлтый",
                                "желтый", "κίτρινο", "أصفر", "צהוב", "पीला", "黄", "노란",
                                "เหลือง")),
    "green": ((40, 170, 50), ("green", "grün", "vert", "verde", "зелёный", "зеленый",
                              "πράσινο", "أخضر", "ירוק", "हरा", "绿", "緑", "초록", "เขียว")),
    "blue": ((30, 70, 210), ("blue", "blau", "bleu", "azul", "blu", "синий", "μπλε", "أزرق",
                             "כחול", "नीला", "蓝", "青", "파란", "น้ำเงิน")),
    "purple": ((130, 40, 170), ("purple", "lila", "violet", "morado", "viola", "фиолетовый",
                                "μωβ", "بنفسجي", "סגול", "बैंगनी", "紫", "보라", "ม่วง")),
    "pink": ((245, 150, 190), ("pink", "rosa", "rose", "розовый", "ροζ", "وردي", "ורוד",
                               "गुलाबी", "粉", "ピンク", "분홍", "ชมพู")),
    "brown": ((120, 75, 35), ("brown", "braun", "marron", "marrón", "marrone", "коричневый",
                              "καφέ", "بني", "חום", "भूरा", "棕", "茶色", "갈색", "น้ำตาล")),
    "black": ((15, 15, 15), ("black", "schwarz", "noir", "negro", "nero", "чёрный", "черный",
                             "μαύρο", "أسود", "שחור", "काला", "黑", "黒", "검은", "ดำ")),
    "white": ((245, 245, 245), ("white", "weiß", "weiss", "blanc", "blanco", "bianco", "белый",
                                "λευκό", "أبيض", "לבן", "सफ़ेद", "白", "하얀", "ขาว")),
    "grey": ((128, 128, 128), ("grey", "gray", "grau", "gris", "grigio", "серый", "γκρι",
                               "رمادي", "אפור", "स्लेटी", "灰", "회색", "เทา")),
}
_NAMES = list(COLOURS)
_RGB = np.array([rgb for rgb, _ in COLOURS.values()], dtype=np.float32)
_WORD = re.compile(r"\w+", re.UNICODE)
HASH_WEIGHT = 0.35  # how much non-colour content (trigrams, texture) moves a vector
TOY_LANGUAGES = ("en", "de", "fr", "es", "it", "ru", "el", "ar", "he", "hi", "zh", "ja", "ko", "th")


class ToyEncoder(Encoder):
    """Colour-word / colour-histogram encoder (see module docstring)."""

    def __init__(self, dim: int = 32, image_size: int = 32, seed: int = 0) -> None:
        if dim <= len(_NAMES):
            raise ValueError(f"dim must exceed the {len(_NAMES)} colour axes, got {dim}")
        self.name = "toy"
        self.dim = dim
        self.image_size = image_size
        self.text_max_tokens = 64
        self.languages = TOY_LANGUAGES
        self.seed = seed
        self._lexicon = {
            w.casefold(): i for i, (_, ws) in enumerate(COLOURS.values()) for w in ws
        }
        rest = dim - len(_NAMES)
        rng = np.random.default_rng(seed)
        blocks = image_size * image_size // 16
        self._texture = rng.standard_normal((blocks, rest)).astype(np.float32)

    @property
    def fingerprint(self) -> str:
        """Hash of the lexicon and parameters (the toy model has no weights)."""
        key = f"toy:v1:{self.dim}:{self.image_size}:{self.seed}:{sorted(self._lexicon.items())}"
        return hashlib.sha256(key.encode()).hexdigest()[:32]

    # Texts --------------------------------------------------------------------------------
    def _encode_text_batch(self, texts: list[str]) -> np.ndarray:
        return np.stack([self._text_vector(text) for text in texts])

    def _text_vector(self, text: str) -> np.ndarray:
        vector = np.zeros(self.dim, dtype=np.float32)
        folded = text.casefold()
        for word in _WORD.findall(folded):
            if word in self._lexicon:
                vector[self._lexicon[word]] += 1.0
        # CJK, Thai and Korean colour words stand inside longer runs without spaces.
        for word, axis in self._lexicon.items():
            if not word.isascii() and word in folded and vector[axis] == 0:
                vector[axis] += 1.0
        rest = vector[len(_NAMES) :]
        padded = f"  {folded.strip()}  "
        for i in range(len(padded) - 2):
            h = hashlib.blake2b(padded[i : i + 3].encode(), digest_size=8).digest()
            slot = int.from_bytes(h[:4], "little") % rest.size
            rest[slot] += HASH_WEIGHT if h[4] & 1 else -HASH_WEIGHT
        if not folded.strip():
            vector[-1] = 1.0  # the defined embedding of the empty text
        return vector

    # Images -------------------------------------------------------------------------------
    def _image_vector(self, item: ImageInput) -> np.ndarray:
        image = load_image(item).resize((self.image_size, self.image_size))
        pixels = np.asarray(image, dtype=np.float32).reshape(-1, 3)
        nearest = np.argmin(((pixels[:, None, :] - _RGB[None]) ** 2).sum(-1), axis=1)
        hist = np.bincount(nearest, minlength=len(_NAMES)).astype(np.float32) / len(pixels)
        grey = pixels.mean(axis=1).reshape(self.image_size // 4, 4, self.image_size // 4, 4)
        blocks = grey.mean(axis=(1, 3)).ravel() / 255.0
        texture = (blocks - blocks.mean()) @ self._texture
        texture *= HASH_WEIGHT / (np.linalg.norm(texture) + 1e-6)
        return np.concatenate([hist, texture]).astype(np.float32)

    def iter_image_batches(
        self,
        images: Sequence[ImageInput],
        *,
        batch_size: int = 32,
        num_workers: int | None = None,
        errors: ErrorMode = "report",
        progress: bool = False,
    ) -> Iterator[ImageBatch]:
        """Embed images in the main process, batch by batch (see :class:`Encoder`)."""
        del num_workers, progress  # decoding a 32x32 histogram is cheaper than a process
        _check_batch_size(batch_size)
        for start in range(0, len(images), batch_size):
            indices: list[int] = []
            vectors: list[np.ndarray] = []
            failures: dict[int, str] = {}
            for i in range(start, min(start + batch_size, len(images))):
                try:
                    vectors.append(self._image_vector(images[i]))
                    indices.append(i)
                except BadImageError as exc:
                    if errors == "raise":
                        raise
                    failures[i] = exc.reason
            embeddings = normalize(np.stack(vectors)) if vectors else np.empty((0, self.dim))
            yield ImageBatch(np.asarray(indices, dtype=np.int64),
                             embeddings.astype(np.float32), failures)


def load(spec: object = None, *, device: str | None = None, dtype: object = None,
         **_: object) -> ToyEncoder:
    """Registry loader: the toy model takes no weights, device or dtype."""
    del spec, device, dtype
    return ToyEncoder()
