"""A local PostgreSQL cluster in the project's state folder, from the machine's server binaries.

PostgreSQL refuses to run as root. When we are root, the cluster runs as the `postgres`
system user, and its data folder must be reachable by that user through every parent
folder; when the state folder is not (a clone under a mode-700 home), the data lives under
/var/lib/sensorpipe/<hash of the state folder> and the state folder records where.
"""

from __future__ import annotations

import glob
import hashlib
import os
import pwd
import shutil
import signal
import stat
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql

from sensorpipe.runtime.procs import PlatformError, log_tail, require_free_port, spawn
from sensorpipe.settings import DatabaseSettings

INSTALL_HINT = "install the PostgreSQL server binaries: apt-get install postgresql (Debian/Ubuntu)"
EXTERNAL_ROOT = Path("/var/lib/sensorpipe")


def find_bindir() -> Path:
    """The folder holding `postgres`, `initdb` and `pg_ctl`: pg_config first, then Debian's paths."""
    candidates: list[Path] = []
    if pg_config := shutil.which("pg_config"):
        out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=False)
        if out.returncode == 0:
            candidates.append(Path(out.stdout.strip()))
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(p.split("/")[-2]), reverse=True)
    candidates += [Path(p) for p in versions]
    for c in candidates:
        if (c / "postgres").is_file() and (c / "initdb").is_file():
            return c
    raise PlatformError(f"PostgreSQL server binaries (postgres, initdb) were not found: {INSTALL_HINT}")


def server_major(bindir: Path) -> str:
    out = subprocess.run([str(bindir / "postgres"), "--version"], capture_output=True, text=True, check=True)
    # "postgres (PostgreSQL) 15.18 (Debian ...)" -> "15"
    return out.stdout.split(")")[1].strip().split(".")[0].split()[0]


def _reachable(path: Path, uid: int, gid: int) -> bool:
    """True when `uid` can traverse every parent of `path` (the x bit for its class)."""
    for p in [path, *path.parents]:
        if not p.exists():
            continue
        st = p.stat()
        if st.st_uid == uid:
            ok = bool(st.st_mode & stat.S_IXUSR)
        elif st.st_gid == gid:
            ok = bool(st.st_mode & stat.S_IXGRP)
        else:
            ok = bool(st.st_mode & stat.S_IXOTH)
        if not ok:
            return False
    return True


@dataclass(frozen=True)
class RunAs:
    name: str
    uid: int
    gid: int

    @classmethod
    def for_server(cls) -> RunAs:
        if os.geteuid() != 0:
            pw = pwd.getpwuid(os.geteuid())
            return cls(pw.pw_name, pw.pw_uid, pw.pw_gid)
        try:
            pw = pwd.getpwnam("postgres")
        except KeyError as e:
            raise PlatformError(
                "running as root, and PostgreSQL refuses to run as root, but there is no `postgres` user "
                "to run it as: create one (useradd --system postgres) or run as a normal user"
            ) from e
        return cls(pw.pw_name, pw.pw_uid, pw.pw_gid)


