"""db-failover.yml against a real PostgreSQL primary/replica pair (Debian's postgresql, started
on loopback ports by the test as the `postgres` user, streaming replication via pg_basebackup).
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg2
import pytest

PG_BINS = sorted(glob.glob("/usr/lib/postgresql/*/bin"))
pytestmark = pytest.mark.skipif(
    not PG_BINS or os.geteuid() != 0,
    reason="needs Debian's postgresql and root (tests/ansible/setup.sh installs it as root)",
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Pair:
    """A primary and a streaming replica in a throwaway dir, owned by `postgres`."""

    def __init__(self):
        self.bin = Path(PG_BINS[-1])
        self.dir = Path(tempfile.mkdtemp(prefix="salve-pg-"))
        pw = pwd.getpwnam("postgres")
        os.chown(self.dir, pw.pw_uid, pw.pw_gid)
        self.primary_port, self.replica_port = free_port(), free_port()
        self.as_postgres("initdb", "-D", str(self.dir / "primary"), "-A", "trust", "-U", "postgres", "--no-sync")
        self.start("primary", self.primary_port)
        self.as_postgres("pg_basebackup", "-h", "127.0.0.1", "-p", str(self.primary_port), "-U", "postgres",
                         "-D", str(self.dir / "replica"), "-R", "-X", "stream", "--no-sync")
        self.start("replica", self.replica_port)
        self.wait_streaming()

    def as_postgres(self, tool: str, *args: str) -> str:
        p = subprocess.run(["runuser", "-u", "postgres", "--", str(self.bin / tool), *args], cwd=self.dir,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=120)
        assert p.returncode == 0, f"{tool} {args}: {p.stdout}"
        return p.stdout

    def start(self, name: str, port: int) -> None:
        opts = f"-p {port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off"
        self.as_postgres("pg_ctl", "-D", str(self.dir / name), "-o", opts, "-l", str(self.dir / f"{name}.log"),
                         "-w", "start")

    def stop(self, name: str) -> None:
        self.as_postgres("pg_ctl", "-D", str(self.dir / name), "-m", "fast", "-w", "stop")

    def query(self, port: int, sql: str):
        conn = psycopg2.connect(host="127.0.0.1", port=port, user="postgres", dbname="postgres", connect_timeout=5)
        conn.autocommit = True
        try:
            with conn.cursor() as cur:
                cur.execute(sql)
                return cur.fetchone() if cur.description else None
        finally:
            conn.close()

    def replica_in_recovery(self) -> bool:
        return self.query(self.replica_port, "SELECT pg_is_in_recovery()")[0]

    def wait_streaming(self) -> None:
        deadline = time.time() + 30
        while time.time() < deadline:
            row = self.query(self.replica_port, "SELECT status FROM pg_stat_wal_receiver")
            if row and row[0] == "streaming":
                return
            time.sleep(0.3)
        raise AssertionError("replica never started streaming")

    def inventory(self) -> str:
        return (
            "[postgres]\n"
            f"pg-primary ansible_host=127.0.0.1 postgres_port={self.primary_port} postgres_cluster=orders postgres_role=primary\n"
            f"pg-replica ansible_host=127.0.0.1 postgres_port={self.replica_port} postgres_cluster=orders postgres_role=replica\n"
        )

    def close(self) -> None:
        for name in ("primary", "replica"):
            if (self.dir / name / "postmaster.pid").exists():
                subprocess.run(["runuser", "-u", "postgres", "--", str(self.bin / "pg_ctl"), "-D", str(self.dir / name),
                                "-m", "immediate", "-w", "stop"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def pg():
    pair = Pair()
    yield pair
    pair.close()


PARAMS = {"cluster_name": "orders", "primary_host": "pg-primary", "primary_down_probes": 2, "primary_probe_interval": 1}
ENV = {"PGUSER": "postgres"}


def test_refuses_while_the_old_primary_still_accepts_connections(contract, pg):
    contract.inventory(pg.inventory())
    run = contract.run("db-failover.yml", PARAMS, env=ENV)
    assert run.rc == 4 and run.status == "refused", run.explain()
    assert run.result["failedTask"] == "Pre-check - the old primary refuses connections"
    assert "still accepts connections" in run.result["message"]
    assert pg.replica_in_recovery()


def test_dry_run_then_promotion_then_a_rerun_that_changes_nothing(contract, pg):
    contract.inventory(pg.inventory())
    pg.query(pg.primary_port, "CREATE TABLE orders AS SELECT g AS id FROM generate_series(1, 1000) g")
    time.sleep(1)
    pg.stop("primary")

    dry = contract.run("db-failover.yml", PARAMS, check=True, env=ENV)
    assert dry.rc == 0 and dry.status == "succeeded", dry.explain()
    assert "pg-replica would be promoted" in dry.output
    assert pg.replica_in_recovery(), "check mode must not promote"

    run = contract.run("db-failover.yml", PARAMS, env=ENV)
    assert run.rc == 0 and run.status == "succeeded", run.explain()
    assert "pg-replica promoted to primary" in run.output
    assert not pg.replica_in_recovery()
    assert pg.query(pg.replica_port, "SELECT count(*) FROM orders")[0] == 1000
    pg.query(pg.replica_port, "INSERT INTO orders VALUES (1001)")  # accepts writes

    again = contract.run("db-failover.yml", PARAMS, env=ENV)
    assert again.rc == 0 and again.result["stats"]["changed"] == 0, again.explain()
    assert "was already primary (nothing to do)" in again.output


def test_refuses_a_replica_with_unreplayed_wal_beyond_max_lag_bytes(contract, pg):
    contract.inventory(pg.inventory())
    pg.query(pg.replica_port, "SELECT pg_wal_replay_pause()")
    before = pg.query(pg.replica_port, "SELECT pg_last_wal_receive_lsn()::text")[0]
    pg.query(pg.primary_port, "CREATE TABLE big AS SELECT g AS id FROM generate_series(1, 50000) g")
    deadline = time.time() + 20
    while pg.query(pg.replica_port, "SELECT pg_last_wal_receive_lsn()::text")[0] == before and time.time() < deadline:
        time.sleep(0.2)
    pg.stop("primary")
    run = contract.run("db-failover.yml", {**PARAMS, "max_lag_bytes": 1024}, env=ENV)
    assert run.rc == 4 and run.status == "refused", run.explain()
    assert run.result["failedTask"] == "Pre-check - the replica has streamed and its lag is within max_lag_bytes"
    assert pg.replica_in_recovery()


def test_rejects_hosts_that_the_inventory_does_not_name_as_this_clusters_primary(contract, pg):
    contract.inventory(pg.inventory())
    for bad in ({**PARAMS, "primary_host": "pg-replica"}, {**PARAMS, "cluster_name": "billing"},
                {**PARAMS, "replica_host": "pg-primary"}):
        run = contract.run("db-failover.yml", bad, env=ENV)
        assert run.rc == 3 and run.status == "rejected", run.explain()
    assert pg.replica_in_recovery()


def test_an_unreachable_replica_fails_cleanly_without_promoting_anything(contract, pg):
    inv = pg.inventory().replace(f"postgres_port={pg.replica_port}", f"postgres_port={free_port()}")
    contract.inventory(inv)
    pg.stop("primary")
    run = contract.run("db-failover.yml", PARAMS, check=True, env=ENV)
    assert run.rc == 2 and run.status == "failed", run.explain()
    assert run.result["failedTask"] == "Read the replica's replication state"
    assert pg.replica_in_recovery()
