"""Real servers for the multi-replica tests: redis-server and PostgreSQL on loopback, started and stopped here.

Each helper skips the test with the reason (and the install command) when the binary is missing.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.conftest import free_port


def pg_bin(name: str) -> str | None:
    """A PostgreSQL server binary: on PATH, else the newest under /usr/lib/postgresql/*/bin."""
    found = shutil.which(name)
    if found:
        return found
    for cand in sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"), reverse=True):
        return str(cand)
    return None


class Postgres:
    """A throw-away PostgreSQL server (initdb + pg_ctl, as user ``postgres`` when run as root) that can be
    stopped and started again on the same port and data (audit durability tests)."""

    def __init__(self) -> None:
        self.initdb, self.pg_ctl = pg_bin("initdb"), pg_bin("pg_ctl")
        if not self.initdb or not self.pg_ctl:
            pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) not found: apt-get install -y postgresql")
        self.prefix: list[str] = []
        self.base = tempfile.mkdtemp(prefix="greenlist-pg-")
        if os.geteuid() == 0:  # PostgreSQL refuses to run as root
            import pwd

            try:
                pw = pwd.getpwnam("postgres")
            except KeyError:
                pytest.skip("running as root and there is no 'postgres' user to run the server as")
            os.chown(self.base, pw.pw_uid, pw.pw_gid)
            runuser = shutil.which("runuser")
            if not runuser:
                pytest.skip("runuser not found")
            self.prefix = [runuser, "-u", "postgres", "--"]
        self.data = os.path.join(self.base, "data")
        self.port = free_port()
        self.url = f"postgresql+psycopg://greenlist@127.0.0.1:{self.port}/postgres"
        subprocess.run(
            [*self.prefix, self.initdb, "-D", self.data, "-A", "trust", "-U", "greenlist", "--no-sync"],
            check=True,
            capture_output=True,
            timeout=120,
        )

    def start(self) -> None:
        """Start the server and wait until it accepts connections."""
        opts = (
            f"-p {self.port} -k {self.base} -c listen_addresses=127.0.0.1 -c fsync=off -c shared_buffers=16MB "
            "-c max_connections=100"
        )
        subprocess.run(
            [
                *self.prefix,
                self.pg_ctl,
                "-D",
                self.data,
                "-o",
                opts,
                "-l",
                os.path.join(self.base, "log"),
                "-w",
                "-t",
                "60",
                "start",
            ],
            check=True,
            capture_output=True,
            timeout=90,
        )

    def stop(self) -> None:
        """Stop the server (fast shutdown: open connections are cut)."""
        subprocess.run(
            [*self.prefix, self.pg_ctl, "-D", self.data, "-m", "fast", "-w", "stop"], capture_output=True, timeout=60
        )

    def remove(self) -> None:
        """Stop the server and delete its data."""
        self.stop()
        shutil.rmtree(self.base, ignore_errors=True)


@contextmanager
def postgres_server() -> Iterator[Postgres]:
    """A started :class:`Postgres`, removed afterwards."""
    pytest.importorskip("psycopg", reason="psycopg not installed (pip install 'psycopg[binary]')")
    pg = Postgres()
    pg.start()
    try:
        yield pg
    finally:
        pg.remove()


@contextmanager
def redis_server() -> Iterator[str]:
    """A redis-server on a free loopback port (no persistence); yields its URL."""
    server = shutil.which("redis-server")
    if server is None:
        pytest.skip("redis-server binary not found; install it (apt-get install redis-server)")
    redis = pytest.importorskip("redis", reason="python package 'redis' is needed")
    port = free_port()
    proc = subprocess.Popen(
        [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        client = redis.Redis(host="127.0.0.1", port=port)
        for _ in range(100):
            try:
                client.ping()
                break
            except redis.ConnectionError:
                time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
