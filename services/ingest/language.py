"""A cheap guess at a message's language from its script and most common words (en, ar, ur, hi, fr, de, es, tr)."""
from __future__ import annotations

import re

_URDU_LETTERS = set("ٹڈڑںےۓہھ")  # letters Urdu writes and Arabic does not
_STOPWORDS = {
    "en": {"the", "and", "is", "my", "i", "you", "to", "of", "it", "not", "please", "order", "have", "with",
           "thanks", "thank", "where", "still", "hello", "this", "that", "was", "are", "can", "your"},
    "fr": {"le", "la", "les", "et", "est", "je", "vous", "pas", "une", "des", "mon", "ma", "commande", "bonjour"},
    "de": {"der", "die", "das", "und", "ist", "ich", "nicht", "sie", "mein", "meine", "bestellung", "mit", "ein"},
    "es": {"el", "la", "los", "y", "es", "que", "mi", "no", "por", "pedido", "una", "hola", "con", "gracias"},
    "tr": {"ve", "bir", "bu", "için", "siparişim", "sipariş", "değil", "merhaba", "ile", "çok", "ne", "da", "de"},
}
_WORD = re.compile(r"[^\W\d_]+")
# counted by the regex engine: a loop over the characters in Python costs ten times more
_ARABIC = re.compile("[\u0600-\u06ff\u0750-\u077f\ufb50-\ufdff\ufe70-\ufeff]")
_DEVANAGARI = re.compile("[\u0900-\u097f]")
_LATIN = re.compile("[A-Za-z\u00c0-\u024f]")
_URDU = re.compile("[" + "".join(sorted(_URDU_LETTERS)) + "]")
_TURKISH = re.compile("[ğışİ]")
_LANGUAGES_OF: dict[str, list[str]] = {}  # stop word -> the languages using it
for _lang, _words in _STOPWORDS.items():
    for _word in _words:
        _LANGUAGES_OF.setdefault(_word, []).append(_lang)


def detect_language(text: str) -> str | None:
    """ISO 639-1 code, or None when the text gives too little to go on."""
    sample = text[:2000]
    arabic = len(_ARABIC.findall(sample))
    devanagari = len(_DEVANAGARI.findall(sample))
    latin = len(_LATIN.findall(sample))
    if max(arabic, devanagari, latin) < 3:
        return None
    if arabic >= max(devanagari, latin):
        return "ur" if len(_URDU.findall(sample)) * 50 >= arabic else "ar"
    if devanagari > latin:
        return "hi"
    scores = dict.fromkeys(_STOPWORDS, 0)
    for word in _WORD.findall(sample):
        for lang in _LANGUAGES_OF.get(word.lower(), ()):
            scores[lang] += 1
    if _TURKISH.search(sample):
        scores["tr"] += 3
    best = max(scores, key=scores.__getitem__)
    return best if scores[best] > 0 else None
