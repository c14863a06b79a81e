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
_ASCII_WORD = re.compile(r"[A-Za-z]+")  # the same words, for text that is all ASCII, found faster
# counted by the regex engine in runs (their lengths summed): a loop over the characters in
# Python costs ten times more, and a match per character four times more
_ARABIC = re.compile("[\u0600-\u06ff\u0750-\u077f\ufb50-\ufdff\ufe70-\ufeff]+")
_DEVANAGARI = re.compile("[\u0900-\u097f]+")
_LATIN = re.compile("[A-Za-z\u00c0-\u024f]+")
_URDU = re.compile("[" + "".join(sorted(_URDU_LETTERS)) + "]")
_TURKISH = re.compile("[ğışİ]")
_LANGUAGES_OF: dict[str, list[str]] = {}  # stop word -> the languages using it
for _lang, _words in _STOPWORDS.items():
    for _word in _words:
        _LANGUAGES_OF.setdefault(_word, []).append(_lang)


def _count(letters: re.Pattern[str], text: str) -> int:
    return sum(map(len, letters.findall(text)))


def detect_language(text: str) -> str | None:
    """ISO 639-1 code, or None when the text gives too little to go on."""
    sample = text[:2000]
    ascii_only = sample.isascii()  # most messages: no Arabic or Devanagari letter can occur
    arabic = 0 if ascii_only else _count(_ARABIC, sample)
    devanagari = 0 if ascii_only else _count(_DEVANAGARI, sample)
    latin = _count(_LATIN, sample)
    if max(arabic, devanagari, latin) < 3:
        return None
    if arabic >= max(devanagari, latin):
        return "ur" if _count(_URDU, sample) * 50 >= arabic else "ar"
    if devanagari > latin:
        return "hi"
    scores = dict.fromkeys(_STOPWORDS, 0)
    # ASCII lowers letter for letter, so lowering the whole text first finds the same words;
    # elsewhere lowering can change a word's letters (İ), so each word is lowered as found
    words = _ASCII_WORD.findall(sample.lower()) if ascii_only else [w.lower() for w in _WORD.findall(sample)]
    for word in words:
        for lang in _LANGUAGES_OF.get(word, ()):
            scores[lang] += 1
    if _TURKISH.search(sample):
        scores["tr"] += 3
    best = max(scores, key=scores.__getitem__)
    return best if scores[best] > 0 else None
