"""Code every deskstream service shares: settings, topics, events, broker, storage, HTTP, telemetry."""
