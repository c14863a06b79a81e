"""What a customer's first message says, in a form two messages can be compared by. Pure.

Wording is compared with character shingles of the normalised text (Arabic spelling variants and
diacritics folded, digits made ASCII), which catches a request retold in other words of the same
language. Across languages wording does not help, so a message also yields the facts that identify a
request whatever the language: order ids, product codes (SKUs), the product named and the kind of fault.
Those two come from bilingual concept lexicons (data in services/analytics/lexicons.py), matched here by
word forms rather than spellings: Arabic without the article, a joined conjunction or preposition and one
ending; English lightly stemmed. A product's function said not to work ("won't charge", "no sound",
"ما يسخن") reports the fault it means."""

from __future__ import annotations

import re
import sys
import unicodedata
from dataclasses import dataclass, field
from functools import lru_cache

from services.analytics.lexicons import FAULTS, FUNCTIONS, NEGATORS, PRODUCTS, RELEASING

# ---------------------------------------------------------------- normalisation

_DIACRITICS = re.compile("[\u0610-\u061a\u064b-\u065f\u0670\u06d6-\u06ed\u0640]")  # tashkeel, tatweel
_ARABIC_FOLD = str.maketrans(
    {"أ": "ا", "إ": "ا", "آ": "ا", "ٱ": "ا", "ى": "ي", "ة": "ه", "ؤ": "و", "ئ": "ي", "گ": "ك", "ی": "ي", "ک": "ك"}
)
_DIGITS = str.maketrans("٠١٢٣٤٥٦٧٨٩۰۱۲۳۴۵۶۷۸۹", "01234567890123456789")
_NOISE = re.compile(r"https?://\S+|www\.\S+|\S+@\S+\.\w+")
_ARABIC_PREFIXES = ("وال", "بال", "فال", "كال", "لل", "ال")


def normalise(text: str) -> str:
    """Lower case, compatibility forms, Arabic letters folded to one spelling, ASCII digits, no links."""
    text = unicodedata.normalize("NFKC", text).translate(_DIGITS)
    text = _DIACRITICS.sub("", text).translate(_ARABIC_FOLD).lower()
    text = re.sub("['’‘`]", "", text)  # doesn't, doesn’t and doesnt are one word
    return _NOISE.sub(" ", text)


def _stem(word: str) -> str:
    """Light Arabic stemming: the article and its attached prepositions go (الغلايه → غلايه)."""
    for prefix in _ARABIC_PREFIXES:
        if word.startswith(prefix) and len(word) - len(prefix) >= 3:
            return word[len(prefix) :]
    return word


STOPWORDS = frozenset(
    "a an the and or but of to in on at for from with my your our i me we you it is was are be been am this that "
    "hi hello hey dear thanks thank please regards team support hope there just have has had do does did not "
    "no so can could would will any its im ive dont get got as by about what which when how why who "
    "في من على الى عن مع هذا هذه ذلك التي الذي انا انت نحن هو هي لو او ثم قد لقد تم كان كانت مرحبا شكرا "
    "السلام عليكم لو سمحت من فضلك ما لا لم لن يا و".split()
)


def tokens(text: str) -> list[str]:
    """The content words of a normalised text (stop words out, Arabic article off)."""
    return [_stem(w) for w in re.findall(r"\w+", text) if w not in STOPWORDS and (len(w) > 1 or w.isdigit())]


def shingles(text: str, k: int = 4) -> set[str]:
    """Character k-grams of the content words joined by one space: robust to typos and word endings."""
    joined = " ".join(tokens(text))
    if len(joined) <= k:
        return {joined} if joined else set()
    return {joined[i : i + k] for i in range(len(joined) - k + 1)}


def jaccard(a: set[str], b: set[str]) -> float:
    return len(a & b) / len(a | b) if a and b else 0.0


# ---------------------------------------------------------------- identifiers

# an order id: a number of 5+ digits after a word for order (either language), or written ORD-12345 / #12345
_ORDER = re.compile(
    r"(?:order|ord|(?:ال|بال|لل)?طلب\w{0,4}|(?:ال)?شحن\w{0,2})\s*(?:id|no|number|num|nr|رقم|#|:|\.|-|\s)*#?\s*"
    r"([a-z]{0,3}-?\d{5,12})\b"
    r"|#\s?(\d{5,12})\b",
)
# a product code: 2-4 letters, an optional dash, 1-5 digits and an optional letter (KT-200, BL500X, EB-2)
_SKU = re.compile(r"\b([a-z]{2,4})(-?)(\d{1,5}[a-z]?)\b")
_NOT_SKU = frozenset({"ord", "no", "nr", "num", "id", "ref", "tel"})
# currencies and times before a number ("sar200", "pm12") are amounts, but "SAR-200" with its dash is a code; a
# unit is written after its number (90cm), which is no code anyway (the letters come first in one)
_UNITS = frozenset({"am", "pm", "usd", "sar", "aed", "eur", "gbp", "kwd", "qar"})


