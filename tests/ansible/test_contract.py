"""The Job contract (docs/job-contract.md), executed: the documented mounts laid out in a temp
dir, the container's command (salve-run) run with the Job's env, ansible-runner underneath."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from conftest import LOCALHOST, RUNNER_DIR, age, base_env, snapshot


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    t = tmp_path / "tree"
    (t / "tmp").mkdir(parents=True)
    (t / "tmp" / "old").write_text("old")
    age(t / "tmp" / "old", 30)
    (t / "tmp" / "new").write_text("new")
    return t


def disk_params(tree: Path, **kw) -> dict:
    p = {"target_host": "localhost", "mountpoint": "/", "min_free_gb": 0, "tmp_dirs": [str(tree / "tmp")],
         "journal_dir": str(tree / "journal"), "package_cache_dirs": [str(tree / "cache")]}
    p.update(kw)
    return p


def test_runs_the_catalog_playbook_from_the_mounted_files_and_reports_a_result(contract, tree):
    run = contract.run("clear-disk.yml", disk_params(tree), incident="nodefs-3f2a", attempt=2)
    assert run.rc == 0, run.explain()
    assert not (tree / "tmp" / "old").exists() and (tree / "tmp" / "new").exists()
    r = run.result
    assert r["status"] == "succeeded" and r["exitCode"] == 0 and r["checkMode"] is False
    assert r["incident"] == "nodefs-3f2a" and r["attempt"] == 2 and r["playbook"] == "clear-disk.yml"
    assert r["stats"]["failures"] == 0 and r["stats"]["changed"] >= 1
    # The same JSON is the pod's termination message and the last line of the log.
    assert json.loads(contract.termination_log.read_text()) == r
    assert run.output.rstrip().splitlines()[-1] == "SALVE_RESULT " + json.dumps(r, sort_keys=True)
    # ansible-runner's artifacts sit in the writable work dir, named by incident and attempt.
    artifacts = Path(r["artifacts"])
    assert artifacts == contract.root / "work" / "runner" / "artifacts" / "nodefs-3f2a-2"
    assert (artifacts / "rc").read_text().strip() == "0"
    command = json.loads((artifacts / "command").read_text())
    # Params reach Ansible only as an extravars file: never as values on the command line.
    assert "-e" in command["command"] and command["command"][command["command"].index("-e") + 1].startswith("@")
    assert str(tree) not in " ".join(command["command"])
    assert "--check" not in command["command"]


def test_dry_run_is_check_and_diff_and_changes_nothing(contract, tree):
    before = snapshot(tree)
    run = contract.run("clear-disk.yml", disk_params(tree), check=True)
    assert run.rc == 0 and run.result["checkMode"] is True, run.explain()
    assert snapshot(tree) == before
    command = json.loads((Path(run.result["artifacts"]) / "command").read_text())["command"]
    assert "--check" in command and "--diff" in command


def test_writes_nothing_outside_the_work_dir(contract, tree):
    contract.params(disk_params(tree))
    inputs = {p: snapshot(contract.root / p) for p in ("params", "inventory")}
    project = snapshot(contract.project)
    run = contract.run("clear-disk.yml")
    assert run.rc == 0, run.explain()
    assert {p: snapshot(contract.root / p) for p in ("params", "inventory")} == inputs
    assert snapshot(contract.project) == project, "the project (image) must stay read-only"
    assert sorted(p.name for p in contract.root.iterdir()) == ["inventory", "params", "work"]


def test_the_verify_step_failing_maps_to_not_fixed(contract, tree):
    run = contract.run("clear-disk.yml", disk_params(tree, min_free_gb=10000))
    assert run.rc == 5 and run.status == "not_fixed", run.explain()


def test_an_unreachable_host_maps_to_unreachable(contract, tree):
    contract.inventory(LOCALHOST + "web-3 ansible_host=127.0.0.1 ansible_port=1 ansible_user=nobody\n")
    run = contract.run("clear-disk.yml", disk_params(tree, target_host="web-3"), env={"ANSIBLE_TIMEOUT": "5"})
    assert run.rc == 6 and run.status == "unreachable", run.explain()
    assert run.result["failedHost"] == "web-3"
    assert (tree / "tmp" / "old").exists()


@pytest.mark.skipif(not shutil.which("ssh-agent") or not shutil.which("ssh-keygen"), reason="needs openssh-client")
def test_an_ssh_key_from_the_secret_is_loaded_into_an_agent_not_left_in_a_file(contract, tree, tmp_path):
    (contract.root / "ssh").mkdir()
    key = contract.root / "ssh" / "ssh-privatekey"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "id")], check=True)
    shutil.copy(tmp_path / "id", key)
    os.chmod(key, 0o440)  # what a Secret volume with fsGroup gives: ssh itself would refuse it
    run = contract.run("clear-disk.yml", disk_params(tree))
    assert run.rc == 0, run.explain()
    assert run.result["hostKeyChecking"] == "accept-new"  # no known_hosts key in the Secret
    artifacts = Path(run.result["artifacts"])
    assert not (artifacts / "ssh_key_data").exists(), "the key fifo is removed after ssh-add"
    assert "ssh-agent" in (artifacts / "command").read_text()
    assert "PRIVATE KEY" not in run.output


@pytest.mark.parametrize(
    "env,message",
    [
        ({"SALVE_PLAYBOOK": ""}, "SALVE_PLAYBOOK is not set"),
        ({"SALVE_PLAYBOOK": "../../etc/passwd.yml"}, "not a relative .yml path"),
        ({"SALVE_PLAYBOOK": "/etc/ansible/site.yml"}, "not a relative .yml path"),
        ({"SALVE_PLAYBOOK": "no-such.yml"}, "does not exist"),
        ({"SALVE_CHECK_MODE": "maybe"}, "SALVE_CHECK_MODE must be true or false"),
    ],
)
def test_a_malformed_job_is_a_contract_error(contract, tree, env, message):
    contract.params(disk_params(tree))
    run = contract.run(env.get("SALVE_PLAYBOOK", "clear-disk.yml"), env=env)
    assert run.rc == 64 and run.status == "contract_error", run.explain()
    assert message in run.result["message"]
    assert (tree / "tmp" / "old").exists()


def test_missing_mounts_are_contract_errors(contract, tree):
    (contract.root / "inventory" / "hosts").unlink()
    run = contract.run("clear-disk.yml", disk_params(tree))
    assert run.rc == 64 and "inventory" in run.result["message"]
    contract.inventory(LOCALHOST)
    (contract.root / "params" / "extravars").unlink()
    run = contract.run("clear-disk.yml")
    assert run.rc == 64 and "extravars" in run.result["message"]
    run = contract.run("clear-disk.yml", "[1, 2]")
    assert run.rc == 64 and "JSON object" in run.result["message"]
    run = contract.run("clear-disk.yml", "target_host: localhost")
    assert run.rc == 64 and "not UTF-8 JSON" in run.result["message"]


def test_sigterm_stops_the_playbook_and_reports_terminated(contract, tree):
    """activeDeadlineSeconds and pod deletion arrive as SIGTERM to PID 1 (salve-run)."""
    contract.params({})
    # A playbook that just waits, added to this test's copy of the project.
    (contract.project / "sleep.yml").write_text(
        "- name: Sleep\n  hosts: localhost\n  gather_facts: false\n  tasks:\n"
        "    - name: Wait\n      ansible.builtin.pause:\n        seconds: 60\n"
    )
    env = base_env({
        "SALVE_PLAYBOOK": "sleep.yml", "SALVE_CHECK_MODE": "false", "SALVE_ROOT": str(contract.root),
        "SALVE_PROJECT_DIR": str(contract.project), "SALVE_TERMINATION_LOG": str(contract.termination_log),
    })
    proc = subprocess.Popen([str(RUNNER_DIR / "salve-run")], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    time.sleep(6)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 143, out
    result = json.loads((contract.root / "work" / "result.json").read_text())
    assert result["status"] == "terminated"
