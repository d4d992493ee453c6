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

# XLM-R's CC-100 languages (Conneau et al. 2020, table 6), romanised variants left out.
XLMR_LANGUAGES = (
    "af am ar as az be bg bn br bs ca cs cy da de el en eo es et eu fa fi fr fy ga gd gl gu ha he "
    "hi hr hu hy id is it ja jv ka kk km kn ko ku ky la lo lt lv mg mk ml mn mr ms my ne nl no om "
    "or pa pl ps pt ro ru sa sd si sk sl so sq sr su sv sw ta te th tl tr ug uk ur uz vi xh yi zh"
).split()

# Crossmodal-3600's 36 languages (its own codes): the languages MetaCLIP 2 and SigLIP 2 report
# per-language results on. Both were trained on far more; their cards list no codes.
XM3600_LANGUAGES = (
    "ar bn cs da de el en es fa fi fil fr he hi hr hu id it ja ko mi nl no pl pt quz ro ru sv sw "
    "te th tr uk vi zh"
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
        notes: Caveats shown in the docs.
        licence: Licence of the weights, from the model card.
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
    licence: str = field(default="", compare=False)

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


def _open_clip(name: str, arch: str, tag: str, repo: str, dim: int, size: int, tokens: int,
               languages: tuple[str, ...] | list[str], licence: str, notes: str = "") -> ModelSpec:
    """A whole open_clip model (both towers in one hub repo in open_clip's layout)."""
    return _spec(name=name, family="open_clip", dim=dim, languages=languages, text_repo=repo,
                 image_repo=repo, image_arch=arch, image_pretrained=tag, image_size=size,
                 text_max_tokens=tokens, source=f"{_HUB} ({repo}, open_clip layout)",
                 licence=licence, notes=notes)


def _metaclip2(size: str, dim: int, image_size: int) -> ModelSpec:
    repo = f"facebook/metaclip-2-worldwide-{size}"
    return _spec(name=f"metaclip-2-worldwide-{size}", family="metaclip2", dim=dim,
                 languages=XM3600_LANGUAGES,
                 text_repo=repo, image_repo=repo, image_arch=None, image_pretrained=None,
                 image_size=image_size, text_max_tokens=77, source=_HUB,
                 licence="CC-BY-NC-4.0 (MetaCLIP release licence)",
                 notes="Trained on 300+ languages (worldwide web alt-texts); languages listed: "
                       "Crossmodal-3600's 36, which the paper reports. XLM-V tokenizer (901,629 "
                       "pieces).")


_SIGLIP2 = ("SigLIP 2 (WebLI, multilingual; languages listed: Crossmodal-3600's 36, which the "
            "paper reports). Scores are sigmoid probabilities. Gemma tokenizer; texts padded to "
            "64 tokens.")
_NLLB = ("Needs the query's language (FLORES-200 code): detected offline per text, or lang=. "
         "Languages: the NLLB-200 languages the offline detector can name.")


def _nllb_languages() -> tuple[str, ...]:
    from mclip_explorer.models.langid import FLORES_CODES

    return tuple(FLORES_CODES)


_NEW_ENTRIES = [
    *[_metaclip2(size, dim, px) for size, dim, px in (
        ("s16", 384, 224), ("m16", 512, 224), ("b32", 512, 224), ("b16", 512, 224),
        ("l14", 768, 224), ("huge-quickgelu", 1024, 224), ("huge-378", 1024, 378),
        ("giant", 1280, 224), ("giant-378", 1280, 378))],
    *[_open_clip(f"SigLIP2-{short}", f"ViT-{arch}-SigLIP2{px_tag}", "webli",
                 f"timm/ViT-{arch}-SigLIP2{px_tag}", dim, px, 64, XM3600_LANGUAGES, "Apache-2.0",
                 _SIGLIP2)
      for short, arch, px_tag, dim, px in (
          ("B-32-256", "B-32", "-256", 768, 256), ("B-16-256", "B-16", "-256", 768, 256),
          ("B-16-384", "B-16", "-384", 768, 384),
          ("L-16-256", "L-16", "-256", 1024, 256), ("SO400M-14", "SO400M-14", "", 1152, 224),
          ("SO400M-16-384", "SO400M-16", "-384", 1152, 384),
          ("gopt-16-384", "gopt-16", "-384", 1536, 384))],
    *[_open_clip(name, arch, tag, repo, dim, px, 77, _nllb_languages(),
                 "CC-BY-NC-4.0" if tag == "v1" else
                 "MIT on the model card; the NLLB-200 base is CC-BY-NC-4.0", _NLLB)
      for name, arch, tag, repo, dim, px in (
          ("nllb-clip-base", "nllb-clip-base", "v1", "visheratin/nllb-clip-base-oc", 512, 224),
          ("nllb-clip-large", "nllb-clip-large", "v1", "visheratin/nllb-clip-large-oc", 1024,
           224),
          ("nllb-clip-base-siglip", "nllb-clip-base-siglip", "v1",
           "visheratin/nllb-clip-base-siglip", 768, 384),
          ("nllb-clip-large-siglip", "nllb-clip-large-siglip", "v1",
           "visheratin/nllb-clip-large-siglip", 1152, 384),
          ("nllb-siglip-mrl-base", "nllb-clip-base-siglip", "mrl",
           "visheratin/nllb-siglip-mrl-base", 768, 384),
          ("nllb-siglip-mrl-large", "nllb-clip-large-siglip", "mrl",
           "visheratin/nllb-siglip-mrl-large", 1152, 384))],
    _open_clip("xlm-roberta-large-ViT-H-14", "xlm-roberta-large-ViT-H-14",
               "frozen_laion5b_s13b_b90k",
               "laion/CLIP-ViT-H-14-frozen-xlm-roberta-large-laion5B-s13B-b90k", 1024, 224, 77,
               XLMR_LANGUAGES, "MIT",
               "LAION-5B, frozen ViT-H/14 image tower with an XLM-R large text tower."),
]
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
        *_NEW_ENTRIES,
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
    "metaclip2": "mclip_explorer.models.altclip:load_metaclip2",
    "open_clip": "mclip_explorer.models.openclip:load",
    "toy": "mclip_explorer.models.toy:load",
}