def order_ids(text: str) -> list[str]:
    """Order ids, as their digits (ORD-10234, order #10234 and طلب رقم ١٠٢٣٤ are all 10234)."""
    found = []
    for m in _ORDER.finditer(text):
        value = m.group(1) or m.group(2)
        found.append(re.sub(r"\D", "", value))
    return list(dict.fromkeys(found))


def skus(text: str) -> list[str]:
    """Product codes, upper case without the dash (KT-200 → KT200)."""
    found = [f"{a}{b}".upper() for a, dash, b in _SKU.findall(text) if a not in _NOT_SKU and (dash or a not in _UNITS)]
    return list(dict.fromkeys(found))


# ---------------------------------------------------------------- products and faults (bilingual lexicons)

_ARTICLES = ("وال", "بال", "فال", "كال", "لل", "ال")
# Arabic endings a word may carry (plural, feminine, possessive and object pronouns); one is taken off at a time
_SUFFIXES = frozenset("ها هم هن كم نا ني ات ين ون ان يه وا تو ته تي ه ي ك ت".split())
# a lexicon's word loses only a plural or feminine ending: "فلوسي" (my money) is a refund, "فلوس" is not
_ENTRY_SUFFIXES = tuple("ات ين ون ان يه ه".split())
_ARABIC_LETTER = re.compile("[\u0621-\u064a]")


def _bare(word: str) -> str:
    """The word without the Arabic article and a preposition joined to it (الغلايه → غلايه)."""
    for prefix in _ARTICLES:
        if word.startswith(prefix) and len(word) - len(prefix) >= 2:
            return word[len(prefix) :]
    return word


def _undouble(word: str) -> str:
    return word[:-1] if len(word) >= 3 and word[-1] == word[-2] and word[-1] not in "lsz" else word


def stem_en(word: str) -> str:
    """A light English stem, for matching only (leaks, leaking, leaked → leak; charges, charged → charg)."""
    if len(word) <= 3 or not word.isascii() or not word.isalpha():
        return word
    if word.endswith("ies") and len(word) > 4:
        word = word[:-3] + "y"
    elif word.endswith("ing") and len(word) >= 6:
        word = _undouble(word[:-3])
    elif word.endswith("ed") and len(word) >= 5:
        word = _undouble(word[:-2])
    elif word.endswith("s") and not word.endswith(("ss", "us", "is")):
        word = word[:-1]
    return word[:-1] if word.endswith("e") and len(word) > 3 else word


@lru_cache(maxsize=16384)
def _forms(word: str) -> frozenset[str]:
    """The forms a word of a normalised text may be matched by: English, as it is and its light stem; Arabic,
    without a joined conjunction (و، ف), the article or a joined preposition (ب، ل، ك), and without one
    ending (مكسوره → مكسور، سماعات → سماع). A lexicon word and a text word match when they share a form.
    Cached: the words of support mail repeat."""
    if not _ARABIC_LETTER.match(word):
        return frozenset({word, stem_en(word)})
    variants = {word}
    if word[0] in "وف" and len(word) >= 3:
        variants.add(word[1:])
    for v in list(variants):
        variants.add(_bare(v))
        if v[0] in "بلك" and len(v) >= 4:
            variants.add(v[1:])
    forms = set(variants)
    for v in variants:
        if len(v) >= 4 and v[-1] in _SUFFIXES:
            forms.add(v[:-1])
        if len(v) >= 5 and v[-2:] in _SUFFIXES:
            forms.add(v[:-2])
    return frozenset(forms)


_NEGATED_WITHIN = 3  # a negator negates a function this many words later at most ("doesn't really heat up")
_NEAR = 5  # `a ~ b`: b within this many words of a


@dataclass(frozen=True, slots=True, eq=False)
class _Phrase:
    words: tuple[frozenset[str], ...]  # each word's forms
    name: str
    near: bool = False  # `a ~ b`


