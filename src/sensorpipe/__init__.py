"""sensorpipe: a sensor-event ingestion pipeline (producer -> Kafka -> consumer -> PostgreSQL -> API)."""

__version__ = "0.1.0"
