"""The language a customer writes in, as an ISO 639-1 code with a confidence (py3langid).

Chosen by measurement (bench/language.py, docs/benchmarks.md "Language identification"): on 800
labelled support messages in 40 languages py3langid was the most accurate of the candidates that
ship their model inside the package, at about 65 µs a message. A few rules stay around it for
what a library does not know about our traffic:

- too little text (a thumbs-up, "ok", an order number) says nothing: no language (`und`);
- a guess the model itself barely prefers is no better than none — a wrong language sends the
  ticket to an agent who cannot read it, no language lets anyone take it;
- Urdu is told from Arabic and Persian by the letters only Urdu writes (ٹ ڈ ڑ ں ے), which
  decides it even where the model's n-grams lean the other way;
- only the first characters are read: the language shows in a sentence, and a long mail should
  not cost more than a short chat.

Callers pass the text agents read (channels leave quoted history and signatures out), so a
quoted reply does not decide the language."""

from __future__ import annotations

import re
from typing import Self

from py3langid.langid import MODEL_FILE, LanguageIdentifier

# the labelled set's longest message is 222 characters: reading more buys no measured accuracy, and the
# model's walk costs per byte (600 → 240 characters: 237 → 142 µs an English message, 520 → 270 µs an
# Arabic one; ~27 % of ingest's CPU at 250 msg/s before)
SAMPLE_CHARS = 240
MIN_LETTERS = 3
MIN_CONFIDENCE = 0.2  # below it, more wrong answers than right ones on the labelled set
LETTERS_CONFIDENCE = 0.9  # Urdu's own letters overruling the model: near certain, but not from the model

# dialect and variety labels of the model folded into the ISO 639-1 language agents are booked for
_FOLD = {
    "ary": "ar",
    "arz": "ar",
    "yue": "zh",
    "wuu": "zh",
    "uzs": "uz",
    "gug": "gn",
    "hbo": "he",
    "nn": "no",
    "nb": "no",
}
_LETTER = re.compile(r"[^\W\d_]")
_ARABIC_SCRIPT = re.compile("[\u0600-\u06ff\u0750-\u077f\ufb50-\ufdff\ufe70-\ufeff]")
_URDU_ONLY = re.compile("[ٹڈڑںےۓ]")  # letters Urdu writes and Arabic and Persian do not


class Language(str):
    """An ISO 639-1 code that also carries how sure the guess is (0 to 1), so a channel that
    stores `language=detect_language(text)` hands the confidence on without a second call."""

    confidence: float

    def __new__(cls, code: str, confidence: float) -> Self:
        language = super().__new__(cls, code)
        language.confidence = round(confidence, 3)
        return language


# loaded once per process, when ingest imports this module at start (1 to 3 s: it decompresses a
# 4 MB file), not while a customer's message waits
_IDENTIFIER = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)


UNDETERMINED = "und"  # ISO 639-2's "undetermined": the message is labelled, with confidence 0


def detect_language(text: str) -> Language:
    """The ISO 639-1 code of the text's language with its confidence, or `und` (confidence 0) when
    the text gives too little to go on."""
    sample = text[:SAMPLE_CHARS]
    if len(sample) < 20 and len(_LETTER.findall(sample)) < MIN_LETTERS:  # longer: the model's confidence tells
        return Language(UNDETERMINED, 0.0)
    label, confidence = _IDENTIFIER.classify(sample)
    code = _FOLD.get(label, label)
    if code in ("ar", "fa", "ur"):
        code, confidence = _arabic_script(sample, code, confidence)
    if len(code) != 2 or confidence < MIN_CONFIDENCE:
        return Language(UNDETERMINED, 0.0)
    return Language(code, confidence)


def _arabic_script(sample: str, code: str, confidence: float) -> tuple[str, float]:
    """Urdu when the Arabic-script text writes Urdu's own letters often enough (one in fifty
    letters, as the hand-written guess had it); the model's answer otherwise."""
    arabic = len(_ARABIC_SCRIPT.findall(sample))
    if arabic >= MIN_LETTERS and len(_URDU_ONLY.findall(sample)) * 50 >= arabic:
        return "ur", confidence if code == "ur" else LETTERS_CONFIDENCE
    return code, confidence
