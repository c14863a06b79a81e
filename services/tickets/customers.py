"""Who is who, decided without a database read: one customer across identities and channels.

Every identity names a customer of its own (`customer_id_for(identity)`), so a new customer needs
no lookup and no write. What that rule does not say is kept in a small table every tickets process
holds in memory — identities attached to another customer, service tiers, merged profiles —
loaded from `customer_links` at start and kept current by `deskstream.customer.changed` events,
which every process reads from `tickets.events`. A phone number is one identity whatever carries
it: a WhatsApp id is the number it belongs to."""
from __future__ import annotations

from datetime import datetime
from typing import Any

from services.tickets.domain import CustomerInfo, customer_id_for
from shared.events import CustomerChanged, Identity


def canonical(key: str) -> str:
    """The identity a key stands for: `whatsapp:9665...` is the phone number `phone:+9665...`."""
    kind, _, value = key.partition(":")
    if kind == "whatsapp" and value.isdigit():
        return f"phone:+{value}"
    return key


class CustomerBook:
    def __init__(self) -> None:
        self.links: dict[str, str] = {}  # identity key → customer id (where not the identity's own)
        self.tiers: dict[str, str] = {}  # customer id → service tier
        self.merged: dict[str, str] = {}  # customer id → the customer it was merged into

    # ------------------------------------------------------------ reading
    def current(self, customer_id: str) -> str:
        """The live profile a customer id leads to (following merges)."""
        for _ in range(20):
            nxt = self.merged.get(customer_id)
            if nxt is None or nxt == customer_id:
                return customer_id
            customer_id = nxt
        return customer_id

    def customer_of(self, key: str) -> str:
        key = canonical(key)
        return self.current(self.links.get(key) or customer_id_for(key))

    def resolve(self, name: str | None, identities: list[Identity]) -> tuple[CustomerInfo, list[str]]:
        """The customer a message comes from, and the identities it newly attaches to them.

        The sender's identity (the first) decides, unless another identity of the message is
        attached to a customer already; identities of the message that lead nowhere else yet are
        attached to that customer."""
        keys = list(dict.fromkeys(i.key for i in identities))
        attached = [self.current(self.links[canonical(k)]) for k in keys if canonical(k) in self.links]
        customer_id = attached[0] if attached else self.customer_of(keys[0])
        new_links = [k for k in dict.fromkeys(canonical(k) for k in keys)
                     if k not in self.links and customer_id_for(k) != customer_id]
        return CustomerInfo(id=customer_id, name=name, identities=keys, tier=self.tiers.get(customer_id)), new_links

    # ------------------------------------------------------------ changing
    def apply(self, change: CustomerChanged) -> None:
        for key in change.identities:
            self.links[canonical(key)] = change.customer_id
        if change.tier_set:
            if change.tier:
                self.tiers[change.customer_id] = change.tier
            else:
                self.tiers.pop(change.customer_id, None)
        if change.merged_into:
            self.merged[change.customer_id] = change.merged_into

    def load(self, docs: list[dict[str, Any]]) -> None:
        """From `customer_links`: `identity:<key>`, `tier:<customer>`, `merged:<customer>` → value."""
        for doc in docs:
            kind, _, subject = doc["_id"].partition(":")
            if kind == "identity":
                self.links[subject] = doc["value"]
            elif kind == "tier" and doc.get("value"):
                self.tiers[subject] = doc["value"]
            elif kind == "merged":
                self.merged[subject] = doc["value"]


def link_rows(change: CustomerChanged) -> list[tuple[str, Any]]:
    """`customer_links` rows for a change (the durable side of `CustomerBook.apply`)."""
    rows: list[tuple[str, Any]] = [(f"identity:{canonical(k)}", change.customer_id) for k in change.identities]
    if change.tier_set:
        rows.append((f"tier:{change.customer_id}", change.tier))
    if change.merged_into:
        rows.append((f"merged:{change.customer_id}", change.merged_into))
    return rows


def change_at(now: datetime, **fields: Any) -> CustomerChanged:
    return CustomerChanged(at=now, **fields)
