"""Automation rules as a support lead would configure them."""
from services.routing.rules import Actions, Conditions, Facts, Rule, evaluate

REFUND_AR = Rule(name="Arabic refunds to billing", order=10,
                 when=Conditions(language=["ar"], text_any=["refund", "استرداد", "استرجاع المبلغ"]),
                 then=Actions(priority="high", require_skills=["refunds"], team="billing", add_tags=["refund"]))
SPAM = Rule(name="Crypto spam", order=1, when=Conditions(text_any=["bitcoin giveaway"]),
            then=Actions(mark_spam=True), stop=True)
VIP = Rule(name="VIP tag means urgent", order=20, when=Conditions(tags_all=["refund"]),
           then=Actions(add_tags=["finance-review"]))


def test_an_arabic_refund_email_goes_to_billing_with_high_priority():
    out = evaluate({"r": REFUND_AR, "s": SPAM, "v": VIP},
                   Facts(channel="email", language="ar", text="أريد استرداد المبلغ للطلب 10442 refund please"))
    assert out.fired == ["Arabic refunds to billing", "VIP tag means urgent"]  # later rules see earlier tags
    assert out.priority == "high" and out.team == "billing" and out.skills == ["refunds"]
    assert out.add_tags == ["refund", "finance-review"] and not out.spam


def test_words_match_whole_words_case_insensitively():
    assert evaluate({"r": REFUND_AR}, Facts(channel="chat", language="ar", text="REFUND!")).fired
    assert not evaluate({"r": REFUND_AR}, Facts(channel="chat", language="ar", text="refunded")).fired
    assert not evaluate({"r": REFUND_AR}, Facts(channel="chat", language="en", text="refund")).fired


def test_a_stopping_rule_ends_the_evaluation_and_disabled_rules_never_fire():
    out = evaluate({"s": SPAM, "r": REFUND_AR}, Facts(channel="chat", language="ar", text="bitcoin giveaway refund"))
    assert out.fired == ["Crypto spam"] and out.spam and out.priority is None
    off = SPAM.model_copy(update={"enabled": False})
    assert evaluate({"s": off}, Facts(channel="chat", text="bitcoin giveaway")).fired == []
