"""Kafka topic names, in one place. The public ones are part of CONTRACT.md."""

# public: other systems subscribe to these
TICKETS_EVENTS = "tickets.events"  # every ticket change, key = ticket id
SLA_EVENTS = "sla.events"  # SLA warnings, breaches, met targets, key = ticket id
DEADLETTER = "deadletter"  # what could not be processed, key = the source record's key

# internal: service-to-service
INGEST_MESSAGES = "ingest.messages"  # normalised inbound messages, key = conversation key
TICKETS_COMMANDS = "tickets.commands"  # commands tickets applies (assign, ...), key = ticket id

ALL = (TICKETS_EVENTS, SLA_EVENTS, DEADLETTER, INGEST_MESSAGES, TICKETS_COMMANDS)

# consumer groups: one per service and purpose, explicit everywhere
GROUP_TICKETS = "tickets"
GROUP_TICKETS_DELIVERY = "tickets-delivery"  # outbound replies, apart from filing
GROUP_ROUTING = "routing"
GROUP_SLA = "sla"
GROUP_ANALYTICS = "analytics"
