"""Kafka topic names, in one place. The public ones are part of CONTRACT.md."""

# public: other systems subscribe to these
TICKETS_EVENTS = "tickets.events"  # every ticket change, key = ticket id
SLA_EVENTS = "sla.events"  # SLA warnings, breaches, met targets, key = ticket id
DEADLETTER = "deadletter"  # what could not be processed, key = the source record's key

# internal: service-to-service
INGEST_MESSAGES = "ingest.messages"  # normalised inbound messages, key = conversation key
TICKETS_COMMANDS = "tickets.commands"  # commands tickets applies (assign, agents' changes...), key = ticket id
TICKETS_OUTCOMES = "tickets.outcomes"  # how each agent's command ended, read by the instance that asked
ROUTING_DISPATCH = "routing.dispatch"  # one partition: everything that changes who carries which ticket
SETTINGS_CHANGES = "settings.changes"  # one partition: an admin changed rules, policies...: every process re-reads
PRIVACY_ERASURES = "privacy.erasures"  # one partition: files to delete after a purge or an erasure (a few a day)
# what every tickets process hears of, read from its end: copies of the few `tickets.events` types it
# needs (replies for its chat widgets, who is who), so no process reads every ticket event to find them
TICKETS_NOTICES = "tickets.notices"

# internal: changelogs of the state each processor owns (compacted; partition = the input's partition)
TICKETS_STATE = "tickets.state"
ROUTING_DISPATCH_STATE = "routing.dispatch-state"
CHANGELOGS = (TICKETS_STATE, ROUTING_DISPATCH_STATE)
SINGLE_PARTITION = (TICKETS_OUTCOMES, ROUTING_DISPATCH, ROUTING_DISPATCH_STATE, SETTINGS_CHANGES, PRIVACY_ERASURES)

ALL = (
    TICKETS_EVENTS,
    SLA_EVENTS,
    DEADLETTER,
    INGEST_MESSAGES,
    TICKETS_COMMANDS,
    TICKETS_OUTCOMES,
    ROUTING_DISPATCH,
    SETTINGS_CHANGES,
    PRIVACY_ERASURES,
    TICKETS_NOTICES,
    *CHANGELOGS,
)

# consumer groups: one per service and purpose, explicit everywhere
GROUP_TICKETS = "tickets"
GROUP_TICKETS_DELIVERY = "tickets-delivery"  # outbound replies, apart from filing
GROUP_TICKETS_WEBHOOKS = "tickets-webhooks"  # webhook subscriptions' deliveries: may lag, never holds anyone up
GROUP_ROUTING = "routing"
GROUP_ROUTING_DISPATCH = "routing-dispatch"
GROUP_SLA = "sla"
GROUP_ANALYTICS = "analytics"
GROUP_INGEST_ERASURE = "ingest-erasure"  # ingest deleting the files it keeps (privacy.erasures)
