"""The pure rules of outbound webhooks: signatures an off-the-shelf Standard Webhooks library
accepts, the patterns, the targets refused, the back-off and which lanes may be sent."""
from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from services.tickets.webhooks.rules import (
    Queued, Refused, RetryPolicy, check_addresses, check_url, new_secret, ready, secret_key, signed_headers,
    wanted_types, wants,
)

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)


def test_a_signed_delivery_verifies_with_the_standardwebhooks_library():
    secret = new_secret()
    body = b'{"specversion":"1.0","id":"ev-1","type":"deskstream.ticket.created"}'
    timestamp = int(datetime.now(UTC).timestamp())
    headers = signed_headers(secret, "ev-1", timestamp, body)
    assert headers["webhook-id"] == "ev-1" and headers["webhook-signature"].startswith("v1,")
    assert Webhook(secret).verify(body, headers)["id"] == "ev-1"


def test_a_changed_body_or_another_secret_fails_verification():
    secret = new_secret()
    headers = signed_headers(secret, "ev-1", int(datetime.now(UTC).timestamp()), b'{"a":1}')
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(b'{"a":2}', headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(new_secret()).verify(b'{"a":1}', headers)


def test_the_signature_matches_the_specs_own_example():
    # the example of the Standard Webhooks specification (and of its reference libraries)
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    headers = signed_headers(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, b'{"test": 2432232314}')
    assert headers["webhook-signature"] == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


@pytest.mark.parametrize("secret", ["MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "whsec_not base64!", "whsec_c2hvcnQ="])
def test_a_secret_is_whsec_and_16_to_64_bytes_of_base64(secret):
    with pytest.raises(ValueError):
        secret_key(secret)


def test_generated_secrets_are_distinct_and_valid():
    a, b = new_secret(), new_secret()
    assert a != b and len(secret_key(a)) == 24


@pytest.mark.parametrize(("patterns", "kind", "wanted"), [
    (["*"], "deskstream.sla.breached", True),
    (["deskstream.ticket.*"], "deskstream.ticket.status_changed", True),
    (["deskstream.ticket.*"], "deskstream.sla.breached", False),
    (["deskstream.ticket.created", "deskstream.sla.*"], "deskstream.sla.warning", True),
    (["deskstream.ticket.created"], "deskstream.ticket.created_again", False),
])
def test_patterns_select_cloudevents_types(patterns, kind, wanted):
    assert wants(patterns, kind) is wanted


@pytest.mark.parametrize("url", ["ftp://example.com/x", "file:///etc/passwd", "https://", "https://u:p@example.com/"])
def test_only_plain_http_and_https_urls_are_called(url):
    with pytest.raises(Refused):
        check_url(url)


@pytest.mark.parametrize("address", ["127.0.0.1", "10.1.2.3", "192.168.0.5", "172.16.9.9", "169.254.169.254",
                                     "::1", "fe80::1", "::ffff:127.0.0.1", "0.0.0.0", "fd00::1"])
def test_private_loopback_and_link_local_targets_are_refused(address):
    with pytest.raises(Refused):
        check_addresses([address], allow_private=False)
    check_addresses([address], allow_private=True)  # WEBHOOKS_ALLOW_PRIVATE=1


def test_public_targets_are_allowed():
    check_addresses(["93.184.215.14", "2606:2800:21f:cb07:6820:80da:af6b:8b2c"], allow_private=False)


def test_back_off_grows_with_jitter_up_to_its_cap_and_gives_up_after_a_day():
    policy = RetryPolicy(base_s=5, cap_s=1800, give_up_after_s=24 * 3600)
    rand = random.Random(7)
    delays = [(policy.next_attempt(n, NOW, NOW, rand) - NOW).total_seconds() for n in range(1, 15)]
    for n, delay in enumerate(delays, start=1):
        ceiling = min(1800, 5 * 2 ** (n - 1))
        assert ceiling / 2 <= delay <= ceiling
    assert delays[-1] >= 900  # capped, still retrying
    assert policy.next_attempt(40, NOW + timedelta(hours=24), NOW) is None


def test_only_a_lanes_head_is_sent_and_each_subscriber_keeps_to_its_share():
    heads = [Queued(("dead", f"t{i}"), NOW) for i in range(10)] + [Queued(("alive", "t1"), NOW),
                                                                    Queued(("alive", "t2"), NOW + timedelta(seconds=5))]
    chosen = ready(heads, now=NOW, busy={("alive", "t9")}, in_flight={"dead": 6}, limit_per_webhook=8)
    assert [lane for lane in chosen if lane[0] == "dead"] == [("dead", "t0"), ("dead", "t1")]
    assert ("alive", "t1") in chosen and ("alive", "t2") not in chosen  # waiting for its back-off


def test_a_lane_already_in_flight_is_not_sent_again():
    assert ready([Queued(("a", "t1"), NOW)], now=NOW, busy={("a", "t1")}, in_flight={"a": 1},
                 limit_per_webhook=8) == []


def test_the_consumer_parses_only_types_some_active_subscription_wants():
    known = ["deskstream.ticket.created", "deskstream.sla.breached", "deskstream.customer.changed"]
    assert wanted_types([], known) == frozenset()
    assert wanted_types([["deskstream.ticket.*"], ["deskstream.sla.breached"]], known) == {
        "deskstream.ticket.created", "deskstream.sla.breached"}
    assert wanted_types([["*"]], known) == set(known)
