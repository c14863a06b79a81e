"""The knowledge base's search: which article answers a customer's question, and how surely. Pure.

Text is cut into words, lower-cased, spelt one way (accents dropped in Latin, Greek and
Cyrillic; Arabic, Persian and Urdu letter variants and diacritics unified), stripped of common
words ("how", "do", "I") and of light endings, per language. Languages written without spaces
between words (Chinese, Japanese, Thai) are cut into overlapping pairs of characters, so a
question matches an article that uses the same words. `COVERAGE` says what each language gets:
every language is searched, only those listed there have their own common words left out. A
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
import unicodedata

from pydantic import BaseModel, Field

_WORD = re.compile(r"\w+")
_DIACRITICS = re.compile("[\u064b-\u0652\u0670\u0640]")  # Arabic harakat, dagger alif, tatweel
# one form for letters Arabic, Persian and Urdu keyboards write differently (hamza seats, yeh, kaf, heh)
_AR_LETTERS = str.maketrans({"أ": "ا", "إ": "ا", "آ": "ا", "ى": "ي", "ی": "ي", "ة": "ه", "ۀ": "ه", "ہ": "ه", "ک": "ك"})
_AR_PREFIXES = ("وال", "بال", "كال", "فال", "لل", "ال")
# scripts written without spaces between words: a run of them is searched by its pairs of characters
_UNSPACED = re.compile("[\u0e00-\u0eff\u1000-\u109f\u1780-\u17ff\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]+")

_STOP_TEXT = {
    "en": """a an the and or but if of to in on at by for from with about as into over after before is are was
        were be been being am do does did doing done have has had having i me my mine we us our you your he him his
        she her it its they them their this that these those there here what which who whom whose when where why how
        can could would should will shall may might must not no yes so too very just also please thanks thank hi
        hello hey dear regards want wanted need needs like get got any some all one it's i'm i've don't can't im ive
        dont cant""",
    "ar": """في من على الى إلى عن مع هل كيف ما ماذا لماذا متى اين أين انا أنا انت أنت هذا هذه ذلك التي الذي او أو و
        ثم لا نعم لو فضلك شكرا مرحبا السلام عليكم اريد أريد ممكن يمكنني يمكن لي عند كان قد لقد تم""",
    "fa": """از به در که را و با این آن من تو شما است هست بود برای چطور چگونه چرا کی کجا آیا می نمی لطفا سلام
        ممنون مرسی یک هم یا اگر تا""",
    "ur": """کا کی کے میں ہے ہیں تھا تھی کو سے اور یہ وہ کیا کیسے کب کہاں میرا میری میرے مجھے آپ براہ کرم
        شکریہ السلام علیکم نہیں""",
    "es": """el la los las un una unos unas y o de del al a en con por para que como cómo qué es son mi mis su
        sus yo tu usted me se lo le hola gracias por favor quiero puedo no si sí""",
    "pt": """o a os as um uma uns umas e ou de do da dos das no na nos nas em com por para que como é são meu minha
        meus minhas seu sua eu você me se olá oi obrigado obrigada favor quero posso não sim""",
    "fr": """le la les un une des et ou de du au aux à en avec pour par que qui comment quoi est sont mon ma mes
        son sa ses je tu vous nous il elle ce cette bonjour merci svp veux peux ne pas""",
    "it": """il lo la i gli le un uno una e o di del della dei delle a al in con per che come è sono mio mia miei
        mie io tu lei mi si ciao grazie favore voglio posso non""",
    "de": """der die das ein eine und oder von zu im in mit für auf ist sind mein meine ich du sie wir es wie was
        wo hallo danke bitte möchte kann nicht""",
    "nl": """de het een en of van in op met voor aan is zijn mijn ik je jij u we wij hoe wat waar hallo hoi
        bedankt dank alstublieft graag wil kan niet""",
    "tr": """ve veya bir bu şu o için ile de da mi mı mu mü ne nasıl nerede neden ben sen siz benim merhaba
        teşekkürler lütfen istiyorum değil""",
    "ru": """и или в во на с со по к от до из за для это как что где когда почему мой моя моё мои я вы мне меня
        здравствуйте привет спасибо пожалуйста хочу могу не нет""",
}
COVERAGE = {
    "common words left out": sorted(_STOP_TEXT),
    "endings removed": ["en (plural, -ing, -ed)", "ar (the article ال and its prefixed forms)"],
    "spelling unified": ["Latin, Greek and Cyrillic accents", "Arabic, Persian and Urdu letter variants"],
    "cut into pairs of characters": ["zh", "ja", "th", "lo", "my", "km"],
}  # every other language: its words as written (lower-cased), the listed languages' common words left out


def _spelling(word: str) -> str:
    """One spelling for the forms customers type: without accents (devolução, devolucao) or
    Arabic diacritics, with one letter for each Arabic, Persian and Urdu variant."""
    if any("\u0600" <= c <= "\u06ff" for c in word):
        return _DIACRITICS.sub("", word).translate(_AR_LETTERS)
    if word.isascii() or any(c >= "\u0530" for c in word):  # other scripts' marks are letters' vowels
        return word
    return "".join(c for c in unicodedata.normalize("NFKD", word) if not unicodedata.combining(c))


STOPWORDS = {lang: {_spelling(w) for w in text.casefold().split()} for lang, text in _STOP_TEXT.items()}
_ALL_STOPWORDS = set().union(*STOPWORDS.values())


def _stem(word: str, language: str | None) -> str:
    if any("\u0600" <= c <= "\u06ff" for c in word):
        if language in (None, "ar"):
            for prefix in _AR_PREFIXES:
                if word.startswith(prefix) and len(word) - len(prefix) >= 3:
                    return word[len(prefix) :]
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


def _pieces(word: str) -> list[str]:
    """The word, or for a run of an unspaced script its overlapping pairs of characters."""
    if word.isascii() or not _UNSPACED.search(word):
        return [word]
    out: list[str] = []
    for part in re.split(f"({_UNSPACED.pattern})", word):
        if _UNSPACED.fullmatch(part):
            out += [part] if len(part) < 2 else [part[i : i + 2] for i in range(len(part) - 1)]
        elif part:
            out.append(part)
    return out


def tokens(text: str, language: str | None = None) -> list[str]:
    """The words that carry meaning, normalised; numbers (order ids, amounts) are left out."""
    stop = STOPWORDS.get(language, _ALL_STOPWORDS) if language else _ALL_STOPWORDS
    out = []
    for word in _WORD.findall(text.casefold().replace("’", "'")):
        if any(c.isdigit() for c in word):
            continue
        for piece in _pieces(word):
            piece = _spelling(piece)
            if piece in stop:
                continue
            stemmed = _stem(piece, language)
            if stemmed and stemmed not in stop:
                out.append(stemmed)
    return out


class Article(BaseModel):
    """`PUT /v1/kb/articles/{article_id}`."""

    title: str = Field(min_length=1, max_length=300)
    body: str = Field(min_length=1, max_length=20_000, description="the answer sent to the customer")
    language: str = Field(min_length=2, max_length=10, examples=["en"])
    keywords: list[str] = Field(default_factory=list, max_length=50)
    questions: list[str] = Field(
        default_factory=list, max_length=50, description="ways customers ask this, e.g. 'how do I return an item?'"
    )


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
    hits = [
        hit
        for lang in languages
        for hit in _search_one_language({aid: a for aid, a in articles.items() if a.language == lang}, query, lang)
    ]
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
        answered = max(
            (sum(weight[w] for w in unit & asked) / sum(weight[w] for w in unit) for unit in doc.units), default=0.0
        )
        if score := round((covered + answered) / 2, 3):
            hits.append(Hit(id=doc.id, title=doc.article.title, language=doc.article.language, score=score))
    return hits


def best_answer(
    articles: dict[str, Article], query: str, language: str | None, min_score: float
) -> tuple[str, Article, float] | None:
    """The article to send as an automatic answer, if one scores at least `min_score`."""
    hits = search(articles, query, language, limit=1)
    if hits and hits[0].score >= min_score:
        return hits[0].id, articles[hits[0].id], hits[0].score
    return None
