"""A local PostgreSQL cluster in the project's state folder, from the machine's server binaries.

PostgreSQL refuses to run as root. When we are root, the cluster runs as the `postgres`
system user, and its data folder must be reachable by that user through every parent
folder; when the state folder is not (a clone under a mode-700 home), the data lives under
/var/lib/sensorpipe/<hash of the state folder> and the state folder records where.

The cluster listens on loopback only and asks every client for a password (scram-sha-256):
another local user of the machine cannot write the store. The password is generated on
first start into <state dir>/postgres/pgpass (mode 0600, libpq's password-file format),
which the connection strings name (`passfile=`), so no command prints it. A cluster made
with `trust` by an earlier version gets its password at its next start.
"""

from __future__ import annotations

import glob
import hashlib
import os
import pwd
import secrets
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
from sensorpipe.settings import PASSFILE, DatabaseSettings

INSTALL_HINT = "install the PostgreSQL server binaries: apt-get install postgresql (Debian/Ubuntu)"
EXTERNAL_ROOT = Path("/var/lib/sensorpipe")
# Client authentication once the password is set: loopback TCP only (the server listens on
# 127.0.0.1 and has no unix socket), and always with the password.
HBA = """# Written by sensorpipe (runtime/postgres.py): every connection needs the password.
host all all 127.0.0.1/32 scram-sha-256
host all all ::1/128 scram-sha-256
"""
# With `listen_also`, clients on that address's subnet (a test's veth peer) are let in too.
HBA_SAMENET = "host all all samenet scram-sha-256\n"


def listen_addresses(settings: DatabaseSettings) -> str:
    """Loopback, and `listen_also` if set; never a wildcard."""
    return ",".join(["127.0.0.1", *([str(settings.listen_also)] if settings.listen_also else [])])


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
        self.passfile = self.home / PASSFILE
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
                "--auth=trust",  # only until the first start sets the password (require_password)
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
            "listen_addresses": listen_addresses(s),
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
            self.require_password(data)
            self.ensure_database()
        except BaseException:
            proc.send_signal(signal.SIGINT)
            proc.wait(timeout=30)
            raise
        return proc

    def wait_ready(self, proc: subprocess.Popen[bytes]) -> None:
        deadline = time.monotonic() + self.settings.start_timeout_s
        admin = self.dsn_for("postgres")
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
        admin = self.dsn_for("postgres")
        with psycopg.connect(admin, autocommit=True) as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (self.settings.name,)).fetchone()
            if not exists:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(self.settings.name)))

    def dsn_for(self, name: str) -> str:
        """A connection string for database `name` of this cluster; the password stays in the
        password file it names."""
        tail = f"?passfile={self.passfile}" if self.passfile.is_file() else ""
        return f"postgresql://{self.settings.user}@127.0.0.1:{self.settings.port}/{name}{tail}"

    def require_password(self, data: Path) -> None:
        """Make every connection authenticate with the password in the password file: create
        the file if need be (mode 0600), set the role's password from it (sent as a SCRAM
        verifier, never in clear), then replace pg_hba.conf's rules and reload. Each step is
        idempotent, so an interrupted run is finished by the next start."""
        hba = data / "pg_hba.conf"
        rules = HBA + (HBA_SAMENET if self.settings.listen_also else "")
        if hba.read_text() == rules and self.passfile.is_file():
            return
        password = self._password()
        try:
            conn = psycopg.connect(self.dsn_for("postgres"), autocommit=True)
        except psycopg.OperationalError as e:
            raise PlatformError(
                f"PostgreSQL refused the password in {self.passfile} ({e}). Restore the file that was there, "
                f"or start afresh with `sensorpipe down --purge` (this deletes the stored data)."
            ) from e
        with conn:
            verifier = conn.pgconn.encrypt_password(password.encode(), self.settings.user.encode(), b"scram-sha-256")
            conn.execute(
                sql.SQL("ALTER ROLE {} PASSWORD {}").format(
                    sql.Identifier(self.settings.user), sql.Literal(verifier.decode())
                )
            )
            hba.write_text(rules)  # keeps the file's owner: the server user
            conn.execute("SELECT pg_reload_conf()")

    def password(self) -> str:
        """The cluster's password, for a client that cannot read the password file (a JDBC
        driver); never to be printed. Only read: the cluster's start writes the file."""
        if not self.passfile.is_file():
            raise PlatformError(f"no password file at {self.passfile}: start the local cluster first")
        return self._password()

    def _password(self) -> str:
        """The password from the password file, written first if there is none."""
        if self.passfile.is_file():
            return self.passfile.read_text().strip().rsplit(":", 1)[1]
        password = secrets.token_urlsafe(32)  # no ':' or '\\', which the file format escapes
        self.home.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.passfile, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(f"127.0.0.1:*:*:{self.settings.user}:{password}\n")
        return password

    def create_database(self, name: str) -> str:
        """A fresh database on the local cluster (used for per-test isolation); returns its DSN."""
        admin = self.dsn_for("postgres")
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.dsn_for(name)

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
