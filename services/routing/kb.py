"""The knowledge base's search: which article answers a customer's question, and how surely. Pure.

Text is cut into words, lower-cased, stripped of common words ("how", "do", "I") and of
light endings (returns → return; Arabic diacritics and the article ال), per language. A
word counts for more the fewer articles use it (BM25's idf). An article's score, from 0 to
1, is the mean of two coverages:

- how much of the message the article covers: the idf-weighted share of the message's
  words found in it (a word in the title, keywords or questions counts fully, a word in
  the body counts half per mention, up to full);
- how much of one of the article's questions (or its title) the message asks: the best
  idf-weighted share of a question's words found in the message.

So "how do I return an item?" scores 1.0 on an article listing that question, a long
message asking the same thing still scores well, and a message that only shares a word
or two scores low. Articles answer only in their own language."""
from __future__ import annotations

import math
import re

from pydantic import BaseModel, Field

_WORD = re.compile(r"\w+")
_DIACRITICS = re.compile("[\u064b-\u0652\u0670\u0640]")  # Arabic harakat, dagger alif, tatweel
_AR_LETTERS = str.maketrans({"أ": "ا", "إ": "ا", "آ": "ا", "ى": "ي", "ة": "ه"})
_AR_PREFIXES = ("وال", "بال", "كال", "فال", "لل", "ال")

STOPWORDS = {
    "en": set("""a an the and or but if of to in on at by for from with about as into over after before is are was
        were be been being am do does did doing done have has had having i me my mine we us our you your he him his
        she her it its they them their this that these those there here what which who whom whose when where why how
        can could would should will shall may might must not no yes so too very just also please thanks thank hi
        hello hey dear regards want wanted need needs like get got any some all one it's i'm i've don't can't im ive
        dont cant""".split()),
    "ar": {"في", "من", "على", "الى", "إلى", "عن", "مع", "هل", "كيف", "ما", "ماذا", "لماذا", "متى", "اين", "أين",
           "انا", "أنا", "انت", "أنت", "هذا", "هذه", "ذلك", "التي", "الذي", "او", "أو", "و", "ثم", "لا", "نعم", "لو",
           "فضلك", "شكرا", "مرحبا", "السلام", "عليكم", "اريد", "أريد", "ممكن", "يمكنني", "يمكن", "لي", "عند",
           "كان", "قد", "لقد", "تم"},
    "es": set("""el la los las un una unos unas y o de del al a en con por para que como cómo qué es son mi mis su
        sus yo tu usted me se lo le hola gracias por favor quiero puedo no si sí""".split()),
    "fr": set("""le la les un une des et ou de du au aux à en avec pour par que qui comment quoi est sont mon ma mes
        son sa ses je tu vous nous il elle ce cette bonjour merci svp veux peux ne pas""".split()),
    "de": set("""der die das ein eine und oder von zu im in mit für auf ist sind mein meine ich du sie wir es wie was
        wo hallo danke bitte möchte kann nicht""".split()),
}
_ALL_STOPWORDS = set().union(*STOPWORDS.values())


def _stem(word: str, language: str | None) -> str:
    if any("\u0600" <= c <= "\u06ff" for c in word):
        word = _DIACRITICS.sub("", word).translate(_AR_LETTERS)
        for prefix in _AR_PREFIXES:
            if word.startswith(prefix) and len(word) - len(prefix) >= 3:
                return word[len(prefix):]
        return word
    if language in (None, "en"):
        if word.endswith("'s"):
            word = word[:-2]
        if len(word) > 4 and word.endswith("ies"):
            return word[:-3] + "y"
        if len(word) > 5 and word.endswith("ing"):
            return word[:-3]
        if len(word) > 4 and word.endswith("ed"):
            return word[:-2]
        if len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
            return word[:-1]
    return word


def tokens(text: str, language: str | None = None) -> list[str]:
    """The words that carry meaning, normalised; numbers (order ids, amounts) are left out."""
    stop = STOPWORDS.get(language or "", _ALL_STOPWORDS) if language else _ALL_STOPWORDS
    out = []
    for word in _WORD.findall(text.casefold().replace("’", "'")):
        if any(c.isdigit() for c in word) or word in stop:
            continue
        stemmed = _stem(word, language)
        if stemmed and stemmed not in stop:
            out.append(stemmed)
    return out


class Article(BaseModel):
    """`PUT /v1/kb/articles/{article_id}`."""

    title: str = Field(min_length=1, max_length=300)
    body: str = Field(min_length=1, max_length=20_000, description="the answer sent to the customer")
    language: str = Field(min_length=2, max_length=10, examples=["en"])
    keywords: list[str] = Field(default_factory=list, max_length=50)
    questions: list[str] = Field(default_factory=list, max_length=50,
                                 description="ways customers ask this, e.g. 'how do I return an item?'")


class Hit(BaseModel):
    id: str
    title: str
    language: str
    score: float


class _Indexed:
    def __init__(self, article_id: str, article: Article) -> None:
        lang = article.language
        self.id, self.article = article_id, article
        self.strong: dict[str, int] = {}  # title, keywords, questions
        for text in (article.title, *article.keywords, *article.questions):
            for t in tokens(text, lang):
                self.strong[t] = self.strong.get(t, 0) + 1
        self.body: dict[str, int] = {}
        for t in tokens(article.body, lang):
            self.body[t] = self.body.get(t, 0) + 1
        self.units = [set(tokens(text, lang)) for text in (article.title, *article.questions)]
        self.units = [u for u in self.units if u]
        self.words = set(self.strong) | set(self.body)

    def strength(self, word: str) -> float:
        return min(1.0, (2 * self.strong.get(word, 0) + self.body.get(word, 0)) / 2)


def search(articles: dict[str, Article], query: str, language: str | None = None, limit: int = 5) -> list[Hit]:
    """Articles that answer `query`, best first, with their scores (0 to 1). With a language,
    only articles in that language are considered; without, each language's articles are
    searched with that language's words."""
    languages = [language] if language else sorted({a.language for a in articles.values()})
    hits = [hit for lang in languages
            for hit in _search_one_language({aid: a for aid, a in articles.items() if a.language == lang}, query, lang)]
    hits.sort(key=lambda h: (-h.score, h.id))
    return hits[:limit]


def _search_one_language(articles: dict[str, Article], query: str, language: str) -> list[Hit]:
    pool = [_Indexed(aid, a) for aid, a in sorted(articles.items())]
    words = list(dict.fromkeys(tokens(query, language)))
    if not pool or not words:
        return []
    n = len(pool)
    vocabulary = set(words).union(*(unit for doc in pool for unit in doc.units))
    weight = {w: math.log((n + 1) / (sum(1 for doc in pool if w in doc.words) + 0.5)) + 1 for w in vocabulary}
    asked, total = set(words), sum(weight[w] for w in words)
    hits = []
    for doc in pool:
        covered = sum(weight[w] * doc.strength(w) for w in words) / total
        answered = max((sum(weight[w] for w in unit & asked) / sum(weight[w] for w in unit) for unit in doc.units),
                       default=0.0)
        if score := round((covered + answered) / 2, 3):
            hits.append(Hit(id=doc.id, title=doc.article.title, language=doc.article.language, score=score))
    return hits


def best_answer(articles: dict[str, Article], query: str, language: str | None,
                min_score: float) -> tuple[str, Article, float] | None:
    """The article to send as an automatic answer, if one scores at least `min_score`."""
    hits = search(articles, query, language, limit=1)
    if hits and hits[0].score >= min_score:
        return hits[0].id, articles[hits[0].id], hits[0].score
    return None