@dataclass(frozen=True, slots=True)
class _Word:
    """What a lexicon knows of one word of a text (cached per distinct word)."""

    forms: frozenset[str]
    starts: tuple[_Phrase, ...]  # the phrases that may start with it
    functions: tuple[_Phrase, ...]  # the functions that may start with it
    fused: tuple[_Phrase, ...]  # the functions it names after a joined ما (مايشتغل): negated in itself
    negator: bool
    releases: bool = False  # after a negator, it takes the negation for itself ("no worries", "لا مشكله")
    boundary: bool = False  # a punctuation mark: a negation does not reach past it


def _words_of(phrase: str) -> list[str]:
    return re.findall(r"\w+", normalise(phrase))


@lru_cache(maxsize=4096)
def _entry_forms(word: str) -> frozenset[str]:
    """The forms of a lexicon's word: as written, without the article, and without a plural or feminine
    ending. Unlike a text's word it keeps its first letter (وساده is a pillow, not و + ساده) and its
    pronoun (طلبي is "my order")."""
    if not _ARABIC_LETTER.match(word):
        return frozenset({word, stem_en(word)})
    variants = {word, _bare(word)}
    forms = {v[: -len(e)] for v in variants for e in _ENTRY_SUFFIXES if v.endswith(e) and len(v) - len(e) >= 3}
    return frozenset(variants | forms)


def _starting(index: dict[str, list[_Phrase]], forms: frozenset[str]) -> tuple[_Phrase, ...]:
    """The phrases of `index` that may start with a word of these forms."""
    hits = [found for f in forms if (found := index.get(f))]
    if not hits:
        return ()
    return tuple(hits[0]) if len(hits) == 1 else tuple(dict.fromkeys(p for found in hits for p in found))


class Lexicon:
    """Phrases of a few words, each for a name (a product, a kind of fault), found by whole words in one
    pass over a text's words — a dict lookup per form of a word, not a regular expression per phrase.
    With `functions` and `negators`: a function negated a few words earlier ("won't charge", "ما تسخن",
    "no sound") reports its name (battery, not working), and its words report nothing else."""

    CACHE = 16384  # distinct words remembered (support mail repeats its words): ~7 MB when full (tracemalloc)

    def __init__(
        self,
        entries: dict[str, tuple[str, ...]],
        functions: dict[str, tuple[str, ...]] | None = None,
        negators: tuple[str, ...] = (),
        releasing: tuple[str, ...] = (),
    ) -> None:
        self.names = list(entries)
        self.starts = self._index(entries)
        self.functions = self._index(functions or {})
        self.negators = frozenset(f for n in negators for w in _words_of(n) for f in _entry_forms(w))
        self.releasing = frozenset(f for n in releasing for w in _words_of(n) for f in _entry_forms(w))
        self._known: dict[str, _Word] = {}

    @staticmethod
    def _index(entries: dict[str, tuple[str, ...]]) -> dict[str, list[_Phrase]]:
        starts: dict[str, list[_Phrase]] = {}
        for name, phrases in entries.items():
            for phrase in phrases:
                near = "~" in phrase
                words = tuple(_entry_forms(w) for w in _words_of(phrase.replace("~", " ")))
                found = _Phrase(words, name, near)
                for form in words[0]:
                    starts.setdefault(form, []).append(found)
        return starts

    def _word(self, word: str) -> _Word:
        forms = _forms(word)
        known = _Word(forms, _starting(self.starts, forms), (), (), False, False, word in _BOUNDARIES)
        if self.functions:
            fused: tuple[_Phrase, ...] = ()
            if word.startswith("ما") and len(word) >= 5:
                fused = tuple(p for p in _starting(self.functions, _forms(word[2:])) if len(p.words) == 1)
            known = _Word(
                forms,
                known.starts,
                _starting(self.functions, forms),
                fused,
                not self.negators.isdisjoint(forms),
                not self.releasing.isdisjoint(forms),
                known.boundary,
            )
        if len(self._known) >= self.CACHE:
            self._known.clear()
        self._known[word] = known
        return known

    def find(self, words: list[str]) -> list[str]:
        """The names whose phrases occur in `words` (normalised), in the lexicon's order."""
        get = self._known.get
        known = [get(w) or self._word(w) for w in words]
        found: set[str] = set()
        negated: set[int] = set()  # the words of negated functions
        if self.functions:
            for i, k in enumerate(known):
                if k.fused:
                    found.update(p.name for p in k.fused)
                    negated.add(i)
                if k.functions and self._negated(known, i):
                    for phrase in k.functions:
                        span = self._span(known, i, phrase)
                        if span:
                            found.add(phrase.name)
                            negated.update(span)
        for i, k in enumerate(known):
            if not k.starts or i in negated:
                continue
            for phrase in k.starts:
                if phrase.name not in found:
                    span = self._span(known, i, phrase)
                    if span and not negated.intersection(span):
                        found.add(phrase.name)
        return [n for n in self.names if n in found]

    @staticmethod
    def _negated(known: list[_Word], i: int) -> bool:
        """Whether a negator a few words before word `i`, in the same clause, negates it."""
        for j in range(i - 1, max(-1, i - _NEGATED_WITHIN - 1), -1):
            if known[j].boundary:
                return False
            if known[j].negator and not known[j + 1].releases:
                return True
        return False

    @staticmethod
    def _span(known: list[_Word], i: int, phrase: _Phrase) -> list[int] | None:
        """The positions of the phrase's words if it occurs from word `i` (one of whose forms starts it)."""
        if len(phrase.words) == 1:
            return [i]
        if phrase.near:  # `a ~ b c`: "b c" within a few words of a, before or after it
            for j in range(max(0, i - _NEAR), min(len(known), i + _NEAR + 1)):
                if j != i and known[j].forms & phrase.words[1]:
                    rest = Lexicon._follows(known, [i, j], phrase.words[2:])
                    if rest:
                        return rest
            return None
        return Lexicon._follows(known, [i], phrase.words[1:])

    @staticmethod
    def _follows(known: list[_Word], span: list[int], words: tuple[frozenset[str], ...]) -> list[int] | None:
        for word in words:  # each next word right after the one before, or one word later
            at = span[-1]
            nxt = next((j for j in (at + 1, at + 2) if j < len(known) and known[j].forms & word), None)
            if nxt is None:
                return None
            span = [*span, nxt]
        return span


