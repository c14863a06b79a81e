"""Outbound delivery: agents' replies leave on the customer's channel (rules: where to and
when to retry; channels: one adapter per provider; service: the retried, once-only worker;
chat: the stream and poll endpoints a chat widget reads)."""
