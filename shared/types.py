"""Value types more than one service validates the same way."""

from __future__ import annotations

from typing import Annotated
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator, Field


def known_zone(name: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ValueError(f"unknown time zone {name!r}: use an IANA name such as 'Asia/Riyadh'") from None
    return name


# an IANA time zone name (business-hours calendars, agents' working hours)
TimeZoneName = Annotated[str, Field(min_length=1, max_length=64, examples=["Asia/Riyadh"]), AfterValidator(known_zone)]
