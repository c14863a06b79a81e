"""Mail bodies for agents: HTML sanitised or turned into text, and quoted history and signatures left out."""

from __future__ import annotations

import re
from html import unescape

import nh3

_CLEANER = nh3.Cleaner(
    # dir/lang keep right-to-left (Arabic) mail readable; cid: lets a viewer show inline images
    attributes={**nh3.ALLOWED_ATTRIBUTES, "*": {"dir", "lang", "title"}},
    url_schemes=nh3.ALLOWED_URL_SCHEMES | {"cid"},
    # elements whose content is not text a reader sees
    clean_content_tags={"script", "style", "title", "noscript", "template", "textarea", "select", "iframe", "object"},
)
MAX_HTML = 1_000_000  # characters; more would not fit a Kafka record anyway
MAX_DEPTH, MAX_ATTRIBUTES = 500, 1000
_TAG = re.compile(r"<(/?)([A-Za-z][^\s/<>]*)([^<>]*)>?")  # up to the next "<": linear on any input
_NO_END_NEEDED = {  # void elements and those whose end tag may be left out: they do not nest
    "area",
    "base",
    "br",
    "col",
    "embed",
    "hr",
    "img",
    "input",
    "link",
    "meta",
    "source",
    "track",
    "wbr",
    "p",
    "li",
    "td",
    "th",
    "tr",
    "dt",
    "dd",
    "option",
    "optgroup",
    "tbody",
    "thead",
    "tfoot",
    "colgroup",
    "html",
    "head",
    "body",
    "caption",
    "rb",
    "rt",
    "rp",
}
_PIECE = re.compile(r'<(/?)([A-Za-z][A-Za-z0-9]*)(?:[^>"]|"[^"]*")*>|([^<]+)')  # a tag, or text
_LINES = {"div", "li", "tr", "table", "ul", "ol", "hr", "section", "article", "header", "footer", "dt", "dd"}
_PARAGRAPHS = {"p", "h1", "h2", "h3", "h4", "h5", "h6", "pre"}
_BR, _LINE, _PARAGRAPH, _QUOTE, _UNQUOTE = range(5)  # layout tokens between the text pieces
_MARKS = {
    "blockquote": (_QUOTE, _UNQUOTE),
    **dict.fromkeys(_LINES, (_LINE, _LINE)),
    **dict.fromkeys(_PARAGRAPHS, (_PARAGRAPH, _PARAGRAPH)),
}

# where a reply's quoted history starts: everything from here on is the earlier mail
_HISTORY = re.compile(
    r"^-{2,}\s*(original message|message d'origine|ursprüngliche nachricht|mensaje original|"
    r"messaggio originale|الرسالة الأصلية)\s*-{2,}$",
    re.IGNORECASE,
)
_ATTRIBUTION = re.compile(
    r"^(on\b.+\bwrote|le\b.+\ba écrit|am\b.+\bschrieb|el\b.+\bescribió|في\b.+كتب)\s*:$", re.IGNORECASE
)
_OUTLOOK_FROM = re.compile(r"^\*?(from|de|von|من)\s*:\*?\s+\S", re.IGNORECASE)
_OUTLOOK_NEXT = re.compile(r"^\*?(sent|date|envoyé|gesendet|enviado|to|التاريخ|أرسل)\s*:", re.IGNORECASE)
_MOBILE_SIGNATURE = re.compile(r"^(sent from my \w+|get outlook for \w+|envoyé de mon \w+)", re.IGNORECASE)


def read_html(html: str) -> tuple[str | None, str]:
    """The sanitised HTML and the text derived from it. Past MAX_HTML only the beginning is read
    for text (a record could not carry more), and HTML built to be costly (nesting or attributes
    in the thousands: the sanitiser's time grows with their square) yields only its bare text;
    the original mail keeps everything."""
    source = html[:MAX_HTML]
    if _costly(source):
        return None, _tidy_lines(unescape(re.sub(r"<[^<>]*>?", " ", source)))
    clean = _CLEANER.clean(source)  # escaping can make it longer than its source
    return (clean if len(html) <= MAX_HTML else None), html_to_text(clean[:MAX_HTML])


def _costly(html: str) -> bool:
    depth = 0
    for closing, name, rest in _TAG.findall(html):
        if len(rest.split()) > MAX_ATTRIBUTES:
            return True
        name = name.lower()
        if name in _NO_END_NEEDED or rest.endswith("/"):
            continue
        depth += -1 if closing else 1
        if depth > MAX_DEPTH:
            return True
    return False


def html_to_text(clean: str) -> str:
    """Readable text of sanitised HTML (well-formed, double-quoted attributes, `<` escaped);
    blockquotes come out as `> ` lines, like a plain-text reply."""
    tokens: list[str | int] = []
    for closing, tag, text in _PIECE.findall(clean):
        if text:
            tokens.append(re.sub(r"\s+", " ", unescape(text)))  # source line breaks are spaces in HTML
        elif tag.lower() == "br":
            tokens.append(_BR)
        elif tag.lower() in _MARKS:
            tokens.append(_MARKS[tag.lower()][1 if closing else 0])
    return _layout(tokens)


def _layout(tokens: list[str | int]) -> str:
    lines: list[str] = []
    piece: list[str] = []
    depth = 0

    def end_line(*, blank: bool = False) -> None:
        text = "".join(piece).strip()
        piece.clear()
        if text or blank:
            lines.append("> " * depth + text if text else "")

    for token in tokens:
        if isinstance(token, str):
            piece.append(token)
            continue
        end_line(blank=token == _BR)
        if token in (_PARAGRAPH, _QUOTE, _UNQUOTE):
            lines.append("")
        depth += 1 if token == _QUOTE else -1 if token == _UNQUOTE and depth else 0
    end_line()
    return re.sub(r"\n{3,}", "\n\n", "\n".join(line.replace("\xa0", " ").rstrip() for line in lines)).strip()


def _tidy_lines(text: str) -> str:
    lines = (re.sub(r"[^\S\n]+", " ", line).strip() for line in text.splitlines())
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


def visible_text(text: str) -> str:
    """The new part of a reply: without quoted history (`>` lines, "On … wrote:", Outlook
    headers) and without the signature. Falls back to the whole text if nothing is left."""
    lines = [line.rstrip() for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n")]
    kept: list[str] = []
    i = 0
    while i < len(lines):
        bare = lines[i].strip()
        if lines[i] == "--" or _MOBILE_SIGNATURE.match(bare) or _HISTORY.match(bare):
            break
        if _OUTLOOK_FROM.match(bare) and any(_OUTLOOK_NEXT.match(n.strip()) for n in lines[i + 1 : i + 4]):
            break
        # clients wrap a long attribution: "On Mon, 23 Nov 2026, Ana <ana@example.com>" / "wrote:"
        span = (
            1
            if _ATTRIBUTION.match(bare)
            else 2
            if _ATTRIBUTION.match(bare + " " + (lines[i + 1].strip() if i + 1 < len(lines) else ""))
            else 0
        )
        if span:
            rest = [n for n in lines[i + span :] if n.strip()]
            if rest and not rest[0].lstrip().startswith(">"):
                break  # history quoted without `>`: everything below is the earlier mail
            i += span  # `>` quoting: drop the attribution; answers between quotes stay
            continue
        if not bare.startswith(">"):
            kept.append(lines[i])
        i += 1
    while kept and set(kept[-1].strip()) <= set("_-= "):  # rules left above a cut
        kept.pop()
    shown = re.sub(r"\n{3,}", "\n\n", "\n".join(kept)).strip()
    return shown or text.strip()
