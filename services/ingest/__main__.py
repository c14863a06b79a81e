import shared.boot  # noqa: F401  (first of all: see shared/boot.py)

# isort: split
from services.ingest.app import create_app
from services.ingest.settings import IngestSettings
from shared.http import serve

settings = IngestSettings()
serve(create_app(settings), host=settings.http_host, port=settings.http_port, log_level=settings.log_level)
