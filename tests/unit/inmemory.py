"""A service's subscribers on FastStream's in-memory broker, with the dead letters collected."""
from __future__ import annotations

from typing import Any

from shared import topics
from shared.broker import create_broker
from shared.telemetry import Telemetry


def broker_with(service_name: str, router: Any) -> tuple[Any, list[dict]]:
    broker = create_broker(bootstrap_servers="127.0.0.1:1", service=service_name, telemetry=Telemetry(service_name))
    broker.include_router(router)
    letters: list[dict] = []

    @broker.subscriber(topics.DEADLETTER, group_id="test")
    async def collect(body: dict) -> None:
        letters.append(body)

    return broker, letters
