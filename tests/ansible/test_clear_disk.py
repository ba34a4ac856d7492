"""clear-disk.yml executed for real on localhost, on a throwaway tree aged with `touch -d`."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from conftest import age, snapshot


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """tmp/ and vartmp/ with old and new files, a package cache, and things never to delete."""
    t = tmp_path / "tree"
    for d in ("tmp/sub/deeper", "vartmp", "cache/apt/partial", "cache/dnf/baseos-1234/packages", "journal"):
        (t / d).mkdir(parents=True)
    files = {
        "tmp/old.txt": 20, "tmp/sub/deeper/old.bin": 9, "tmp/.hidden-old": 30, "vartmp/old.log": 8,
        "tmp/new.txt": 1, "tmp/sub/fresh.txt": 0, "vartmp/six-days.txt": 6,
        "cache/apt/old.deb": 2, "cache/dnf/baseos-1234/packages/old.rpm": 2, "cache/apt/keep.txt": 40,
        "cache/apt/downloading.deb": 0,
    }
    for rel, days in files.items():
        p = t / rel
        p.write_bytes(b"x" * 4096)
        age(p, days)
    os.mkfifo(t / "tmp" / "old.fifo")
    age(t / "tmp" / "old.fifo", 40)
    (t / "tmp" / "old-link").symlink_to("/etc/hostname")
    age(t / "tmp" / "old-link", 40)
    return t


def params(tree: Path, **kw):
    p = {
        "target_host": "localhost",
        "mountpoint": "/",
        "min_free_gb": 0.001,
        "max_age_days": 7,
        "tmp_dirs": [str(tree / "tmp"), str(tree / "vartmp")],
        "journal_dir": str(tree / "journal"),
        "package_cache_dirs": [str(tree / "cache")],
    }
    p.update(kw)
    return p


def remaining(tree: Path) -> set[str]:
    return set(snapshot(tree))


def test_removes_old_temp_and_cache_files_keeps_new_ones_and_asserts_free_space(contract, tree):
    run = contract.run("clear-disk.yml", params(tree))
    assert run.rc == 0 and run.status == "succeeded", run.explain()
    left = remaining(tree)
    for gone in ("tmp/old.txt", "tmp/sub/deeper/old.bin", "tmp/.hidden-old", "vartmp/old.log",
                 "cache/apt/old.deb", "cache/dnf/baseos-1234/packages/old.rpm"):
        assert gone not in left, gone
    for kept in ("tmp/new.txt", "tmp/sub/fresh.txt", "vartmp/six-days.txt", "cache/apt/keep.txt",
                 "cache/apt/downloading.deb", "tmp/old.fifo", "tmp/old-link", "tmp/sub/deeper", "journal"):
        assert kept in left, kept
    assert "removed 6 files" in run.output
    assert "TASK [Verify - free space meets min_free_gb and min_free_percent]" in run.output


def test_a_second_run_changes_nothing(contract, tree):
    assert contract.run("clear-disk.yml", params(tree)).rc == 0
    before = snapshot(tree)
    again = contract.run("clear-disk.yml", params(tree))
    assert again.rc == 0, again.explain()
    assert again.result["stats"]["changed"] == 0, again.explain()
    assert snapshot(tree) == before


def test_check_mode_reports_but_deletes_nothing(contract, tree):
    before = snapshot(tree)
    run = contract.run("clear-disk.yml", params(tree), check=True)
    assert run.rc == 0 and run.status == "succeeded", run.explain()
    assert run.result["checkMode"] is True
    assert snapshot(tree) == before
    assert "check mode: would remove 6 files" in run.output


def test_fails_verification_when_the_space_target_cannot_be_met(contract, tree):
    st = os.statvfs(tree)
    free_gb = st.f_bavail * st.f_frsize / 2**30
    run = contract.run("clear-disk.yml", params(tree, min_free_gb=round(free_gb + 1000)))
    assert run.rc == 5 and run.status == "not_fixed", run.explain()
    assert run.result["failedTask"] == "Verify - free space meets min_free_gb and min_free_percent"
    assert "still has only" in run.result["message"]
    # It still cleaned what it safely could before saying so.
    assert "tmp/old.txt" not in remaining(tree) and "tmp/new.txt" in remaining(tree)


def test_percent_target_is_checked_too(contract, tree):
    run = contract.run("clear-disk.yml", params(tree, min_free_percent=95))
    st = os.statvfs(tree)
    if st.f_bavail / st.f_blocks >= 0.95:
        pytest.skip("this filesystem is more than 95 % free")
    assert run.rc == 5 and run.status == "not_fixed", run.explain()


def test_refuses_a_relative_mountpoint_before_touching_anything(contract, tree):
    before = snapshot(tree)
    run = contract.run("clear-disk.yml", params(tree, mountpoint="var/log"))
    assert run.rc == 3 and run.status == "rejected", run.explain()
    assert snapshot(tree) == before
