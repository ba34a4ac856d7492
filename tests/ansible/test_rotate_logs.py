"""rotate-logs.yml executed for real on localhost, on a throwaway /var/log-like tree."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from conftest import age, snapshot

MiB = 1024 * 1024


@pytest.fixture
def logs(tmp_path: Path) -> Path:
    root = tmp_path / "log"
    (root / "web").mkdir(parents=True)
    (root / "web.log").write_bytes(b"line\n" * (3 * MiB // 5))  # 3 MiB: oversized
    (root / "web" / "error.log").write_bytes(b"e" * (2 * MiB))  # oversized
    (root / "web" / "access.log").write_bytes(b"small\n")  # under the limit
    for i in range(1, 5):  # web.log.1.gz (1 day) .. web.log.4.gz (4 days)
        p = root / f"web.log.{i}.gz"
        p.write_bytes(b"old")
        age(p, i)
    (root / "web" / "error.log.1").write_bytes(b"old")
    age(root / "web" / "error.log.1", 2)
    (root / "web-other.log").write_bytes(b"o" * (2 * MiB))  # another service: never touched
    (root / "other.log.1").write_bytes(b"o")
    age(root / "other.log.1", 60)
    return root


def params(logs: Path, **kw):
    p = {"target_host": "localhost", "service": "web", "max_size_mb": 1, "keep": 2, "log_root": str(logs),
         "logrotate_conf_dir": str(logs.parent / "logrotate.d"), "logrotate_state": str(logs.parent / "lr.status")}
    p.update(kw)
    return p


def test_truncates_oversized_logs_in_place_and_keeps_the_newest_archives(contract, logs):
    inode = (logs / "web.log").stat().st_ino
    run = contract.run("rotate-logs.yml", params(logs))
    assert run.rc == 0 and run.status == "succeeded", run.explain()
    assert (logs / "web.log").stat().st_size == 0
    assert (logs / "web.log").stat().st_ino == inode, "must truncate in place (open file handles)"
    assert (logs / "web" / "error.log").stat().st_size == 0
    assert (logs / "web" / "access.log").read_bytes() == b"small\n"
    archives = sorted(p.name for p in logs.glob("web.log.*"))
    # keep=2: the archive just made (web.log.<timestamp>.gz) and the newest old one.
    assert len(archives) == 2 and "web.log.1.gz" in archives, archives
    new = [a for a in archives if a != "web.log.1.gz"][0]
    assert new.endswith(".gz") and (logs / new).stat().st_size > 0
    err_archives = sorted(p.name for p in (logs / "web").glob("error.log.*"))
    assert len(err_archives) == 2 and "error.log.1" in err_archives
    # other services' logs are untouched
    assert (logs / "web-other.log").stat().st_size == 2 * MiB
    assert (logs / "other.log.1").exists()


def test_a_second_run_changes_nothing(contract, logs):
    assert contract.run("rotate-logs.yml", params(logs)).rc == 0
    before = snapshot(logs)
    again = contract.run("rotate-logs.yml", params(logs))
    assert again.rc == 0 and again.result["stats"]["changed"] == 0, again.explain()
    assert snapshot(logs) == before


def test_keep_zero_truncates_without_archiving(contract, logs):
    run = contract.run("rotate-logs.yml", params(logs, keep=0))
    assert run.rc == 0, run.explain()
    assert (logs / "web.log").stat().st_size == 0
    assert not list(logs.glob("web.log.*")) and not list((logs / "web").glob("error.log.*"))


def test_check_mode_changes_nothing(contract, logs):
    before = snapshot(logs)
    run = contract.run("rotate-logs.yml", params(logs), check=True)
    assert run.rc == 0 and run.result["checkMode"] is True, run.explain()
    assert snapshot(logs) == before
    assert "would truncate 2 oversized log(s), would remove 2 old rotated file(s)" in run.output


@pytest.mark.skipif(not Path("/usr/sbin/logrotate").exists(), reason="logrotate is not installed (tests/ansible/setup.sh installs it as root)")
def test_forces_the_services_logrotate_config_when_there_is_one(contract, logs):
    conf_dir = logs.parent / "logrotate.d"
    conf_dir.mkdir()
    (conf_dir / "web").write_text(
        f"{logs}/web/access.log {{\n  rotate 3\n  missingok\n  notifempty\n  nocompress\n}}\n"
    )
    os.chmod(conf_dir / "web", 0o644)
    run = contract.run("rotate-logs.yml", params(logs))
    assert run.rc == 0, run.explain()
    assert "TASK [Force a rotation with the service's logrotate config]" in run.output
    assert (logs / "web" / "access.log.1").read_bytes() == b"small\n"  # rotated by logrotate --force
    assert (logs / "lr.status").exists() or (logs.parent / "lr.status").exists()


def test_refuses_a_missing_log_root(contract, logs):
    shutil.rmtree(logs)
    run = contract.run("rotate-logs.yml", params(logs))
    assert run.rc == 4 and run.status == "refused", run.explain()
    assert run.result["failedTask"] == "Pre-check - log_root is a directory"
