"""Writes tests/data/similar_tickets.jsonl: the labelled set for duplicate suspicion and recurring problems.

Run `.venv/bin/python -m tests.data.make_similar` (deterministic: the same file every time). Each line is a
customer's first message of a ticket with what a person reading it would say about it:
- `request`: tickets with the same request id are one request (the later ones are duplicates of the first);
- `duplicate_of`: the earliest ticket of that request, for a repeat; null otherwise;
- `problem`: `product/fault` the message reports, or null (a question, an unrelated matter).
Hard negatives are written on purpose: the same customer with another order of the same product, the same
product with another fault, an unrelated question; and the wording varies by channel (a tweet is short, a
mail has a greeting and a signature) and language (English and Arabic, some Gulf dialect, typos).
`split` puts each customer in `train` or `test`: the scoring was tuned on `train` only."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

OUT = Path(__file__).with_name("similar_tickets.jsonl")
START = datetime(2026, 11, 2, 8, 0, tzinfo=UTC)

# product → (code, English words, Arabic words)
CATALOGUE = {
    "kettle": ("KT-200", ["kettle", "electric kettle"], ["الغلاية", "غلاية الماء", "الغلاية الكهربائية"]),
    "blender": ("BL-500", ["blender"], ["الخلاط", "خلاط"]),
    "headphones": ("HP-310", ["headphones", "earbuds", "headset"], ["السماعات", "سماعة الرأس"]),
    "air fryer": ("AF-120", ["air fryer", "fryer"], ["القلاية الهوائية", "قلاية"]),
    "coffee machine": ("CM-900", ["coffee machine", "coffee maker"], ["ماكينة القهوة", "آلة القهوة"]),
    "vacuum": ("VC-77", ["vacuum", "vacuum cleaner"], ["المكنسة", "المكنسة الكهربائية"]),
    "phone charger": ("CH-65", ["charger", "power adapter"], ["الشاحن", "شاحن الجوال"]),
    "iron": ("IR-300", ["steam iron", "iron"], ["المكواة", "مكواة البخار"]),
}

# fault → English and Arabic ways to report it ({p}: the product, {n}: a number of days)
FAULTS = {
    "not_working": (
        [
            "my {p} stopped working after {n} days",
            "the {p} won't turn on anymore",
            "{p} is dead, nothing happens when I press the switch",
            "the {p} doesnt work at all, tried different sockets",
            "bought the {p} last week and it's already faulty",
            "{p} just stopped, no light, no sound",
        ],
        [
            "{p} توقفت عن العمل بعد {n} أيام",
            "{p} ما تشتغل أبداً",
            "{p} لا تعمل من أول يوم",
            "عندي مشكلة، {p} فيها عطل وما تشتغل",
            "{p} خربت بعد أسبوع استخدام",
            "اشتريت {p} وهي معطلة",
        ],
    ),
    "leaking": (
        [
            "water leaks from the bottom of the {p}",
            "the {p} is leaking all over the counter",
            "{p} leaks every time I fill it",
            "there's a puddle under the {p}, it's dripping",
        ],
        [
            "{p} يسرب ماء من تحت",
            "فيه تسريب ماء من {p}",
            "{p} يتسرب منها الماء على الطاولة",
            "كل ما أعبي {p} يخر ماء",
        ],
    ),
    "damaged": (
        [
            "the {p} arrived damaged, the box was crushed and the lid is cracked",
            "{p} came cracked on the side",
            "received my {p} with a big dent",
            "opened the parcel and the {p} was smashed",
        ],
        [
            "وصلت {p} مكسورة",
            "{p} وصل تالف والكرتون ممزق",
            "{p} فيها كسر واضح من الشحن",
            "استلمت {p} مخدوشة ومطعوجة",
        ],
    ),
    "late_delivery": (
        [
            "my {p} hasn't arrived yet, it's been {n} days",
            "still waiting for the {p} I ordered",
            "where is my order? the {p} was due last week and tracking hasn't moved",
            "{p} not delivered, courier says delayed",
        ],
        [
            "{p} لم تصل حتى الآن",
            "وين طلبي؟ صار لي {n} أيام أنتظر {p}",
            "تأخر توصيل {p} كثير",
            "ما وصلني {p} للحين",
        ],
    ),
    "wrong_item": (
        [
            "you sent me the wrong item, I ordered the {p} in black and got a white one",
            "received a different item instead of my {p}",
            "this is not what I ordered, wrong model of {p}",
        ],
        [
            "وصلني منتج غلط بدل {p}",
            "{p} اللي وصل لون مختلف عن اللي طلبته",
            "طلبت {p} ووصلني شي ثاني، مو اللي طلبته",
        ],
    ),
    "missing": (
        [
            "the {p} came without the lid, a part is missing",
            "the base of the {p} was not included in the box",
            "{p} box is incomplete, the cable is missing",
        ],
        [
            "{p} ناقصة قطعة",
            "الغطاء مفقود من علبة {p}",
            "فتحت {p} ولقيت الكيبل ناقص",
        ],
    ),
    "overheating": (
        [
            "the {p} gets very hot and there's a burning smell",
            "{p} overheats after a few minutes",
            "saw sparks from the {p} plug, it overheats",
        ],
        [
            "{p} يسخن بشكل غير طبيعي وفيه رائحة حريق",
            "طلعت شرارة من {p}",
            "{p} حرارتها عالية وريحة حريق",
        ],
    ),
    "charged_twice": (
        [
            "I was charged twice for my {p}",
            "my card shows two charges for the {p} order",
            "double charged for the {p}, please fix",
        ],
        [
            "تم خصم المبلغ مرتين على طلب {p}",
            "انسحب المبلغ مرتين من بطاقتي لما اشتريت {p}",
            "دفعت مرتين على {p}",
        ],
    ),
    "refund": (
        [
            "I returned the {p} two weeks ago and still no refund",
            "when will I get my money back for the {p}?",
            "please refund the {p}, I sent it back",
        ],
        [
            "رجعت {p} وما وصلني استرداد المبلغ",
            "متى يرجع المبلغ حق {p}؟",
            "أبي استرجاع المبلغ، رجعت {p} من أسبوعين",
        ],
    ),
}

QUESTIONS = (
    [
        "Do you deliver to Jeddah?",
        "What are your opening hours during the holidays?",
        "How do I change the delivery address on my account?",
        "Can I get an invoice with our VAT number on it?",
        "Do you have the {p} in red?",
        "Is there a warranty extension for the {p}?",
        "Can I pay cash on delivery?",
        "I forgot my password and the reset link doesnt come",
        "Do you have a store in Riyadh where I can try the {p}?",
        "How long does the {p} take to ship to Dubai?",
    ],
    [
        "هل توصلون إلى جدة؟",
        "متى تفتحون أيام العيد؟",
        "كيف أغير عنوان التوصيل في حسابي؟",
        "أبي فاتورة ضريبية باسم الشركة",
        "هل يتوفر {p} باللون الأحمر؟",
        "هل فيه ضمان إضافي على {p}؟",
        "هل الدفع عند الاستلام متاح؟",
        "نسيت كلمة المرور ورابط الاسترجاع ما يوصل",
        "عندكم فرع في الرياض أقدر أجرب فيه {p}؟",
    ],
)

CHANNELS = ["email", "social", "chat", "whatsapp", "sms", "webform"]


def _order(rng: random.Random) -> str:
    return str(rng.randint(100000, 999999))


def _dress(rng: random.Random, channel: str, lang: str, body: str, sku: str | None, order: str | None) -> str:
    """The message as the channel carries it: a tweet is short and public, a mail has a greeting..."""
    parts_en = []
    if sku and rng.random() < 0.5:
        body = body.replace("{sku}", sku)
    if order:
        ref = rng.choice(
            [f"order #{order}", f"Order no. {order}", f"ORD-{order}", f"order {order}"]
            if lang == "en"
            else [f"طلب رقم {order}", f"رقم الطلب {order}", f"الطلب #{order}", f"طلبي {order}"]
        )
        body = rng.choice([f"{body} ({ref})", f"{ref}: {body}", f"{body} - {ref}"])
    if channel == "social":
        tag = rng.choice(["@DeskShop", "@deskshop_help", "@DeskShopKSA"])
        tail = rng.choice(
            ["", " #fail", " 😡", " !!", " seriously?"] if lang == "en" else ["", " 😡", " !!", " حسبي الله"]
        )
        return f"{tag} {body}{tail}"
    if channel == "email":
        if lang == "en":
            hello = rng.choice(["Hello,", "Hi team,", "Dear DeskShop support,", "Good morning,"])
            bye = rng.choice(["Thanks,\nSara", "Regards,\nOmar Haddad", "Best,\nJ. Miller", "Cheers,\nLina"])
            parts_en = [hello, "", body[0].upper() + body[1:] + ".", "Please advise what to do.", "", bye]
        else:
            hello = rng.choice(["السلام عليكم،", "مرحباً،", "السادة خدمة العملاء،"])
            bye = rng.choice(["شكراً\nنورة", "مع التحية\nخالد العتيبي", "وشكراً لكم\nمحمد"])
            parts_en = [hello, "", body + ".", "أرجو إفادتي بالحل.", "", bye]
        return "\n".join(parts_en)
    if channel in ("sms", "whatsapp"):
        return body if rng.random() < 0.6 else (("hi " if lang == "en" else "هلا ") + body)
    return body[0].upper() + body[1:] if lang == "en" else body


def _say(rng: random.Random, product: str, fault: str, lang: str, *, avoid: str | None = None) -> tuple[str, str]:
    code, en, ar = CATALOGUE[product]
    templates = FAULTS[fault][0 if lang == "en" else 1]
    choices = [t for t in templates if t != avoid] or templates
    template = rng.choice(choices)
    words = en if lang == "en" else ar
    noun = rng.choice(words)
    if rng.random() < 0.6:
        noun = f"{noun} {code}" if rng.random() < 0.7 else f"{noun} ({code.replace('-', '')})"
    return template.replace("{p}", noun).replace("{n}", str(rng.randint(2, 12))), template


def build(seed: int = 19) -> list[dict]:
    rng = random.Random(seed)
    rows: list[dict] = []
    customers = 0

    def customer() -> str:
        nonlocal customers
        customers += 1
        return f"C{customers:03d}"

    def add(cust: str, at: datetime, channel: str, lang: str, text: str, request: str, problem: str | None) -> dict:
        row = {
            "id": f"T{len(rows) + 1:03d}",
            "customer": cust,
            "channel": channel,
            "language": lang,
            "at": at.isoformat(),
            "text": text,
            "request": request,
            "duplicate_of": None,
            "problem": problem,
            "split": "train" if int(cust[1:]) % 2 == 0 else "test",
        }
        rows.append(row)
        return row

    def lang() -> str:
        return "en" if rng.random() < 0.55 else "ar"

    def report(cust: str, product: str, fault: str, at: datetime, *, order: str | None) -> dict:
        language = lang()
        body, template = _say(rng, product, fault, language)
        channel = rng.choice(CHANNELS)
        text = _dress(rng, channel, language, body, None, order)
        row = add(cust, at, channel, language, text, f"R{len(rows) + 1:03d}", f"{product}/{fault}")
        row["_template"], row["_order"], row["_product"], row["_fault"] = template, order, product, fault
        return row

    # recurring problems: many customers, one product, one fault
    problems = [
        ("kettle", "leaking", 16),
        ("kettle", "not_working", 12),
        ("blender", "overheating", 10),
        ("air fryer", "damaged", 11),
        ("coffee machine", "leaking", 9),
        ("vacuum", "not_working", 10),
        ("phone charger", "overheating", 8),
        ("iron", "wrong_item", 8),
        ("blender", "late_delivery", 9),
    ]
    originals = []
    for product, fault, count in problems:
        if fault not in FAULTS:
            continue
        for _ in range(count):
            at = START + timedelta(minutes=rng.randint(0, 9 * 24 * 60))
            originals.append(report(customer(), product, fault, at, order=_order(rng) if rng.random() < 0.5 else None))
    # one-off complaints: one customer each, a product and fault nobody else reports
    taken = {(p, f) for p, f, _ in problems}
    one_off = [(p, f) for p in CATALOGUE for f in FAULTS if (p, f) not in taken]
    rng.shuffle(one_off)
    for product, fault in one_off[:45]:
        at = START + timedelta(minutes=rng.randint(0, 9 * 24 * 60))
        originals.append(report(customer(), product, fault, at, order=_order(rng) if rng.random() < 0.5 else None))
    # questions that are no problem
    for _ in range(35):
        language = lang()
        text = rng.choice(QUESTIONS[0 if language == "en" else 1]).replace(
            "{p}", rng.choice(CATALOGUE[rng.choice(list(CATALOGUE))][1 if language == "en" else 2])
        )
        channel = rng.choice(CHANNELS)
        at = START + timedelta(minutes=rng.randint(0, 9 * 24 * 60))
        add(
            customer(),
            at,
            channel,
            language,
            _dress(rng, channel, language, text, None, None),
            f"R{len(rows) + 1:03d}",
            None,
        )

    # repeats: the same customer about the same request, on another channel, reworded, sometimes in the other language
    for original in rng.sample(originals, 75):
        at = datetime.fromisoformat(original["at"]) + timedelta(minutes=rng.randint(5, 3 * 24 * 60))
        language = original["language"] if rng.random() < 0.7 else ("ar" if original["language"] == "en" else "en")
        body, _ = _say(rng, original["_product"], original["_fault"], language, avoid=original["_template"])
        channel = rng.choice([c for c in CHANNELS if c != original["channel"]])
        order = original["_order"] if original["_order"] and rng.random() < 0.8 else None
        row = add(
            original["customer"],
            at,
            channel,
            language,
            _dress(rng, channel, language, body, None, order),
            original["request"],
            original["problem"],
        )
        row["duplicate_of"] = original["id"]

    # hard negatives: the same customer, another request
    for original in rng.sample(originals, 60):
        at = datetime.fromisoformat(original["at"]) + timedelta(minutes=rng.randint(30, 5 * 24 * 60))
        language = original["language"] if rng.random() < 0.7 else ("ar" if original["language"] == "en" else "en")
        channel = rng.choice(CHANNELS)
        kind = rng.random()
        product, fault = original["_product"], original["_fault"]
        if kind < 0.35 and original["_order"]:  # another order of the same product, the same fault
            order = _order(rng)
            body, _ = _say(rng, product, fault, language, avoid=original["_template"])
            problem = f"{product}/{fault}"
        elif kind < 0.7:  # the same product, another fault
            fault = rng.choice([f for f in FAULTS if f != fault and f not in ("charged_twice", "refund")])
            body, _ = _say(rng, product, fault, language)
            order = _order(rng) if original["_order"] and rng.random() < 0.5 else None
            problem = f"{product}/{fault}"
        else:  # an unrelated question
            body = rng.choice(QUESTIONS[0 if language == "en" else 1]).replace(
                "{p}", rng.choice(CATALOGUE[product][1 if language == "en" else 2])
            )
            order, problem = None, None
        add(
            original["customer"],
            at,
            channel,
            language,
            _dress(rng, channel, language, body, None, order),
            f"R{len(rows) + 1:03d}",
            problem,
        )

    rows.sort(key=lambda r: r["at"])
    for row in rows:
        for key in [k for k in row if k.startswith("_")]:
            del row[key]
    return rows


def main() -> None:
    rows = build()
    OUT.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    print(f"{len(rows)} messages → {OUT.name}")


if __name__ == "__main__":
    main()
