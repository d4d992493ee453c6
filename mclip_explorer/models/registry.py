"""Every model the explorer serves, each text tower fixed to the image tower it was trained against.

A :class:`ModelSpec` names *where weights come from* (hub ids), never a free choice of image tower:
``load_model(name, text=..., image=..., head=...)`` may point those ids at local folders, but the
architecture pairing below cannot be changed through the registry.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# Languages from the model cards (ISO 639-1; regional variants as the card writes them).
ST_V1_LANGUAGES = (
    "ar bg ca cs da de el en es et fa fi fr fr-ca gl gu he hi hr hu hy id it ja ka ko ku lt lv mk "
    "mn mr ms my nb nl pl pt pt-br ro ru sk sl sq sr sv th tr uk ur vi zh-cn zh-tw"
).split()
MBERT_40_LANGUAGES = (
    "sq am ar az bn bg ca zh nl en et fa fr ka de el hi hu is id it ja kk ko lv mk ms ps pl ro ru "
    "sl es sv tl th tr ur vi"
).split()
ALTCLIP_M9_LANGUAGES = "en zh es fr ru ja ko ar it".split()
ALTCLIP_LANGUAGES = "en zh".split()
# The M-CLIP 2022 models' 48 training languages: Multilingual-CLIP's
# translation/data/fine_tune_languages.csv, where Chinese counts twice (simplified, traditional).
MCLIP_2022_LANGUAGES = (
    "af sq am ar az bn bs bg ca zh hr cs da nl en et fr de el hi hu is id it ja mk ml mr pl pt ro "
    "ru sr sl es sw sv tl te tr tk uk ur ug uz vi xh"
).split()


@dataclass(frozen=True)
class ModelSpec:
    """One registry entry.

    Attributes:
        name: The name users pass to ``load_model``.
        family: Which loader builds it (``st-clip``, ``mclip-legacy``, ``mclip``, ``altclip``,
            ``open_clip``).
        dim: Shared embedding size.
        languages: Text-tower languages from the model card.
        text_repo: Hub id (or folder) of the text tower.
        image_repo: Hub id (or folder) of the image tower's weights.
        image_arch: open_clip architecture of the image tower, where it is an open_clip model.
        image_pretrained: open_clip pretrained tag the weights correspond to.
        image_size: Input side of the image tower in pixels.
        text_max_tokens: Token limit of the text tower.
        head_file: File name of a separately published projection head (legacy M-CLIP), as
            the reference package ``multilingual_clip`` names it.
        head_aliases: Other file names accepted for the head (spellings we used before).
        source: Where users obtain the weights.
    """

    name: str
    family: str
    dim: int
    languages: tuple[str, ...]
    text_repo: str
    image_repo: str
    image_arch: str | None
    image_pretrained: str | None
    image_size: int
    text_max_tokens: int
    head_file: str | None = None
    head_aliases: tuple[str, ...] = ()
    source: str = ""
    notes: str = field(default="", compare=False)

    @property
    def image_tower(self) -> str:
        """Human-readable name of the image tower."""
        if self.image_arch:
            return f"{self.image_arch} ({self.image_pretrained})"
        return self.image_repo


def _spec(**kwargs: object) -> ModelSpec:
    kwargs["languages"] = tuple(kwargs["languages"])  # type: ignore[arg-type]
    return ModelSpec(**kwargs)  # type: ignore[arg-type]


_HUB = "Hugging Face Hub"
_MCLIP_HEADS = ("Multilingual-CLIP's legacy_get-weights.sh (Dropbox), see README "
                "'Legacy M-CLIP head files'")

REGISTRY: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in [
        _spec(name="clip-ViT-B-32-multilingual-v1", family="st-clip", dim=512,
              languages=ST_V1_LANGUAGES,
              text_repo="sentence-transformers/clip-ViT-B-32-multilingual-v1",
              image_repo="sentence-transformers/clip-ViT-B-32", image_arch=None,
              image_pretrained=None, image_size=224, text_max_tokens=128, source=_HUB),
        _spec(name="M-BERT-Distil-40", family="mclip-legacy", dim=640,
              languages=MBERT_40_LANGUAGES, text_repo="M-CLIP/M-BERT-Distil-40",
              image_repo="timm/resnet50x4_clip.openai", image_arch="RN50x4-quickgelu",
              image_pretrained="openai", image_size=288, text_max_tokens=512,
              head_file="M-BERT Distil 40 Linear Weights.pkl",
              head_aliases=("M BERT Distil 40 Linear Weights.pkl",),
              source=f"{_HUB} (transformer, image tower); head: {_MCLIP_HEADS}"),
        _spec(name="M-BERT-Base-69", family="mclip-legacy", dim=640,
              languages=MBERT_40_LANGUAGES, text_repo="M-CLIP/M-BERT-Base-69",
              image_repo="timm/resnet50x4_clip.openai", image_arch="RN50x4-quickgelu",
              image_pretrained="openai", image_size=288, text_max_tokens=512,
              head_file="M-BERT-Base-69 Linear Weights.pkl",
              source=f"{_HUB} (transformer, image tower); head: {_MCLIP_HEADS}",
              notes="The card's language file lists 40 of the 69 languages (M-CLIP issue #29)."),
        _spec(name="M-BERT-Base-ViT-B", family="mclip-legacy", dim=512,
              languages=MBERT_40_LANGUAGES, text_repo="M-CLIP/M-BERT-Base-ViT-B",
              image_repo="timm/vit_base_patch32_clip_224.openai",
              image_arch="ViT-B-32-quickgelu", image_pretrained="openai", image_size=224,
              text_max_tokens=512, head_file="M-BERT-Base-69-ViT Linear Weights.pkl",
              source=f"{_HUB} (transformer, image tower); head: {_MCLIP_HEADS}",
              notes="Head is 768->512; the original code wrongly builds Linear(768, 640)."),
        _spec(name="XLM-Roberta-Large-Vit-B-32", family="mclip", dim=512,
              languages=MCLIP_2022_LANGUAGES, text_repo="M-CLIP/XLM-Roberta-Large-Vit-B-32",
              image_repo="timm/vit_base_patch32_clip_224.openai",
              image_arch="ViT-B-32-quickgelu", image_pretrained="openai", image_size=224,
              text_max_tokens=512, source=_HUB),
        _spec(name="XLM-Roberta-Large-Vit-L-14", family="mclip", dim=768,
              languages=MCLIP_2022_LANGUAGES, text_repo="M-CLIP/XLM-Roberta-Large-Vit-L-14",
              image_repo="timm/vit_large_patch14_clip_224.openai",
              image_arch="ViT-L-14-quickgelu", image_pretrained="openai", image_size=224,
              text_max_tokens=512, source=_HUB),
        _spec(name="XLM-Roberta-Large-Vit-B-16Plus", family="mclip", dim=640,
              languages=MCLIP_2022_LANGUAGES, text_repo="M-CLIP/XLM-Roberta-Large-Vit-B-16Plus",
              image_repo="timm/vit_base_patch16_plus_clip_240.laion400m_e32",
              image_arch="ViT-B-16-plus-240", image_pretrained="laion400m_e32", image_size=240,
              text_max_tokens=512,
              source=f"{_HUB} (text); image tower: open_clip release file "
                     "vit_b_16_plus_240-laion400m_e32-699c4b84.pt, see docs/models.md",
              notes="The Hub holds only the e31 weights of ViT-B-16-plus-240 (open_clip maps "
                    "e32 to that repo too); pass image=<the e32 .pt file>."),
        _spec(name="LABSE-Vit-L-14", family="mclip", dim=768,
              languages=MCLIP_2022_LANGUAGES, text_repo="M-CLIP/LABSE-Vit-L-14",
              image_repo="timm/vit_large_patch14_clip_224.openai",
              image_arch="ViT-L-14-quickgelu", image_pretrained="openai", image_size=224,
              text_max_tokens=512, source=_HUB),
        _spec(name="AltCLIP-m9", family="altclip", dim=768, languages=ALTCLIP_M9_LANGUAGES,
              text_repo="BAAI/AltCLIP-m9", image_repo="BAAI/AltCLIP-m9", image_arch=None,
              image_pretrained=None, image_size=224, text_max_tokens=77, source=_HUB),
        _spec(name="AltCLIP", family="altclip", dim=768, languages=ALTCLIP_LANGUAGES,
              text_repo="BAAI/AltCLIP", image_repo="BAAI/AltCLIP", image_arch=None,
              image_pretrained=None, image_size=224, text_max_tokens=77, source=_HUB),
        _spec(name="toy", family="toy", dim=32, languages=("en", "de", "fr", "es", "it", "ru",
              "el", "ar", "he", "hi", "zh", "ja", "ko", "th"), text_repo="(built in)",
              image_repo="(built in)", image_arch=None, image_pretrained=None, image_size=32,
              text_max_tokens=64, source="built in; colour words and colour histograms only",
              notes="Not a CLIP model: a deterministic toy for tests, demos and teaching."),
    ]
}

DEFAULT_MODEL = "clip-ViT-B-32-multilingual-v1"

# Family -> "module:function" of its loader; imported only when that family is loaded.
LOADERS = {
    "st-clip": "mclip_explorer.models.st_clip:load",
    "mclip-legacy": "mclip_explorer.models.mclip_legacy:load",
    "mclip": "mclip_explorer.models.mclip:load",
    "altclip": "mclip_explorer.models.altclip:load",
    "open_clip": "mclip_explorer.models.openclip:load",
    "toy": "mclip_explorer.models.toy:load",
}