# one lexicon for both (their names differ): each word of a text is looked up once
_LEXICON = Lexicon({**PRODUCTS, **FAULTS}, FUNCTIONS, NEGATORS, RELEASING)
_WORDS = re.compile(r"\w+|[.,;:!?،؛؟]")  # words and the punctuation that ends a clause
_BOUNDARIES = frozenset(".,;:!?،؛؟")


def products(text: str) -> list[str]:
    """The products a normalised text names, in lexicon order."""
    return [n for n in _LEXICON.find(_WORDS.findall(text)) if n in PRODUCTS]


def faults(text: str) -> list[str]:
    """The kinds of fault a normalised text reports, most specific first (the order of FAULTS)."""
    return [n for n in _LEXICON.find(_WORDS.findall(text)) if n in FAULTS]


# ---------------------------------------------------------------- a message's features


@dataclass(frozen=True, slots=True)
class Features:
    """What a first message says: its wording and the facts that identify the request. Held for every
    ticket of the last 14 days, so kept small (slots; words as a tuple of interned strings: ~0.6 KB for
    a chat message where a frozenset and a dict had made ~2 KB, measured with tracemalloc)."""

    text: str = field(repr=False)  # normalised
    words: tuple[str, ...] = ()  # distinct, sorted
    orders: tuple[str, ...] = ()
    skus: tuple[str, ...] = ()
    products: tuple[str, ...] = ()
    faults: tuple[str, ...] = ()
    _grams: frozenset[str] | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def grams(self) -> frozenset[str]:
        """Its character shingles, made when first compared and kept (most tickets never are; a customer's
        few tickets are compared again with each new one)."""
        grams = self._grams
        if grams is None:
            grams = frozenset(shingles(self.text))
            object.__setattr__(self, "_grams", grams)
        return grams

    @property
    def fault(self) -> str | None:
        return self.faults[0] if self.faults else None

    @property
    def product(self) -> str | None:
        """The product key: its code if the message gives one, else the product it names."""
        if self.skus:
            return self.skus[0]
        return self.products[0] if self.products else None


SAMPLE_CHARS = 1000  # a request says what it is about in its opening; a long mail costs no more than a chat


def features(text: str, subject: str | None = None) -> Features:
    norm = normalise(f"{subject or ''}\n{text[:SAMPLE_CHARS]}")
    named = _LEXICON.find(_WORDS.findall(norm))
    return Features(
        text=norm,
        words=tuple(sorted({sys.intern(w) for w in tokens(norm)})),
        orders=tuple(order_ids(norm)),
        skus=tuple(skus(norm)),
        products=tuple(n for n in named if n in PRODUCTS),
        faults=tuple(n for n in named if n in FAULTS),
    )
