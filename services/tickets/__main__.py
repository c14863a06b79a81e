import shared.boot  # noqa: F401  (first of all: see shared/boot.py)

# isort: split
from services.tickets.app import create_app
from services.tickets.settings import TicketsSettings
from shared.http import serve

settings = TicketsSettings()
serve(
    create_app(settings),
    host=settings.http_host,
    port=settings.http_port,
    log_level=settings.log_level,
    instance_port=settings.instance_port,
)
