"""One wiring function per process: settings and clients are built here, never at import."""

from __future__ import annotations

from pathlib import Path

from sensorpipe.contracts.config import PipelineConfig
from sensorpipe.runtime.supervisor import Component, Log, Platform, Supervisor, python_component
from sensorpipe.settings import ApiSettings, ConsumerSettings, DatabaseSettings, KafkaSettings
from sensorpipe.storage import config_store


def build_stack(
    *,
    kafka: KafkaSettings,
    db: DatabaseSettings,
    state_dir: Path,
    consumers: int,
    producer: bool,
    api: bool,
    rate: float,
    sensors: int,
    log: Log,
) -> Supervisor:
    """The supervisor for `sensorpipe up`: the platform plus every component that exists."""
    demo = PipelineConfig(rate=rate, sensors=sensors)

    def seed(p: Platform) -> None:
        # The store starts with the load `up` runs, so the dashboard shows what the producer does.
        if config_store.seed_if_empty(p.db_settings.dsn(), demo) is not None:
            log(f"stored the initial producer configuration: {rate:g} events/s from {sensors} sensors")

    platform = Platform(kafka, db, state_dir, log, after_start=seed)
    components: list[Component] = []
    api_settings = ApiSettings()
    if api:
        components.append(python_component("api", ["api"], address=api_settings.url()))
    base_port = ConsumerSettings().metrics_port
    components += [
        python_component(
            f"consumer-{i}",
            ["consumer"],
            # each consumer serves its own Prometheus port: base, base+1, ...
            env={"SENSORPIPE_CONSUMER_METRICS_PORT": str(base_port + i if base_port else 0)},
        )
        for i in range(consumers)
    ]
    if producer:
        components.append(python_component("producer", ["producer", "--rate", str(rate), "--sensors", str(sensors)]))
    return Supervisor(platform, components, log)
