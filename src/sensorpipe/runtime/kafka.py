"""A local Apache Kafka cluster in KRaft mode, from the jars Maven fetched (or $KAFKA_HOME).

Each node is combined broker+controller. Node i (1-based) listens for clients on
`port + 2*(i-1)` and for the controller quorum on the port after it. The cluster id and
the node count are recorded in the state folder; a data folder that does not match them
is refused rather than reformatted, so no data is ever silently deleted.
"""

from __future__ import annotations

import base64
import os
import re
import shutil
import subprocess
import time
import uuid
from importlib import resources
from pathlib import Path

import orjson
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from sensorpipe.runtime.procs import PlatformError, log_tail, require_free_port, spawn
from sensorpipe.settings import KafkaSettings

JAVA_HINT = "install Java 17 or newer: apt-get install openjdk-17-jre-headless"


def java_binary() -> str:
    java = shutil.which("java")
    if java is None:
        raise PlatformError(f"`java` was not found on PATH: {JAVA_HINT}")
    out = subprocess.run([java, "-version"], capture_output=True, text=True, check=False)
    m = re.search(r'version "(\d+)', out.stderr + out.stdout)
    if m is None or int(m.group(1)) < 17:
        raise PlatformError(f"Kafka 4 needs Java 17+, but `java -version` says: {out.stderr.strip()[:80]}: {JAVA_HINT}")
    return java


def classpath(libs_dir: Path) -> str:
    """$KAFKA_HOME/libs when KAFKA_HOME names a distribution, else the Maven-fetched jars."""
    home = os.environ.get("KAFKA_HOME")
    if home:
        libs = Path(home) / "libs"
        if not any(libs.glob("kafka_2.13-*.jar")):
            raise PlatformError(f"KAFKA_HOME={home} is not an Apache Kafka distribution (no libs/kafka_2.13-*.jar)")
    else:
        libs = libs_dir.resolve()
        if not any(libs.glob("kafka_2.13-*.jar")):
            raise PlatformError(
                f"the Kafka jars are missing from {libs}: run `make setup` (fetches them with Maven), "
                f"or set KAFKA_HOME to an Apache Kafka distribution"
            )
    return f"{libs}/*"


def new_cluster_id() -> str:
    """Kafka's Uuid text form: 16 random bytes, base64url without padding.

    Like Kafka's own `Uuid.randomUuid`, an id that starts with "-" is drawn again: the
    storage tool's argument parser reads `-t -abc...` as a missing value and an option
    (one draw in 64 did that, and failed a CI run).
    """
    while True:
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cid.startswith("-"):
            return cid


def admin_client(bootstrap: str, timeout_ms: int = 5000, security_protocol: str = "PLAINTEXT") -> AdminClient:
    return AdminClient(
        {
            "bootstrap.servers": bootstrap,
            "security.protocol": security_protocol,
            "socket.timeout.ms": timeout_ms,
            "log_level": 0,
        }
    )


def cluster_answers(bootstrap: str, timeout: float = 2.0, security_protocol: str = "PLAINTEXT") -> bool:
    """True when the cluster answers a metadata request with at least one broker (asked by a
    new client each time)."""
    try:
        md = admin_client(bootstrap, security_protocol=security_protocol).list_topics(timeout=timeout)
    except KafkaException:
        return False
    return len(md.brokers) > 0


