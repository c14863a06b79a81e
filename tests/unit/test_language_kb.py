"""The knowledge base finds articles in the languages ingest now labels, not only English and Arabic."""
from __future__ import annotations

from services.routing.kb import COVERAGE, Article, search, tokens

ARTICLES = {
    "devolucao": Article(title="Como devolver um produto", language="pt", keywords=["devolução", "troca"],
                         body="Você pode devolver qualquer produto em até 30 dias.",
                         questions=["como faço para devolver um produto?"]),
    "retour": Article(title="Een product terugsturen", language="nl", keywords=["retour", "terugsturen"],
                      body="U kunt elk product binnen 30 dagen terugsturen.",
                      questions=["hoe stuur ik een product terug?"]),
    "tuihuo": Article(title="如何退货", language="zh", keywords=["退货"], body="收到商品后三十天内可以退货。",
                      questions=["怎么退货？"]),
    "henpin": Article(title="返品の方法", language="ja", keywords=["返品"], body="商品到着後30日以内に返品できます。",
                      questions=["返品はどうすればいいですか？"]),
    "marjooi": Article(title="مرجوع کردن کالا", language="fa", keywords=["مرجوع", "پس دادن"],
                       body="تا ۳۰ روز می‌توانید کالا را پس بدهید.", questions=["چطور کالا را پس بدهم؟"]),
}


def top(query: str, language: str) -> str | None:
    hits = search(ARTICLES, query, language)
    return hits[0].id if hits and hits[0].score >= 0.5 else None


def test_portuguese_questions_find_the_portuguese_article_with_or_without_accents():
    assert top("Olá, como faço para devolver um produto?", "pt") == "devolucao"
    assert top("quero fazer a devolucao do produto", "pt") == "devolucao"


def test_dutch_common_words_do_not_count():
    assert "hoe" not in tokens("hoe stuur ik een product terug", "nl")
    assert top("Hallo, hoe stuur ik een product terug?", "nl") == "retour"


def test_chinese_and_japanese_are_searched_by_pairs_of_characters():
    assert top("你好，我想退货，怎么退货？", "zh") == "tuihuo"
    assert top("すみません、返品はどうすればいいですか", "ja") == "henpin"


def test_persian_written_with_arabic_letters_finds_the_persian_article():
    assert top("چطور کالا را پس بدهم؟", "fa") == "marjooi"
    assert top("چطور كالا را پس بدهم؟", "fa") == "marjooi"  # Arabic kaf, as some keyboards type it


def test_the_coverage_is_stated():
    stop_words = set(COVERAGE["common words left out"])
    assert {"en", "ar", "fa", "ur", "es", "pt", "fr", "it", "de", "nl", "tr", "ru"} <= stop_words
    assert {"zh", "ja", "th"} <= set(COVERAGE["cut into pairs of characters"])
