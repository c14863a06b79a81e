"""What a customer's first message says, in a form two messages can be compared by. Pure.

Wording is compared with character shingles of the normalised text (Arabic spelling variants and
diacritics folded, digits made ASCII), which catches a request retold in other words of the same
language. Across languages wording does not help, so a message also yields the facts that identify a
request whatever the language: order ids, product codes (SKUs), the product named (a small bilingual
lexicon) and the kind of fault (another). Both lexicons are data below, one screen each."""

from __future__ import annotations

import re
import sys
import unicodedata
from dataclasses import dataclass, field
from functools import lru_cache

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
    r"(?:order|ord|طلب|طلبي|طلبيه|الطلب|الطلبيه|شحنه|الشحنه)\s*(?:id|no|number|num|nr|رقم|#|:|\.|-|\s)*#?\s*"
    r"([a-z]{0,3}-?\d{5,12})\b"
    r"|#\s?(\d{5,12})\b",
)
# a product code: 2-4 letters, an optional dash, 2-5 digits and an optional letter (KT-200, BL500X)
_SKU = re.compile(r"\b([a-z]{2,4})-?(\d{2,5}[a-z]?)\b")
_NOT_SKU = frozenset({"ord", "no", "nr", "num", "id", "ref", "tel", "am", "pm", "usd", "sar", "aed", "kg", "cm", "mm"})


def order_ids(text: str) -> list[str]:
    """Order ids, as their digits (ORD-10234, order #10234 and طلب رقم ١٠٢٣٤ are all 10234)."""
    found = []
    for m in _ORDER.finditer(text):
        value = m.group(1) or m.group(2)
        found.append(re.sub(r"\D", "", value))
    return list(dict.fromkeys(found))


def skus(text: str) -> list[str]:
    """Product codes, upper case without the dash (KT-200 → KT200)."""
    found = [f"{a}{b}".upper() for a, b in _SKU.findall(text) if a not in _NOT_SKU]
    return list(dict.fromkeys(found))


# ---------------------------------------------------------------- products and faults (bilingual lexicons)

# product → words that name it (normalised spelling; an Arabic word matches with or without its article)
PRODUCTS: dict[str, tuple[str, ...]] = {
    "kettle": ("kettle", "kettles", "غلايه", "غلايه الماء", "سخان ماء", "براد"),
    "blender": ("blender", "blenders", "خلاط", "الخلاط"),
    "headphones": ("headphones", "headphone", "earbuds", "earphones", "headset", "سماعه", "سماعات"),
    "air fryer": ("air fryer", "airfryer", "fryer", "قلايه", "قلايه هوائيه"),
    "coffee machine": ("coffee machine", "coffee maker", "espresso machine", "ماكينه قهوه", "اله قهوه", "مكينه القهوه"),
    "vacuum": ("vacuum", "vacuum cleaner", "hoover", "مكنسه", "مكنسه كهربائيه"),
    "phone charger": ("charger", "charging cable", "power adapter", "شاحن", "كيبل الشحن"),
    "smartwatch": ("smartwatch", "smart watch", "ساعه ذكيه"),
    "iron": ("steam iron", "iron", "مكواه", "مكوي"),
    "mattress": ("mattress", "مرتبه", "فرشه"),
}

