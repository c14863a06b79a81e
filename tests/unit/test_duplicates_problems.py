"""Duplicate suspicion and recurring problems (issue 19): the text features, the scoring, the problem book,
analytics' reader that sends what they decide, and the tickets process applying a suspicion.
(The same on the real stack: tests/e2e/test_duplicates.py, tests/e2e/test_problems.py; the quality on the
labelled set: bench/duplicates.py.)"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from services.analytics.duplicates import THRESHOLD, DuplicateIndex, score
from services.analytics.problems import ProblemBook
from services.analytics.recurring import SimilarTickets
from services.analytics.similar import features, normalise
from services.tickets.views import load_ticket
from shared import topics
from shared.events import (
    EVENT_TYPES,
    Channel,
    CustomerChanged,
    Direction,
    EventType,
    MessageSummary,
    SuspectDuplicate,
    TicketCreated,
    TicketSnapshot,
    TicketStatusChanged,
)
from tests.unit.memory import Records, SentRecords, run
from tests.unit.test_tickets_processor import Stack, chat

T0 = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)


# ---------------------------------------------------------------- what a message says


def test_arabic_spellings_and_digits_fold_to_one_form():
    assert normalise("أُرِيدُ إرجاع الطلبية ١٢٣٤٥") == normalise("اريد ارجاع الطلبيه 12345")


def test_an_english_and_an_arabic_report_yield_the_same_order_product_and_fault():
    english = features("Hi, my kettle KT-200 (order #104233) doesn't work anymore!")
    arabic = features("الغلاية KT200 لا تعمل، طلب رقم ١٠٤٢٣٣")
    for f in (english, arabic):
        assert (f.orders, f.skus, f.products, f.fault) == (("104233",), ("KT200",), ("kettle",), "not_working")


def test_a_question_reports_no_fault():
    assert features("Do you deliver to Jeddah?").fault is None
    assert features("هل توصلون إلى جدة؟").fault is None


def test_a_function_said_not_to_work_reports_the_fault_it_means_in_either_language():
    for text in (
        "my toaster no longer heats up",
        "the blades don't turn at all",
        "left earbud has no sound",
        "الميكرويف ما يسخن الأكل",
        "السماعة ما يطلع منها صوت",
        "الخلاط مايشتغل",
    ):
        assert features(text).fault == "not_working", text
    for text in ("the PB-10 won't hold a charge", "الباور بانك ما يشحن الجوال"):
        assert features(text).fault == "battery", text
    # the same words, not negated, report overheating (or nothing)
    assert features("the charger heats up a lot, so hot I can't touch it").fault == "overheating"
    assert features("الشاحن يسخن مرة").fault == "overheating"
    assert features("it heats water in two minutes, can I use it for tea?").fault is None


def test_inflections_articles_and_endings_do_not_hide_a_known_word():
    assert features("water keeps dripping and leaked onto the counter").fault == "leaking"
    assert features("والمكنسة وصلت مطعوجة").products == ("vacuum",)
    assert features("الساعة الذكية وصلت والشاشة مشروخة").fault == "damaged"
    assert features("السادة خدمة العملاء، طلعت شرارة من الشاحن").products == ("phone charger",)  # not a pillow


def test_codes_with_one_digit_or_unit_like_letters_are_codes_and_amounts_are_not():
    assert features("my EB-2 earbuds and the CM-900, order 771234").skus == ("EB2", "CM900")
    assert features("the coffee maker (CM900)").skus == ("CM900",)
    assert features("I paid sar200 for it").skus == ()
    assert features("وين طلبيتي رقم ٦٣٣٠٤٥؟").orders == ("633045",)


def test_a_refund_not_received_is_a_refund_request_not_a_late_delivery():
    assert features("still waiting for my refund for order 598800").fault == "refund"
    assert features("رجعت الغلاية وما وصلني استرداد المبلغ").fault == "refund"
    assert features("charged twice for order 620017, please refund one").fault == "charged_twice"


# ---------------------------------------------------------------- duplicate suspicion


def test_the_same_order_retold_in_another_language_is_a_duplicate():
    tweet = features("@DeskShop my kettle from order 558812 arrived cracked 😡")
    mail = features("السلام عليكم\nوصلت الغلاية مكسورة، رقم الطلب 558812\nشكراً")
    assert score(mail, tweet)[0] >= THRESHOLD


def test_another_order_of_the_same_product_with_the_same_fault_is_another_request():
    first = features("my kettle leaks, order 558812")
    second = features("my kettle leaks, order 771234")
    assert score(second, first) == (0.0, ("different_order",))


def test_the_same_product_with_another_fault_or_an_unrelated_question_is_another_request():
    leak = features("water leaks from the bottom of the kettle")
    assert score(features("the kettle came without the lid, a part is missing"), leak)[0] < THRESHOLD
    assert score(features("What are your opening hours during the holidays?"), leak)[0] < THRESHOLD


def test_a_customers_old_resolved_or_closed_ticket_is_not_what_a_new_one_repeats():
    index = DuplicateIndex()
    leak = features("my kettle KT-200 leaks")
    index.add("C1", "T1", leak, T0)
    index.finished("T1", T0 + timedelta(days=1))
    assert index.match("C1", "T2", leak, T0 + timedelta(days=5)).ticket_id == "T1"
    assert index.match("C1", "T2", leak, T0 + timedelta(days=16)) is None  # resolved more than 14 days before
    index.add("C1", "T3", leak, T0 + timedelta(days=20))
    index.finished("T3", T0 + timedelta(days=20), gone=True)
    assert index.match("C1", "T4", leak, T0 + timedelta(days=21)) is None
    assert index.match("C2", "T5", leak, T0 + timedelta(days=2)) is None  # another customer


def test_a_purged_ticket_and_an_erased_customers_tickets_are_forgotten():
    index = DuplicateIndex()
    leak = features("my kettle KT-200 leaks")
    index.add("C1", "T1", leak, T0)
    index.add("C2", "T2", leak, T0)
    index.forget("T1")
    index.forget_customer("C2")
    assert index.customers == {} and index.owner == {}
    assert index.match("C1", "T3", leak, T0 + timedelta(hours=1)) is None


def test_profiles_merged_into_one_customer_are_compared_with_each_other():
    index = DuplicateIndex()
    index.add("C-social", "T1", features("my kettle KT-200 leaks"), T0)
    index.merge_customers("C-social", "C-mail")
    assert index.match("C-mail", "T2", features("الغلاية KT-200 تسرب ماء"), T0 + timedelta(hours=1)) is not None


# ---------------------------------------------------------------- recurring problems


def add(book: ProblemBook, n: int, text: str, *, customer: str | None = None, at: datetime = T0, lang: str = "en"):
    return book.add(
        ticket_id=f"T{n}",
        customer_id=customer or f"C{n}",
        at=at,
        channel="email",
        language=lang,
        features=features(text),
    )


def test_customers_reporting_one_fault_in_two_languages_make_one_problem_and_another_fault_another():
    book = ProblemBook(min_tickets=3, detect_at=4)
    add(book, 1, "my kettle KT-200 is leaking")
    add(book, 2, "الغلاية KT-200 يسرب منها الماء", lang="ar")
    detected = add(book, 3, "water drips from the KT200 kettle")
    assert detected is None and len(book.active()) == 1
    add(book, 4, "KT-200 arrived cracked")  # same product, another fault
    detected = add(book, 5, "فيه تسريب من الغلاية KT-200", lang="ar")
    assert detected is not None and detected.detected
    assert add(book, 6, "KT-200 kettle leaks too") is None  # detected once
    (leak,) = book.active()
    view = leak.view()
    assert view["tickets"] == 5 and view["languages"] == ["en", "ar"] and view["skus"][0] == "KT200"
    assert "leaking" in view["label"] and "kettle" in view["label"]


def test_a_report_naming_only_the_product_joins_the_problem_of_its_code_and_leaves_with_spam():
    book = ProblemBook(min_tickets=2)
    add(book, 1, "kettle KT-200 stopped working")
    add(book, 2, "my kettle won't turn on anymore")
    assert [len(p.members) for p in book.active()] == [2]
    book.remove("T2")
    assert book.active() == []


def test_reports_naming_only_the_product_before_any_code_join_the_problem_of_the_first_code():
    book = ProblemBook(min_tickets=2, detect_at=10)
    add(book, 1, "my kettle leaks from the base")
    add(book, 2, "الغلاية تسرب ماء من تحت")
    add(book, 3, "kettle KT-200 leaking everywhere")
    add(book, 4, "the KT-200 drips water", at=T0 + timedelta(hours=1))
    (problem,) = book.active()
    assert (problem.product, problem.fault, len(problem.members)) == ("KT200", "leaking", 4)
    assert book.where["T1"] == ("KT200", "leaking")


def test_instances_reading_the_partitions_in_another_order_name_the_problem_alike():
    reports = [(1, "kettle KT-200 stopped working"), (2, "الغلاية KT-200 لا تعمل"), (3, "KT200 kettle is dead")]
    one, other = ProblemBook(min_tickets=2), ProblemBook(min_tickets=2)
    for n, text in reports:
        add(one, n, text, at=T0 + timedelta(seconds=n))
    for n, text in reversed(reports):
        add(other, n, text, at=T0 + timedelta(seconds=n))
    assert [p.id for p in one.active()] == [p.id for p in other.active()]


def test_tickets_leave_the_problem_as_the_window_slides():
    book = ProblemBook(window=timedelta(days=7), min_tickets=2)
    add(book, 1, "kettle KT-200 stopped working", at=T0)
    add(book, 2, "kettle KT-200 stopped working", at=T0 + timedelta(days=6))
    book.expire(T0 + timedelta(days=8))
    assert book.problems and book.active() == []


# ---------------------------------------------------------------- analytics' reader


def created(
    ticket_id: str, customer: str, text: str, *, at: datetime, channel: Channel = Channel.email
) -> TicketCreated:
    return TicketCreated(
        ticket=TicketSnapshot(
            id=ticket_id,
            status="new",
            priority="normal",
            channel=channel,
            customer_id=customer,
            created_at=at,
            version=1,
        ),
        message=MessageSummary(
            message_id=f"m-{ticket_id}", direction=Direction.inbound, channel=channel, text=text, at=at
        ),
    )


async def test_a_repeat_is_sent_to_its_tickets_partition_once_and_a_replay_of_old_events_sends_nothing():
    now = T0 + timedelta(minutes=1)
    sent = SentRecords()
    similar = SimilarTickets(producer=sent, source="test", clock=lambda: now)
    records = Records()
    first = records.record(
        topics.TICKETS_EVENTS,
        EventType.TICKET_CREATED,
        created("TK-1", "C1", "@shop order 558812: my kettle arrived cracked", at=T0, channel=Channel.social),
        at=T0,
    )
    second = records.record(
        topics.TICKETS_EVENTS,
        EventType.TICKET_CREATED,
        created("TK-2", "C1", "Hello, the kettle of order #558812 is damaged.", at=now),
        at=now,
    )
    question = records.record(
        topics.TICKETS_EVENTS,
        EventType.TICKET_CREATED,
        created("TK-3", "C1", "Do you deliver to Jeddah?", at=now),
        at=now,
    )
    await run(similar, first, second, question)
    (command,) = sent.events(topics.TICKETS_COMMANDS)
    assert command["type"] == EventType.SUSPECT_DUPLICATE and command["subject"] == "TK-2"
    assert command["data"]["duplicate_of"] == "TK-1" and command["data"]["score"] >= THRESHOLD

    later = now + timedelta(hours=1)
    restarted = SimilarTickets(producer=SentRecords(), source="test", clock=lambda: later)
    await run(restarted, first, second, question)
    assert restarted.producer.records == []  # remembered, not acted on again
    assert restarted.duplicates.match("C1", "TK-4", features("order 558812 kettle damaged"), later) is not None


async def test_a_problem_is_announced_once_on_tickets_events_and_spam_leaves_it():
    now = T0 + timedelta(minutes=1)
    sent = SentRecords()
    similar = SimilarTickets(producer=sent, source="test", problems=ProblemBook(detect_at=3), clock=lambda: now)
    records = Records()
    texts = [
        "blender BL-500 overheats",
        "الخلاط BL-500 يسخن وفيه رائحة حريق",
        "BL500 blender burning smell",
        "my BL-500 gets very hot",
    ]
    batch = [
        records.record(
            topics.TICKETS_EVENTS, EventType.TICKET_CREATED, created(f"TK-{i}", f"C{i}", text, at=now), at=now
        )
        for i, text in enumerate(texts)
    ]
    await run(similar, *batch)
    (detected,) = sent.events(topics.TICKETS_EVENTS)
    assert detected["type"] == EventType.PROBLEM_DETECTED and detected["data"]["tickets"] == 3
    assert similar.listing()[0]["tickets"] == 4
    spam = TicketStatusChanged(ticket=created("TK-0", "C0", "", at=now).ticket, from_status="new", to_status="spam")
    await run(similar, records.record(topics.TICKETS_EVENTS, EventType.TICKET_STATUS_CHANGED, spam, at=now))
    assert similar.problem(detected["data"]["problem_id"])["tickets"] == 3


async def test_customer_merges_reach_the_reader():
    now = T0
    similar = SimilarTickets(producer=SentRecords(), source="test", clock=lambda: now)
    records = Records()
    change = CustomerChanged(customer_id="C-social", merged_into="C-mail", at=now)
    await run(similar, records.record(topics.TICKETS_EVENTS, EventType.CUSTOMER_CHANGED, change, at=now))
    assert similar.duplicates.customer("C-social") == "C-mail"


# ---------------------------------------------------------------- the tickets process applying a suspicion


async def test_a_suspected_duplicate_is_marked_on_the_ticket_with_its_event_and_timeline_entry_once():
    stack = Stack()
    original = await stack.file(chat("m1", session="s1", text="my kettle leaks"))
    repeat = await stack.file(chat("m2", session="s2", text="the kettle is leaking"))
    stack.sent.clear()
    cmd = SuspectDuplicate(command_id="d1", ticket_id=repeat, duplicate_of=original, score=0.82, signals=["fault"])
    await run(stack.processor, stack.command(EventType.SUSPECT_DUPLICATE, cmd))
    await run(stack.processor, stack.command(EventType.SUSPECT_DUPLICATE, cmd.model_copy(update={"command_id": "d2"})))
    (suspected,) = stack.sent.events(topics.TICKETS_EVENTS)
    assert suspected["type"] == EventType.TICKET_DUPLICATE_SUSPECTED
    assert suspected["data"]["duplicate_of"] == {"ticket_id": original, "score": 0.82}
    ticket = await load_ticket(stack.store, repeat)
    assert ticket.duplicate_of.ticket_id == original
    assert [e.type for e in ticket.timeline].count("duplicate_suspected") == 1


async def test_above_the_auto_merge_score_the_repeat_is_merged_into_the_ticket_it_repeats():
    stack = Stack()
    original = await stack.file(chat("m1", session="s1", text="order 558812: my kettle arrived cracked"))
    repeat = await stack.file(chat("m2", session="s2", text="the kettle of order 558812 is damaged"))
    created_events = [e for e in stack.sent.events(topics.TICKETS_EVENTS) if e["type"] == EventType.TICKET_CREATED]
    now = T0 + timedelta(minutes=1)
    sent = SentRecords()
    similar = SimilarTickets(producer=sent, source="test", merge_above=0.9, clock=lambda: now)
    records = Records()
    await run(similar, *(records.record(topics.TICKETS_EVENTS, e["type"], e["data"], at=now) for e in created_events))
    commands = sent.events(topics.TICKETS_COMMANDS)
    assert [c["type"] for c in commands] == [
        EventType.SUSPECT_DUPLICATE,
        EventType.MERGE_TICKET,
        EventType.CLOSE_MERGED_TICKET,
    ]
    for c in commands:
        command = EVENT_TYPES[c["type"]].model_validate(c["data"])
        await run(stack.processor, stack.command(c["type"], command))
    survivor, merged = await load_ticket(stack.store, original), await load_ticket(stack.store, repeat)
    assert repeat in survivor.merged_from
    assert merged.merged_into == original and merged.status == "closed"
    assert merged.duplicate_of.ticket_id == original
