"""Text bound for a header line (a mail's Subject, a display name in To): one line, no control characters."""

from __future__ import annotations

import re

# what a header line cannot hold: C0 and C1 controls (CR, LF, NUL, tab, NEL…) and the Unicode line
# and paragraph separators, which Python's mail policy also refuses as line breaks
_BREAKS = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")


def one_line(text: str) -> str:
    """`text` with each run of line breaks and control characters turned into one space.

    A customer's `Subject: =?utf-8?q?a=0Ab?=` decodes to a line break; kept, it would make every
    mail answering that customer impossible to compose (and a name could smuggle a header into
    them). Text without any is returned as it is, at the cost of one regex search."""
    if _BREAKS.search(text) is None:
        return text
    return _BREAKS.sub(" ", text).strip()


def has_breaks(text: str) -> bool:
    """Whether `text` holds anything `one_line` would replace."""
    return _BREAKS.search(text) is not None
