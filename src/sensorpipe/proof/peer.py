"""The peer sensorpipe is measured against: Apache Kafka Connect in standalone mode with the
Debezium JDBC sink, writing the same topic into PostgreSQL, as a user would run it instead
of our consumer.

`make setup` fetches the worker (runtime-deps/connect) into .cache/connect/libs and the
connector (runtime-deps/connect-jdbc) into .cache/connect/plugins/debezium-jdbc, loaded as a
plugin. The sink is configured as its documentation suggests for this data:
- the JSON converter with `schema.content` (Kafka 4.2, KIP-1054) gives plain JSON values
  the struct schema of the contract, so messages need no schema envelope;
- `TimestampConverter$Value` parses the ISO timestamp and `ReplaceField$Value` renames it to
  the table's `ts`;
- upsert on the table's primary key `(event_id, ts)`, batches of 2,000 (and the consumer
  polls as many), no schema evolution (the table exists); the reduction buffer, which merges
  a batch's records that share a key, is off unless a plan turns it on;
- converter and transform errors go to a dead-letter topic of its own; the connector has no
  dead-letter path for a row the database rejects, so such a row fails the task.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import httpx

from sensorpipe.runtime.kafka import java_binary
from sensorpipe.runtime.procs import PlatformError

LIBS = Path(".cache/connect/libs")
PLUGINS = Path(".cache/connect/plugins")
CONNECTOR = "io.debezium.connector.jdbc.JdbcSinkConnector"

# The contract's event as a Connect struct (contracts.events): every field required.
SCHEMA = {
    "type": "struct",
    "optional": False,
    "fields": [
        {"field": "sensor_id", "type": "string", "optional": False},
        {"field": "event_id", "type": "string", "optional": False},
        {"field": "timestamp", "type": "string", "optional": False},
        {"field": "value", "type": "double", "optional": False},
        {"field": "seq", "type": "int64", "optional": False},
    ],
}


@dataclass(frozen=True)
class SinkPlan:
    """One configuration of the peer: tasks, and Debezium's unnest insert for PostgreSQL."""

    tasks: int
    unnest: bool
    reduction_buffer: bool = False  # Debezium's merge of a batch's records by primary key
    batch_size: int = 2000

    @property
    def label(self) -> str:
        buffer = ", reduction buffer" if self.reduction_buffer else ""
        return f"{self.tasks} task{'s' if self.tasks > 1 else ''}, unnest {'on' if self.unnest else 'off'}{buffer}"


@dataclass(frozen=True)
class Target:
    """Where the peer reads and writes."""

    bootstrap: str
    topic: str
    jdbc_url: str
    user: str
    password: str

    @property
    def dlq_topic(self) -> str:
        return f"{self.topic}-peer-dlq"


def installed() -> bool:
    return any(LIBS.glob("connect-runtime-*.jar")) and any(
        (PLUGINS / "debezium-jdbc").glob("debezium-connector-jdbc-*.jar")
    )


def worker_properties(t: Target, home: Path, port: int) -> dict[str, str]:
    return {
        "bootstrap.servers": t.bootstrap,
        "listeners": f"http://127.0.0.1:{port}",
        "plugin.path": str(PLUGINS.resolve()),
        "offset.storage.file.filename": str(home / "offsets"),
        "offset.flush.interval.ms": "1000",
        "key.converter": "org.apache.kafka.connect.storage.StringConverter",
        "value.converter": "org.apache.kafka.connect.json.JsonConverter",
        "value.converter.schemas.enable": "true",
        "value.converter.schema.content": json.dumps(SCHEMA, separators=(",", ":")),
        "consumer.auto.offset.reset": "earliest",
    }


