"""A private PostgreSQL server for tests: ``initdb`` in a temporary folder, a free port.

The reference backend's PostgreSQL store is tested against a real server, as the
broker is: no shared system cluster, nothing left behind. A session starts one server
(a few seconds) and each test gets a fresh database on it (milliseconds). PostgreSQL
refuses to run as root, so under root the server runs as the ``postgres`` user that
Debian's package creates, in a folder of its own under /tmp.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path
from typing import Any

from kiosk import KioskError
from kiosk.sim.broker import free_port


class PostgresError(KioskError):
    """PostgreSQL is missing or would not start."""


def find_pg_bin() -> Path | None:
    """The folder of ``initdb`` and ``pg_ctl`` (Debian keeps them out of PATH, under
    /usr/lib/postgresql/<version>/bin; the newest wins), or None."""
    found = shutil.which("initdb")
    if found:
        return Path(found).parent
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                      key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0)
    return Path(versions[-1]).parent if versions else None


class PostgresServer:
    """One PostgreSQL server on 127.0.0.1, trusting local connections (a test server).

    ``durable=False`` (the default for tests) turns fsync off: a test never pulls the
    power, and the backend's exactly-once guarantee rests on transactions, not on disk
    syncs. A benchmark keeps it on."""

    host = "127.0.0.1"

    def __init__(self, durable: bool = False) -> None:
        self.bin = find_pg_bin()
        if self.bin is None:
            raise PostgresError("PostgreSQL is not installed (apt-get install postgresql)")
        self.port = free_port()
        self.durable = durable
        self.root = Path(tempfile.mkdtemp(prefix="kiosk-pg-"))
        self._user: dict[str, Any] = {}
        if os.geteuid() == 0:
            try:
                owner = pwd.getpwnam("postgres")
            except KeyError:
                raise PostgresError("running as root needs the 'postgres' user "
                                    "(apt-get install postgresql creates it)") from None
            os.chown(self.root, owner.pw_uid, owner.pw_gid)
            self._user = {"user": owner.pw_uid, "group": owner.pw_gid, "extra_groups": []}

    @property
    def data(self) -> Path:
        return self.root / "data"

    def url(self, database: str = "postgres") -> str:
        """A connection URL for ``database``."""
        return f"postgresql://postgres@{self.host}:{self.port}/{database}"

    def _run(self, *args: str) -> None:
        result = subprocess.run(args, capture_output=True, text=True, timeout=120,
                                cwd=self.root, check=False, **self._user)
        if result.returncode != 0:
            log = self.root / "server.log"
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise PostgresError(f"{Path(args[0]).name} failed: {result.stderr.strip()} {tail}")

    def start(self) -> PostgresServer:
        """Create the cluster (the first time) and start the server; returns self."""
        assert self.bin is not None
        if not self.data.exists():
            self._run(str(self.bin / "initdb"), "-D", str(self.data), "-U", "postgres",
                      "--auth=trust", "-E", "UTF8", "--no-sync", "--locale=C")
        options = (f"-p {self.port} -c listen_addresses={self.host} "
                   f"-c unix_socket_directories={self.root} -c max_connections=200")
        if not self.durable:
            options += " -c fsync=off -c full_page_writes=off"
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-l",
                  str(self.root / "server.log"), "-o", options, "-w", "-t", "60", "start")
        return self

    def stop(self) -> None:
        """Stop the server quickly (open connections are cut)."""
        assert self.bin is not None
        with contextlib.suppress(PostgresError):
            self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "immediate",
                      "-w", "stop")

    def remove(self) -> None:
        """Stop the server and delete its folder."""
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def create_database(self) -> str:
        """A new, empty database; its URL."""
        import psycopg

        name = f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def drop_database(self, url: str) -> None:
        """Drop a database made by :meth:`create_database`, cutting its connections."""
        import psycopg

        name = url.rsplit("/", 1)[-1]
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