class LocalPostgres:
    """Owns one local cluster: initdb on first start, then `postgres` in the foreground as a child."""

    def __init__(self, settings: DatabaseSettings, state_dir: Path) -> None:
        self.settings = settings
        self.state_dir = state_dir
        self.home = state_dir / "postgres"
        self.log_path = state_dir / "logs" / "postgres.log"
        self.run_as = RunAs.for_server()
        # The WAL is on the same disk as the data: the disk budget sizes it (None: 4 GB).
        self.max_wal_bytes: int | None = None

    # -- layout -------------------------------------------------------------------------------
    def data_dir(self) -> Path:
        """The data folder, chosen once and remembered in the state folder."""
        pointer = self.home / "data-location"
        if pointer.is_file():
            return Path(pointer.read_text().strip())
        local = self.home / "data"
        if _reachable(self.home, self.run_as.uid, self.run_as.gid):
            chosen = local
        else:
            digest = hashlib.sha256(str(self.state_dir).encode()).hexdigest()[:12]
            chosen = EXTERNAL_ROOT / digest / "data"
        self.home.mkdir(parents=True, exist_ok=True)
        pointer.write_text(f"{chosen}\n")
        return chosen

    def _prepare_dir(self, path: Path) -> None:
        """Create `path` owned by the server user, with parents it can traverse."""
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
        if os.geteuid() == 0:
            os.chown(path, self.run_as.uid, self.run_as.gid)
            for parent in path.parents:
                if parent in (EXTERNAL_ROOT.parent, self.state_dir.parent):
                    break
                parent.chmod(parent.stat().st_mode | stat.S_IXOTH)

    # -- lifecycle ----------------------------------------------------------------------------
    def init(self) -> Path:
        """initdb on first use; refuse a data folder from another version or owner."""
        bindir = find_bindir()
        data = self.data_dir()
        version_file = data / "PG_VERSION"
        if version_file.is_file():
            have, want = version_file.read_text().strip(), server_major(bindir)
            if have != want:
                raise PlatformError(
                    f"the data folder {data} was made by PostgreSQL {have}, but the server here is {want}. "
                    f"Nothing was changed. Upgrade it with pg_upgrade, or start afresh with "
                    f"`sensorpipe down --purge` (this deletes the stored data)."
                )
            owner = data.stat().st_uid
            if owner != self.run_as.uid:
                raise PlatformError(
                    f"the data folder {data} belongs to uid {owner}, but the server runs as "
                    f"{self.run_as.name} (uid {self.run_as.uid}). Nothing was changed. Fix the owner with "
                    f"`chown -R {self.run_as.name} {data}` or use another SENSORPIPE_STATE_DIR."
                )
            return data
        if data.exists() and any(data.iterdir()):
            raise PlatformError(
                f"the folder {data} is not empty but holds no PostgreSQL cluster. Nothing was changed. "
                f"Move it away or use another SENSORPIPE_STATE_DIR."
            )
        self._prepare_dir(data)
        pw_file = self.home / "initdb.log"
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        out = subprocess.run(
            [
                str(bindir / "initdb"),
                "-D",
                str(data),
                "-U",
                self.settings.user,
                "--auth=trust",  # loopback only: listen_addresses=127.0.0.1 and no unix socket
                "-E",
                "UTF8",
                "--locale=C",
            ],
            capture_output=True,
            text=True,
            user=self.run_as.uid if os.geteuid() == 0 else None,
            group=self.run_as.gid if os.geteuid() == 0 else None,
            extra_groups=[] if os.geteuid() == 0 else None,
            cwd="/",
            check=False,
        )
        pw_file.write_text(out.stdout + out.stderr)
        if out.returncode != 0:
            raise PlatformError(f"initdb failed for {data}:\n{out.stderr.strip()}")
        return data

    def command(self, data: Path) -> list[str]:
        s = self.settings
        opts = {
            "port": str(s.port),
            "listen_addresses": "127.0.0.1",
            "unix_socket_directories": "",
            "max_connections": "200",
            "shared_buffers": "512MB",
            "work_mem": "16MB",
            "maintenance_work_mem": "128MB",
            "max_wal_size": f"{(self.max_wal_bytes or 4 << 30) >> 20}MB",
            "min_wal_size": f"{min(80, (self.max_wal_bytes or 4 << 30) >> 21)}MB",
            "checkpoint_timeout": "15min",
            "synchronous_commit": "on",  # an acknowledged batch is durable before offsets move
            "wal_compression": "lz4",
            "logging_collector": "off",
            "log_min_messages": "warning",
            "max_locks_per_transaction": "256",
        }
        cmd = [str(find_bindir() / "postgres"), "-D", str(data)]
        for k, v in opts.items():
            cmd += ["-c", f"{k}={v}"]
        return cmd

    def start(self) -> subprocess.Popen[bytes]:
        require_free_port(self.settings.port, "PostgreSQL", "SENSORPIPE_DATABASE_PORT")
        data = self.init()
        proc = spawn(
            self.command(data),
            self.log_path,
            user=self.run_as.name if os.geteuid() == 0 else None,
            cwd=Path("/"),
            death_signal=signal.SIGINT,  # fast shutdown: never wait for idle clients
        )
        try:
            self.wait_ready(proc)
            self.ensure_database()
        except BaseException:
            proc.send_signal(signal.SIGINT)
            proc.wait(timeout=30)
            raise
        return proc

    def wait_ready(self, proc: subprocess.Popen[bytes]) -> None:
        deadline = time.monotonic() + self.settings.start_timeout_s
        admin = f"postgresql://{self.settings.user}@127.0.0.1:{self.settings.port}/postgres"
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise PlatformError(
                    f"PostgreSQL exited with status {proc.returncode} during start-up. "
                    f"Its log ({self.log_path}) ends with:\n{log_tail(self.log_path)}"
                )
            try:
                with psycopg.connect(admin, connect_timeout=2) as conn:
                    conn.execute("SELECT 1")
                return
            except psycopg.OperationalError:
                time.sleep(0.2)
        raise PlatformError(
            f"PostgreSQL did not accept connections within {self.settings.start_timeout_s:.0f}s. "
            f"Its data is untouched. Check {self.log_path}, or raise SENSORPIPE_DATABASE_START_TIMEOUT_S:\n"
            f"{log_tail(self.log_path)}"
        )

    def ensure_database(self) -> None:
        admin = f"postgresql://{self.settings.user}@127.0.0.1:{self.settings.port}/postgres"
        with psycopg.connect(admin, autocommit=True) as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (self.settings.name,)).fetchone()
            if not exists:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(self.settings.name)))

    def dsn_for(self, name: str) -> str:
        return f"postgresql://{self.settings.user}@127.0.0.1:{self.settings.port}/{name}"

    def create_database(self, name: str) -> str:
        """A fresh database on the local cluster (used for per-test isolation); returns its DSN."""
        admin = f"postgresql://{self.settings.user}@127.0.0.1:{self.settings.port}/postgres"
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return f"postgresql://{self.settings.user}@127.0.0.1:{self.settings.port}/{name}"

    def pg_ctl(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Run pg_ctl against this cluster as the server user (e.g. `stop -m immediate`)."""
        root = os.geteuid() == 0
        return subprocess.run(
            [str(find_bindir() / "pg_ctl"), "-D", str(self.data_dir()), *args],
            capture_output=True,
            text=True,
            user=self.run_as.uid if root else None,
            group=self.run_as.gid if root else None,
            extra_groups=[] if root else None,
            cwd="/",
            check=False,
        )

    def purge(self) -> None:
        data = self.data_dir()
        if data.is_relative_to(EXTERNAL_ROOT):
            shutil.rmtree(data.parent, ignore_errors=True)
