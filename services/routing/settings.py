"""Routing settings."""

from pydantic import Field

from shared.settings import ServiceSettings, port_field


class RoutingSettings(ServiceSettings):
    service_name: str = "routing"
    http_port: int = port_field("routing", 8003)
    # an agent who goes offline keeps their tickets this long (a dropped connection, a break)
    offline_grace_s: float = Field(300.0, validation_alias="ROUTING_OFFLINE_GRACE_S")
    # tickets the dispatcher holds decoded (~1.3 KB each); the others it carries or queues are held as
    # their changelog record (~0.5 KB)
    hot_tickets: int = Field(2_000, validation_alias="ROUTING_HOT_TICKETS", ge=100)
    # how often the queue is offered to agents whose shift has begun (other changes offer it at once)
    queue_sweep_s: float = Field(15.0, validation_alias="ROUTING_QUEUE_SWEEP_S")
    # how often capacity slots and agents' loads are checked against each other (crash leftovers)
    reconcile_s: float = Field(30.0, validation_alias="ROUTING_RECONCILE_S")
