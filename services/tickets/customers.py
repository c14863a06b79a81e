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
from shared.events import CustomerChanged, CustomerErased, Identity


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

        The same address or number is the same customer: the sender's identity (the first) leads to
        its customer. Only a message whose identities are all verified (shared/events.Identity) may
        attach its other identities to that customer — or be decided by one of them attached to a
        customer already. A claim (a chat's or web form's second identity, an unsigned webhook's) is
        kept as a hint on the ticket and attaches nothing: otherwise anyone could put their own
        address into someone else's profile and receive the replies meant for them."""
        keys = list(dict.fromkeys(i.key for i in identities))
        proven = all(i.verified for i in identities)
        if not proven:
            customer_id = self.customer_of(keys[0])
            own = [k for k in keys if self.customer_of(k) == customer_id]
            hints = [k for k in keys if k not in own]
            return CustomerInfo(
                id=customer_id, name=name, identities=own, hints=hints, verified=False, tier=self.tiers.get(customer_id)
            ), []
        attached = [self.current(self.links[canonical(k)]) for k in keys if canonical(k) in self.links]
        customer_id = attached[0] if attached else self.customer_of(keys[0])
        new_links = [
            k
            for k in dict.fromkeys(canonical(k) for k in keys)
            if k not in self.links and customer_id_for(k) != customer_id
        ]
        return CustomerInfo(
            id=customer_id, name=name, identities=keys, verified=True, tier=self.tiers.get(customer_id)
        ), new_links

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

    def forget(self, erased: CustomerErased) -> None:
        """An erased customer, and every profile merged into it, leaves nothing here: their identities
        are their own customers again, as for someone never seen."""
        gone = {erased.customer_id, *erased.merged_ids}
        self.links = {k: c for k, c in self.links.items() if c not in gone}
        self.tiers = {c: t for c, t in self.tiers.items() if c not in gone}
        self.merged = {c: m for c, m in self.merged.items() if c not in gone and m not in gone}

    def with_merged(self, customer_id: str) -> list[str]:
        """The live profile a customer id leads to, then every profile merged into it."""
        current = self.current(customer_id)
        return [current, *(c for c in self.merged if c != current and self.current(c) == current)]

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
