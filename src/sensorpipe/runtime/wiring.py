"""One wiring function per process: settings and clients are built here, never at import."""

from __future__ import annotations

from pathlib import Path

from sensorpipe.contracts.config import PipelineConfig
from sensorpipe.runtime.supervisor import Component, Log, Platform, Supervisor, python_component
from sensorpipe.settings import ApiSettings, ConsumerSettings, DatabaseSettings, KafkaSettings
from sensorpipe.storage import config_store

DEMO_RATE = 5000.0
DEMO_SENSORS = 2000


def build_stack(
    *,
    kafka: KafkaSettings,
    db: DatabaseSettings,
    state_dir: Path,
    consumers: int,
    producer: bool,
    api: bool,
    rate: float | None,
    sensors: int | None,
    log: Log,
) -> Supervisor:
    """The supervisor for `sensorpipe up`: the platform plus every component that exists.

    The configuration store decides the producer's load: an empty store is seeded with the
    demo load (2,000 sensors at 5,000 events/s); `--rate`/`--sensors` given explicitly are
    stored as a new version; otherwise whatever was stored last (e.g. from the dashboard) stays.
    """
    demo = PipelineConfig(
        rate=DEMO_RATE if rate is None else rate, sensors=DEMO_SENSORS if sensors is None else sensors
    )
    explicit = {k: v for k, v in {"rate": rate, "sensors": sensors}.items() if v is not None}

    def seed(p: Platform) -> None:
        dsn = p.db_settings.dsn()
        if config_store.seed_if_empty(dsn, demo) is not None:
            log(f"stored the initial producer configuration: {demo.rate:g} events/s from {demo.sensors} sensors")
        elif explicit:
            stored = config_store.update(dsn, explicit, "sensorpipe up")
            log(
                f"stored configuration v{stored.version}: {stored.config.rate:g} events/s from "
                f"{stored.config.sensors} sensors"
            )

    platform = Platform(kafka, db, state_dir, log, after_start=seed)
    platform.rate_hint = demo.rate if producer else 0.0
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
    if consumers:  # closed days are compacted wherever events are stored
        components.append(python_component("compactor", ["compactor"]))
    if producer:
        # With the API running, the producer follows the configuration store (seeded above with
        # these same values), so a change made in the dashboard reaches it within seconds.
        args = ["producer", "--rate", str(demo.rate), "--sensors", str(demo.sensors)]
        if api:
            args += ["--api-url", api_settings.url()]
        components.append(python_component("producer", args))
    return Supervisor(platform, components, log)
