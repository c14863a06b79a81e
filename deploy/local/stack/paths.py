"""The layout of a state directory: one stack's data, logs, pid and address files."""

import dataclasses
import os
from pathlib import Path

from .config import DEFAULT_STATE_DIR


@dataclasses.dataclass(frozen=True)
class StatePaths:
    root: Path

    @classmethod
    def of(cls, state_dir: str | os.PathLike | None) -> "StatePaths":
        root = Path(state_dir).expanduser() if state_dir else DEFAULT_STATE_DIR
        return cls(root.resolve())

    @property
    def kafka_data(self) -> Path:
        return self.root / "kafka-data"

    @property
    def ferretdb_data(self) -> Path:
        return self.root / "ferretdb-data"

    @property
    def ferretdb_state(self) -> Path:
        return self.root / "ferretdb-state"

    @property
    def server_properties(self) -> Path:
        return self.root / "kafka-server.properties"

    @property
    def log_dir(self) -> Path:
        return self.root / "log"

    @property
    def run_dir(self) -> Path:
        return self.root / "run"

    @property
    def lock(self) -> Path:
        return self.root / ".lock"

    def log(self, name: str) -> Path:
        return self.log_dir / f"{name}.log"

    def pid(self, name: str) -> Path:
        return self.run_dir / f"{name}.pid"

    def addr(self, name: str) -> Path:
        return self.run_dir / f"{name}.addr"

    def ensure(self) -> None:
        for d in (self.root, self.kafka_data, self.ferretdb_data, self.ferretdb_state, self.log_dir, self.run_dir):
            d.mkdir(parents=True, exist_ok=True)
