"""A local PostgreSQL 16 + pgvector from the `pgserver` wheel: the default target.

We use pgserver's binaries but manage the cluster ourselves: a fixed data directory that
runs reuse, a socket in a short path, optional TCP with a password (tests use it like a
remote server), tuned for bulk loads, and clean ownership — the process that started the
server stops it at exit unless another live rbmigrate process still uses it, and a server
left running by a killed run is adopted by the next one.
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import importlib.util
import json
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import psutil

from rbmigrate.errors import TargetConnectionError

DATABASE = "reasoningbank"
SYSTEM_USER = "pgserver"
TUNING = {
    "shared_buffers": "256MB",
    "max_wal_size": "4GB",
    "checkpoint_timeout": "15min",
    "maintenance_work_mem": "256MB",
    "max_parallel_maintenance_workers": "2",
    "logging_collector": "off",
    "log_min_messages": "warning",
}


def postgres_bin() -> Path:
    spec = importlib.util.find_spec("pgserver")
    if spec is None or not spec.submodule_search_locations:
        raise TargetConnectionError(
            "the embedded target needs the pgserver package, which is not installed.",
            hint="pip install pgserver, or give a PostgreSQL URL with --db-url.",
        )
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


def _run_as() -> str | None:
    """PostgreSQL refuses to run as root; then run it as a dedicated system user."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(SYSTEM_USER)
    except KeyError:
        subprocess.run(
            [
                "useradd",
                "--system",
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
                SYSTEM_USER,
            ],
            check=True,
            capture_output=True,
        )
    return SYSTEM_USER


def _open_path_for(user: str, path: Path) -> None:
    """Let `user` traverse to `path` (o+x on each parent; no read access is granted)."""
    for parent in list(path.resolve().parents)[::-1]:
        mode = parent.stat().st_mode
        if not mode & 0o001:
            os.chmod(parent, mode | 0o001)
    entry = pwd.getpwnam(user)
    os.chown(path, entry.pw_uid, entry.pw_gid)


