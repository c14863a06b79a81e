"""The secrets the services need (API token, chat and sealing secrets), generated into the state
directory when the environment has none."""

import base64
import os

from .paths import StatePaths

# environment variable -> file in the state directory (the services refuse to start without an API
# token; see shared/credentials.py)
GENERATED_SECRETS = {
    "DESKSTREAM_API_TOKEN": "api-token",
    "DESKSTREAM_CHAT_SECRET": "chat-secret",
    "DESKSTREAM_SECRET_KEY": "secret-key",
}


def state_secret(paths: StatePaths, filename: str) -> tuple[str, bool]:
    """The secret kept in ``<state>/<filename>`` (mode 0600), made on first use; (value, made now)."""
    path = paths.root / filename
    if path.exists():
        value = path.read_text().strip()
        if value:
            return value, False
    paths.root.mkdir(parents=True, exist_ok=True)
    value = base64.urlsafe_b64encode(os.urandom(32)).decode().rstrip("=")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(value + "\n")
    return value, True


def api_token(state_dir: str | os.PathLike | None = None) -> str | None:
    """The admin token clients should use with this state directory's stack: the environment's, else
    the one ``up`` generated."""
    if os.environ.get("DESKSTREAM_API_TOKEN"):
        return os.environ["DESKSTREAM_API_TOKEN"]
    path = StatePaths.of(state_dir).root / GENERATED_SECRETS["DESKSTREAM_API_TOKEN"]
    return path.read_text().strip() or None if path.exists() else None