class LocalKafka:
    def __init__(self, settings: KafkaSettings, state_dir: Path, libs_dir: Path) -> None:
        self.settings = settings
        self.home = state_dir / "kafka"
        self.logs = state_dir / "logs"
        self.libs_dir = libs_dir

    def node_ids(self) -> list[int]:
        return list(range(1, self.settings.brokers + 1))

    def broker_port(self, node: int) -> int:
        return self.settings.port + 2 * (node - 1)

    def log_path(self, node: int) -> Path:
        return self.logs / f"kafka-{node}.log"

    def _layout(self) -> str:
        """The cluster id, created on first use; refuses a state folder made for another size."""
        self.home.mkdir(parents=True, exist_ok=True)
        layout_file = self.home / "layout.json"
        if layout_file.is_file():
            layout = orjson.loads(layout_file.read_bytes())
            if layout["brokers"] != self.settings.brokers or layout["port"] != self.settings.port:
                raise PlatformError(
                    f"the Kafka state in {self.home} is a {layout['brokers']}-broker cluster on port "
                    f"{layout['port']}, but {self.settings.brokers} broker(s) on port {self.settings.port} were "
                    f"asked for. Nothing was changed. Start it as it was, use another SENSORPIPE_STATE_DIR, or "
                    f"delete it with `sensorpipe down --purge`."
                )
            return str(layout["cluster_id"])
        cid = new_cluster_id()
        layout_file.write_bytes(
            orjson.dumps({"cluster_id": cid, "brokers": self.settings.brokers, "port": self.settings.port})
        )
        return cid

    def server_properties(self, node: int) -> str:
        s = self.settings
        n = s.brokers
        rf = s.replication_factor()
        host = s.host
        voters = ",".join(f"{i}@{host}:{self.broker_port(i) + 1}" for i in self.node_ids())
        port = self.broker_port(node)
        props = {
            "process.roles": "broker,controller",
            "node.id": node,
            "controller.quorum.voters": voters,
            "listeners": f"PLAINTEXT://{host}:{port},CONTROLLER://{host}:{port + 1}",
            "advertised.listeners": f"PLAINTEXT://{host}:{port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "log.dirs": str(self.home / f"node-{node}" / "data"),
            "num.partitions": s.partitions,
            "default.replication.factor": rf,
            "min.insync.replicas": 2 if n >= 3 else 1,
            "offsets.topic.replication.factor": rf,
            "transaction.state.log.replication.factor": rf,
            "transaction.state.log.min.isr": 2 if n >= 3 else 1,
            "share.coordinator.state.topic.replication.factor": rf,
            "share.coordinator.state.topic.min.isr": 2 if n >= 3 else 1,
            "auto.create.topics.enable": "false",
            "unclean.leader.election.enable": "false",
            "group.initial.rebalance.delay.ms": 0,
            "log.retention.hours": 168,
            # Size retention (the disk budget's retention.bytes per topic) is checked this
            # often; the broker's default of 5 minutes would let a partition overrun its share.
            "log.retention.check.interval.ms": 30_000,
            "log.segment.bytes": 256 * 1024 * 1024,
            "num.network.threads": 2,
            "num.io.threads": 4,
        }
        return "".join(f"{k}={v}\n" for k, v in props.items())

    def _format(self, node: int, java: str, cp: str, cluster_id: str, config: Path) -> None:
        data = self.home / f"node-{node}" / "data"
        meta = data / "meta.properties"
        if meta.is_file():
            text = meta.read_text()
            found = re.search(r"^cluster\.id=(\S+)", text, re.M)
            if found is None or found.group(1) != cluster_id:
                raise PlatformError(
                    f"{data} belongs to another Kafka cluster ({found.group(1) if found else 'unknown id'}), "
                    f"not {cluster_id}. Nothing was changed. Use another SENSORPIPE_STATE_DIR or "
                    f"`sensorpipe down --purge`."
                )
            return
        out = subprocess.run(
            [
                java,
                "-cp",
                cp,
                "kafka.tools.StorageTool",
                "format",
                f"--cluster-id={cluster_id}",
                "-c",
                str(config),
                "--ignore-formatted",
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if out.returncode != 0:
            raise PlatformError(f"formatting Kafka storage for node {node} failed:\n{out.stdout}{out.stderr}")

    def start(self) -> list[subprocess.Popen[bytes]]:
        """Start every node, then wait until the cluster answers a metadata request."""
        java = java_binary()
        cp = classpath(self.libs_dir)
        for node in self.node_ids():
            port = self.broker_port(node)
            require_free_port(port, f"Kafka node {node}", "SENSORPIPE_KAFKA_PORT")
            require_free_port(port + 1, f"the Kafka controller of node {node}", "SENSORPIPE_KAFKA_PORT")
        cluster_id = self._layout()
        log4j = resources.files("sensorpipe.runtime").joinpath("log4j2.properties")
        procs: list[subprocess.Popen[bytes]] = []
        try:
            for node in self.node_ids():
                node_dir = self.home / f"node-{node}"
                node_dir.mkdir(parents=True, exist_ok=True)
                config = node_dir / "server.properties"
                config.write_text(self.server_properties(node))
                self._format(node, java, cp, cluster_id, config)
                procs.append(self._spawn(node, java, cp, str(log4j), config))
            self.wait_ready(procs)
        except BaseException:
            for p in procs:
                p.terminate()
            for p in procs:
                try:
                    p.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    p.kill()
            raise
        return procs

    def restart_node(self, node: int) -> subprocess.Popen[bytes]:
        """Start one node of a formatted cluster again (after a crash); returns at once: the
        caller decides what "back" means (a single node answers metadata; in a cluster the
        others never stopped answering)."""
        config = self.home / f"node-{node}" / "server.properties"
        if not config.is_file():
            raise PlatformError(f"Kafka node {node} was never started from {self.home}")
        log4j = resources.files("sensorpipe.runtime").joinpath("log4j2.properties")
        require_free_port(self.broker_port(node), f"Kafka node {node}", "SENSORPIPE_KAFKA_PORT")
        return self._spawn(node, java_binary(), classpath(self.libs_dir), str(log4j), config)

    def _spawn(self, node: int, java: str, cp: str, log4j: str, config: Path) -> subprocess.Popen[bytes]:
        # The node's JVM temporary files (lz4-java extracts its native library at every start,
        # and a killed broker leaves it behind) live in its own folder, emptied before each
        # start, so they neither pile up in the machine's temporary folder nor across restarts.
        tmp = self._tmp(node)
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        return spawn(self.command(node, java, cp, log4j, config), self.logs / f"kafka-{node}.out")

    def _tmp(self, node: int) -> Path:
        return self.home / f"node-{node}" / "tmp"

    def command(self, node: int, java: str, cp: str, log4j: str, config: Path) -> list[str]:
        heap = self.settings.heap
        tmp = self._tmp(node)
        return [
            java,
            f"-Xmx{heap}",
            f"-Xms{heap}",
            "-XX:+UseG1GC",
            "-XX:MaxGCPauseMillis=20",
            # GC pauses and safepoints beside the broker's own log, as Kafka's start script
            # logs GC, in two files of 8 MiB at most (the current one and one previous; the JDK
            # counts only the previous), so a stalled broker can be told apart from a paused
            # one: a safepoint that is slow to reach or to leave stops every thread of the JVM.
            f"-Xlog:gc*,safepoint:file={self.logs}/kafka-{node}-gc.log:time,uptime,level,tags:filecount=1,filesize=8m",
            "-Djava.awt.headless=true",
            f"-Djava.io.tmpdir={tmp}",
            f"-Dlog4j2.configurationFile={log4j}",
            f"-Dkafka.logs.dir={self.logs}",
            f"-Dsensorpipe.node={node}",
            "-cp",
            cp,
            "kafka.Kafka",
            str(config),
        ]

    def wait_ready(self, procs: list[subprocess.Popen[bytes]]) -> None:
        deadline = time.monotonic() + self.settings.start_timeout_s
        bootstrap = self.settings.bootstrap()
        while time.monotonic() < deadline:
            for node, p in zip(self.node_ids(), procs, strict=True):
                if p.poll() is not None:
                    raise PlatformError(
                        f"Kafka node {node} exited with status {p.returncode} during start-up. "
                        f"Its log ({self.log_path(node)}) ends with:\n{log_tail(self.log_path(node))}\n"
                        f"{log_tail(self.logs / f'kafka-{node}.out', 5)}"
                    )
            if self._all_brokers_registered(bootstrap):
                return
            time.sleep(0.5)
        raise PlatformError(
            f"the Kafka cluster did not answer a metadata request within {self.settings.start_timeout_s:.0f}s. "
            f"Its data is untouched. Check {self.log_path(1)}, or raise SENSORPIPE_KAFKA_START_TIMEOUT_S:\n"
            f"{log_tail(self.log_path(1))}"
        )

    def _all_brokers_registered(self, bootstrap: str) -> bool:
        try:
            md = admin_client(bootstrap).list_topics(timeout=2)
        except KafkaException:
            return False
        return len(md.brokers) >= self.settings.brokers