# fault kind → phrases that report it; the first kind in this order that matches is the message's
FAULTS: dict[str, tuple[str, ...]] = {
    "charged_twice": (
        "charged twice",
        "double charged",
        "charged two times",
        "two charges",
        "duplicate charge",
        "billed twice",
        "خصم مرتين",
        "خصم المبلغ مرتين",
        "سحب المبلغ مرتين",
        "انسحب المبلغ مرتين",
        "دفعت مرتين",
        "خصمتوا مرتين",
    ),
    "leaking": (
        "leak",
        "leaks",
        "leaking",
        "leaked",
        "dripping",
        "drips",
        "drip",
        "تسرب",
        "يسرب",
        "تسريب",
        "يتسرب",
        "يخر",
        "يقطر",
    ),
    "overheating": (
        "overheat",
        "overheats",
        "overheating",
        "gets very hot",
        "too hot",
        "burning smell",
        "smells of burning",
        "sparks",
        "يسخن",
        "سخونه",
        "حراره عاليه",
        "ريحه حريق",
        "رائحه حريق",
        "رائحه احتراق",
        "شراره",
    ),
    "wrong_item": (
        "wrong item",
        "wrong product",
        "wrong size",
        "wrong colour",
        "wrong color",
        "wrong model",
        "not what i ordered",
        "different item",
        "sent me a different",
        "منتج غلط",
        "منتج خطا",
        "غلط",
        "مختلف عن",
        "مو اللي طلبته",
        "ليس ما طلبته",
        "لون مختلف",
        "مقاس غلط",
    ),
    "damaged": (
        "damaged",
        "cracked",
        "crack",
        "dented",
        "scratched",
        "smashed",
        "shattered",
        "arrived broken",
        "broken on arrival",
        "broken in the box",
        "مكسور",
        "مكسوره",
        "تالف",
        "تالفه",
        "مخدوش",
        "مشعور",
        "كسر",
        "وصل مكسور",
        "وصلت مكسوره",
        "مطعوج",
    ),
    "missing": (
        "missing",
        "not in the box",
        "wasn't in the box",
        "was not included",
        "not included",
        "incomplete",
        "ناقص",
        "ناقصه",
        "مفقود",
        "مو موجود في الكرتون",
        "غير موجود في العلبه",
        "ما كان في العلبه",
    ),
    "late_delivery": (
        "not arrived",
        "hasn't arrived",
        "has not arrived",
        "didn't arrive",
        "did not arrive",
        "still waiting",
        "where is my order",
        "late",
        "delayed",
        "delay",
        "not delivered",
        "never arrived",
        "not received",
        "haven't received",
        "have not received",
        "لم يصل",
        "ما وصل",
        "ماوصل",
        "لم تصل",
        "ما وصلت",
        "تاخر",
        "متاخر",
        "تاخير",
        "وين طلبي",
        "وين الطلب",
        "لم استلم",
        "ما استلمت",
    ),
    "battery": (
        "battery",
        "won't charge",
        "doesn't charge",
        "not charging",
        "بطاريه",
        "البطاريه",
        "ما يشحن",
        "لا يشحن",
    ),
    "not_working": (
        "not working",
        "stopped working",
        "doesn't work",
        "does not work",
        "won't turn on",
        "will not turn on",
        "doesn't turn on",
        "does not turn on",
        "dead",
        "broken",
        "faulty",
        "defective",
        "stopped",
        "not switching on",
        "لا يعمل",
        "لا تعمل",
        "ما يشتغل",
        "ما تشتغل",
        "مايشتغل",
        "ماتشتغل",
        "توقف",
        "توقفت",
        "خربان",
        "خربانه",
        "عطلان",
        "عطلانه",
        "معطل",
        "معطله",
        "خربت",
        "خرب",
        "لا يشتغل",
        "لا تشتغل",
        "ما يشغل",
        "فيه عطل",
        "عطل",
    ),
    "refund": (
        "refund",
        "money back",
        "reimburse",
        "return my money",
        "استرداد",
        "استرجاع المبلغ",
        "ارجاع المبلغ",
        "رجعوا فلوسي",
        "ابي فلوسي",
        "ارجاع فلوسي",
        "استرجاع",
    ),
}


_ARTICLES = ("وال", "بال", "فال", "كال", "لل", "ال")


def _bare(word: str) -> str:
    """The word without the Arabic article and a preposition joined to it (الغلايه → غلايه)."""
    for prefix in _ARTICLES:
        if word.startswith(prefix) and len(word) - len(prefix) >= 2:
            return word[len(prefix) :]
    return word


@lru_cache(maxsize=65536)
def _forms(word: str) -> frozenset[str]:
    """How a lexicon word may appear inside a text's word: as it is, without the article, or after a
    one-letter conjunction or preposition (و، ب، ف، ل). Cached: the words of support mail repeat."""
    forms = {word, _bare(word)}
    if len(word) > 3 and word[0] in "وبفل":
        forms |= {word[1:], _bare(word[1:])}
    return frozenset(forms)


class Lexicon:
    """Phrases of a few words, each for a name (a product, a kind of fault), found by whole words in one
    pass over a text's words — a dict lookup per word, not a regular expression per phrase."""

    def __init__(self, entries: dict[str, tuple[str, ...]]) -> None:
        self.names = list(entries)
        self.starts: dict[str, list[tuple[tuple[str, ...], str]]] = {}
        for name, phrases in entries.items():
            for phrase in phrases:
                words = tuple(_bare(w) for w in re.findall(r"\w+", normalise(phrase)))
                self.starts.setdefault(words[0], []).append((words, name))

    def find(self, words: list[str]) -> list[str]:
        """The names whose phrases occur in `words` (normalised), in the lexicon's order."""
        found: set[str] = set()
        for i, word in enumerate(words):
            for form in _forms(word):
                for phrase, name in self.starts.get(form, ()):
                    if name not in found and self._follows(words, i, phrase):
                        found.add(name)
        return [n for n in self.names if n in found]

    @staticmethod
    def _follows(words: list[str], i: int, phrase: tuple[str, ...]) -> bool:
        if i + len(phrase) > len(words):
            return False
        return all(phrase[k] in _forms(words[i + k]) for k in range(1, len(phrase)))


_PRODUCTS = Lexicon(PRODUCTS)
_FAULTS = Lexicon(FAULTS)


def products(text: str) -> list[str]:
    """The products a normalised text names, in lexicon order."""
    return _PRODUCTS.find(re.findall(r"\w+", text))


def faults(text: str) -> list[str]:
    """The kinds of fault a normalised text reports, most specific first (the order of FAULTS)."""
    return _FAULTS.find(re.findall(r"\w+", text))


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
    words = re.findall(r"\w+", norm)
    return Features(
        text=norm,
        words=tuple(sorted({sys.intern(w) for w in tokens(norm)})),
        orders=tuple(order_ids(norm)),
        skus=tuple(skus(norm)),
        products=tuple(_PRODUCTS.find(words)),
        faults=tuple(_FAULTS.find(words)),
    )