class EmbeddedPostgres:
    """One cluster in `data_dir`. `port=None` listens on a Unix socket only."""

    def __init__(
        self, data_dir: Path, *, port: int | None = None, password: str | None = None
    ) -> None:
        self.data_dir = data_dir.expanduser().resolve()
        self.pgdata = self.data_dir / "pgdata"
        self.port = port
        self.password = password
        self.bin = postgres_bin()
        self.user = _run_as()
        self.started_here = False
        digest = hashlib.sha1(str(self.pgdata).encode()).hexdigest()[:10]
        self.socket_dir = Path(tempfile.gettempdir()) / f"rbm-{digest}"
        self._owner_file = self.data_dir / "owner.json"

    # --- lifecycle -----------------------------------------------------------------------
    def _cmd(self, name: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        as_user: dict[str, object] = {}
        if self.user:  # drop root's groups too, or file access checks misbehave
            as_user = {"user": self.user, "group": self.user, "extra_groups": []}
        result: subprocess.CompletedProcess[str] = subprocess.run(
            [str(self.bin / name), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            cwd="/",
            **as_user,  # type: ignore[call-overload]
        )
        return result

    def _init(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.pgdata.mkdir(mode=0o700, exist_ok=True)
        if self.user:
            _open_path_for(self.user, self.data_dir)
            _open_path_for(self.user, self.pgdata)
        pwfile = None
        args = [
            "-D",
            str(self.pgdata),
            "-U",
            "postgres",
            "-E",
            "UTF8",
            "--no-sync",
            "--auth-local=trust",
        ]
        if self.password:
            pwfile = self.data_dir / ".pwfile"
            pwfile.write_text(self.password + "\n")
            if self.user:
                os.chown(pwfile, pwd.getpwnam(self.user).pw_uid, -1)
            pwfile.chmod(0o600)
            args += ["--auth-host=scram-sha-256", f"--pwfile={pwfile}"]
        else:
            args += ["--auth-host=trust"]
        try:
            result = self._cmd("initdb", *args)
        finally:
            if pwfile:
                pwfile.unlink(missing_ok=True)
        if result.returncode != 0:
            raise TargetConnectionError(
                f"could not create the embedded database in {self.pgdata}: {result.stderr.strip()[-400:]}",
                title="Embedded database failed",
                hint="check free disk space and permissions, or remove the directory to start afresh.",
            )
        settings = dict(TUNING)
        settings["listen_addresses"] = "'127.0.0.1'" if self.port else "''"
        settings["unix_socket_directories"] = f"'{self.socket_dir}'"
        settings["shared_buffers"] = f"'{settings['shared_buffers']}'"
        with (self.pgdata / "postgresql.conf").open("a") as conf:
            conf.write("\n# rbmigrate embedded target\n")
            for key, value in settings.items():
                conf.write(f"{key} = {value}\n")

    def _pid(self) -> int | None:
        try:
            first = (self.pgdata / "postmaster.pid").read_text().splitlines()[0]
            pid = int(first)
        except (OSError, ValueError, IndexError):
            return None
        try:
            proc = psutil.Process(pid)
            if "postgres" in proc.name() and proc.status() != psutil.STATUS_ZOMBIE:
                return pid
        except psutil.Error:
            return None
        return None

    def running(self) -> bool:
        return self._pid() is not None

    def start(self) -> str:
        """Start (or reuse) the server and return a DSN; creates the cluster on first use."""
        if not (self.pgdata / "PG_VERSION").exists():
            self._init()
        self.socket_dir.mkdir(exist_ok=True)
        os.chmod(self.socket_dir, 0o777)
        if self.running():
            self._adopt_if_orphaned()
        else:
            port = str(self.port or 5432)
            result = self._cmd(
                "pg_ctl",
                "-D",
                str(self.pgdata),
                "-l",
                str(self.pgdata / "server.log"),
                "-w",
                "-t",
                "60",
                "-o",
                f"-p {port}",
                "start",
            )
            if result.returncode != 0:
                log = ""
                with contextlib.suppress(OSError):
                    log = (self.pgdata / "server.log").read_text()[-600:]
                raise TargetConnectionError(
                    f"the embedded PostgreSQL in {self.pgdata} did not start: "
                    f"{(result.stderr or result.stdout).strip()[-300:]} {log}",
                    title="Embedded database failed",
                    hint="another server may use the port, or the directory is damaged.",
                )
            self.started_here = True
            self._claim()
            atexit.register(self.stop_if_owner)
        self._ensure_database()
        return self.dsn()

    def _claim(self) -> None:
        self._owner_file.write_text(json.dumps({"pid": os.getpid(), "since": time.time()}))

    def _adopt_if_orphaned(self) -> None:
        """A server whose starter died (a killed run) becomes ours to stop."""
        try:
            owner = json.loads(self._owner_file.read_text())["pid"]
        except (OSError, ValueError, KeyError):
            owner = None
        if owner is None or not psutil.pid_exists(int(owner)):
            self.started_here = True
            self._claim()
            atexit.register(self.stop_if_owner)

    def stop_if_owner(self) -> None:
        if not self.started_here:
            return
        try:
            owner = json.loads(self._owner_file.read_text())["pid"]
        except (OSError, ValueError, KeyError):
            owner = os.getpid()
        if owner == os.getpid():
            self.stop()

    def stop(self, mode: str = "fast") -> None:
        if self.running():
            self._cmd("pg_ctl", "-D", str(self.pgdata), "-m", mode, "-w", "-t", "60", "stop")
        self.started_here = False
        self._owner_file.unlink(missing_ok=True)

    def restart(self) -> None:
        """Stop and start again (fault tests: a server restart in the middle of a run)."""
        log = str(self.pgdata / "server.log")  # without -l the server keeps our pipes open
        self._cmd(
            "pg_ctl",
            "-D",
            str(self.pgdata),
            "-l",
            log,
            "-m",
            "fast",
            "-w",
            "-t",
            "60",
            "-o",
            f"-p {self.port or 5432}",
            "restart",
        )

    def destroy(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.data_dir, ignore_errors=True)

    # --- connection ------------------------------------------------------------------------
    def dsn(self, database: str = DATABASE) -> str:
        if self.port:
            auth = f"postgres:{self.password}@" if self.password else "postgres@"
            return f"postgresql://{auth}127.0.0.1:{self.port}/{database}"
        return f"postgresql://postgres@/{database}?host={self.socket_dir}&port=5432"

    def _ensure_database(self) -> None:
        import psycopg

        admin = self.dsn("postgres")
        for attempt in range(50):
            try:
                with psycopg.connect(admin, autocommit=True, connect_timeout=5) as conn:
                    exists = conn.execute(
                        "SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,)
                    ).fetchone()
                    if not exists:
                        conn.execute(f'CREATE DATABASE "{DATABASE}"')
                    return
            except psycopg.OperationalError:
                if attempt == 49:
                    raise
                time.sleep(0.1)
