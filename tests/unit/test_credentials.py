"""Tokens and proofs: the start-up check, chat tokens, chat session claims, mail authentication."""
from __future__ import annotations

from types import SimpleNamespace

import pytest

from services.ingest.chat_sessions import ChatSessions, Forbidden, MemoryClaims
from services.ingest.verification import mail_sender_passed, trusted_ids
from shared.credentials import ChatTokens, InsecureSettings, check_start, new_agent_token, problems, token_id_of


def settings(**kw):
    return SimpleNamespace(**{"api_token": None, "agent_token": None, "insecure_dev": False, **kw})


@pytest.mark.parametrize("token", [None, "", "fifteen-chars!!"])
def test_a_missing_empty_or_short_admin_token_stops_the_service_with_a_clear_message(token):
    with pytest.raises(InsecureSettings, match="DESKSTREAM_API_TOKEN"):
        check_start(settings(api_token=token))


def test_insecure_development_mode_starts_and_names_the_problem_to_repeat():
    check_start(settings(api_token="", insecure_dev=True))
    assert problems(settings(api_token="")) == ["DESKSTREAM_API_TOKEN is not set (or empty)"]
    assert problems(settings(api_token="x" * 16)) == []
    assert problems(settings(api_token="x" * 16, agent_token="short"))


def test_agent_tokens_carry_their_id_and_nothing_else_parses_as_one():
    token_id, token = new_agent_token()
    assert token_id_of(token) == token_id and len(token) > 50
    assert token_id_of("dsa_short_x") is None and token_id_of("Bearer whatever") is None


def test_a_chat_token_names_its_visitor_for_its_session_only():
    tokens = ChatTokens(b"k" * 32)
    token = tokens.issue("s1", "visitor-1")
    assert tokens.visitor_of("s1", token) == "visitor-1"
    assert tokens.visitor_of("s2", token) is None
    assert tokens.visitor_of("s1", token[:-1] + ("A" if token[-1] != "A" else "B")) is None
    assert ChatTokens(b"other-key").visitor_of("s1", token) is None
    assert tokens.visitor_of("s1", "cs1.!!!.x") is None and tokens.visitor_of("s1", None) is None


async def test_a_session_is_claimed_by_its_first_message_and_later_ones_need_its_token():
    sessions = ChatSessions(ChatTokens(b"k" * 32), MemoryClaims())
    token = await sessions.admit("s1", "v1", "m1", None)
    assert await sessions.admit("s1", "v1", "m1", None) == token  # the first message again
    with pytest.raises(Forbidden):
        await sessions.admit("s1", "v1", "m2", None)  # a later one without its token
    with pytest.raises(Forbidden):
        await sessions.admit("s1", "v2", "m3", None)  # another visitor
    with pytest.raises(Forbidden):
        await sessions.admit("s1", "v2", "m3", token)  # another visitor with the opener's token
    assert await sessions.admit("s1", "v1", "m2", token) == token


MAIL = b"""Authentication-Results: mx.shop.example; dkim=pass header.d=example.com; spf=fail smtp.mailfrom=x@evil.test
Authentication-Results: evil.test; dmarc=pass header.from=bank.example
From: Ana <ana@mail.example.com>
Subject: hi

body
"""


def test_a_mail_sender_is_verified_only_by_a_trusted_relay_and_an_aligned_domain():
    trusted = trusted_ids(" MX.shop.example , ")
    assert mail_sender_passed(MAIL, "ana@mail.example.com", trusted)  # dkim for the parent domain
    assert not mail_sender_passed(MAIL, "ceo@bank.example", trusted)  # a header the sender wrote
    assert not mail_sender_passed(MAIL, "ana@other.example", trusted)  # not aligned
    assert not mail_sender_passed(MAIL, "ana@mail.example.com", frozenset())  # nothing trusted
