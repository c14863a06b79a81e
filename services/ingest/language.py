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


def detect_language(text: str) -> str | None:
    """ISO 639-1 code, or None when the text gives too little to go on."""
    sample = text[:2000]
    arabic = sum(1 for c in sample if "\u0600" <= c <= "\u06ff" or "\u0750" <= c <= "\u077f"
                 or "\ufb50" <= c <= "\ufdff" or "\ufe70" <= c <= "\ufeff")
    devanagari = sum(1 for c in sample if "\u0900" <= c <= "\u097f")
    latin = sum(1 for c in sample if c.isascii() and c.isalpha() or "\u00c0" <= c <= "\u024f")
    if max(arabic, devanagari, latin) < 3:
        return None
    if arabic >= max(devanagari, latin):
        return "ur" if sum(1 for c in sample if c in _URDU_LETTERS) * 50 >= arabic else "ar"
    if devanagari > latin:
        return "hi"
    words = [w.lower() for w in _WORD.findall(sample)]
    scores = {lang: sum(1 for w in words if w in stop) for lang, stop in _STOPWORDS.items()}
    if any(c in "ğışİ" for c in sample):
        scores["tr"] += 3
    best = max(scores, key=scores.__getitem__)
    return best if scores[best] > 0 else None