def connector_properties(t: Target, plan: SinkPlan, name: str) -> dict[str, str]:
    return {
        "name": name,
        "connector.class": CONNECTOR,
        "tasks.max": str(plan.tasks),
        "topics": t.topic,
        "connection.url": t.jdbc_url,
        "connection.username": t.user,
        "connection.password": t.password,
        "insert.mode": "upsert",
        "primary.key.mode": "record_value",
        "primary.key.fields": "event_id,ts",
        "schema.evolution": "none",
        "collection.name.format": "peer_metrics",
        "batch.size": str(plan.batch_size),
        "dialect.postgres.unnest.insert.enabled": str(plan.unnest).lower(),
        "use.reduction.buffer": str(plan.reduction_buffer).lower(),
        "consumer.override.max.poll.records": str(plan.batch_size),
        "transforms": "ts,rename",
        "transforms.ts.type": "org.apache.kafka.connect.transforms.TimestampConverter$Value",
        "transforms.ts.field": "timestamp",
        "transforms.ts.target.type": "Timestamp",
        "transforms.ts.format": "yyyy-MM-dd'T'HH:mm:ss.SSSX",
        "transforms.rename.type": "org.apache.kafka.connect.transforms.ReplaceField$Value",
        "transforms.rename.renames": "timestamp:ts",
        "errors.tolerance": "all",
        "errors.deadletterqueue.topic.name": t.dlq_topic,
        "errors.deadletterqueue.topic.replication.factor": "1",
        "errors.deadletterqueue.context.headers.enable": "true",
    }


def _write_properties(path: Path, props: dict[str, str]) -> None:
    """A Java properties file, mode 0600 (it holds the database password)."""

    def escape(v: str) -> str:
        return v.replace("\\", "\\\\").replace("\n", "\\n").replace(":", "\\:").replace("=", "\\=")

    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.writelines(f"{k}={escape(v)}\n" for k, v in props.items())


def _root_cause(trace: str) -> str:
    lines = [line.strip() for line in trace.strip().splitlines()]
    causes = [line.removeprefix("Caused by: ") for line in lines if line.startswith("Caused by: ")]
    return (causes[-1] if causes else lines[0] if lines else "")[:300]


class Worker:
    """One standalone Connect worker running one sink connector; a context manager."""

    def __init__(self, home: Path, target: Target, plan: SinkPlan, port: int, name: str) -> None:
        self.home, self.target, self.plan, self.port, self.name = home, target, plan, port, name
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def group(self) -> str:
        """The consumer group Connect gives a sink connector."""
        return f"connect-{self.name}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def __enter__(self) -> Worker:
        if not installed():
            raise PlatformError("the Kafka Connect peer is not installed: run `make setup` (fetches it with Maven)")
        self.home.mkdir(parents=True, exist_ok=True)
        worker, connector = self.home / "worker.properties", self.home / "connector.properties"
        _write_properties(worker, worker_properties(self.target, self.home, self.port))
        _write_properties(connector, connector_properties(self.target, self.plan, self.name))
        log4j = resources.files("sensorpipe.runtime").joinpath("log4j2.properties")
        cmd = [
            java_binary(),
            "-Xms256M",
            "-Xmx2G",  # the heap connect-standalone.sh gives a worker
            "-XX:+UseG1GC",
            "-Djava.awt.headless=true",
            f"-Djava.io.tmpdir={self.home}",  # native libraries it extracts stay with the run
            f"-Dlog4j2.configurationFile={log4j}",
            f"-Dkafka.logs.dir={self.home}",
            "-Dsensorpipe.node=connect",
            "-cp",
            f"{LIBS.resolve()}/*",
            "org.apache.kafka.connect.cli.ConnectStandalone",
            str(worker),
            str(connector),
        ]
        with open(self.home / "connect.out", "ab") as out:
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=self.home)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc is None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)

    def status(self) -> dict[str, Any] | None:
        """The connector's status from the worker's REST API, or None while it does not answer."""
        try:
            r = httpx.get(f"http://127.0.0.1:{self.port}/connectors/{self.name}/status", timeout=5)
        except httpx.HTTPError:
            return None
        return r.json() if r.status_code == 200 else None

    def failed_tasks(self) -> list[str]:
        """Each failed task's root cause: the last `Caused by` of its trace (else its first line)."""
        st = self.status() or {}
        return [_root_cause(t.get("trace") or "") for t in st.get("tasks", []) if t.get("state") == "FAILED"]

    def wait_running(self, timeout_s: float = 120) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise PlatformError(
                    f"the Connect worker exited ({self.proc.returncode}); see {self.home / 'connect.out'}"
                )
            st = self.status()
            if st and st.get("tasks") and all(t.get("state") in ("RUNNING", "FAILED") for t in st["tasks"]):
                return
            time.sleep(0.5)
        raise PlatformError(f"the Connect worker did not start its tasks in {timeout_s:.0f} s; see {self.home}")
