"""Generate the contract documents from the code: `docs/asyncapi.json` (every topic and
payload) and `docs/openapi/<service>.json`. `make docs` writes them; a test fails when
the committed ones drift from the code."""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from faststream.specification import AsyncAPI

from services.analytics.app import create_app as analytics_app
from services.ingest.app import create_app as ingest_app
from services.routing.app import create_app as routing_app
from services.sla.app import create_app as sla_app
from services.tickets.app import create_app as tickets_app
from shared.http import VERSION

DOCS = Path(__file__).resolve().parent
CONTRACT_ENV = {"KAFKA_BOOTSTRAP_SERVERS", "MONGODB_URL", "MONGODB_DATABASE", "DESKSTREAM_API_TOKEN"}
APPS = {"ingest": ingest_app, "tickets": tickets_app, "routing": routing_app, "sla": sla_app,
        "analytics": analytics_app}


def render() -> dict[Path, str]:
    # the documents describe the contract's defaults, whatever this shell points at
    saved = {k: os.environ.pop(k) for k in list(os.environ) if k in CONTRACT_ENV}
    try:
        apps = {name: factory() for name, factory in APPS.items()}
    finally:
        os.environ.update(saved)
    spec = AsyncAPI(*(app.state.runtime.broker for app in apps.values()), title="deskstream events",
                    version=VERSION,
                    description="Every Kafka topic of deskstream and the CloudEvents records on it. "
                                "Public: tickets.events, sla.events, deadletter.")
    out = {DOCS / "asyncapi.json": json.dumps(json.loads(spec.to_specification().to_json()), indent=2,
                                              sort_keys=True) + "\n"}
    for name, app in apps.items():
        out[DOCS / "openapi" / f"{name}.json"] = json.dumps(app.openapi(), indent=2, sort_keys=True) + "\n"
    return out


def main() -> int:
    for path, text in render().items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        print(f"wrote {path.relative_to(DOCS.parent)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
