"""Params outside the schema, with shell metacharacters or with path traversal are refused by
the playbook's own first play ("Validate parameters") before anything is touched; templates
and reserved names are refused by salve-run before Ansible even starts."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from conftest import LOCALHOST, age, ansible_playbook, snapshot

MiB = 1024 * 1024


@pytest.fixture
def canary(tmp_path: Path) -> Path:
    """What a wrongly accepted run would damage: old temp files, a big log, old archives."""
    t = tmp_path / "canary"
    (t / "tmp").mkdir(parents=True)
    (t / "log").mkdir()
    (t / "tmp" / "old").write_text("old")
    age(t / "tmp" / "old", 60)
    (t / "log" / "web.log").write_bytes(b"x" * (2 * MiB))
    (t / "log" / "web.log.1.gz").write_bytes(b"x")
    age(t / "log" / "web.log.1.gz", 60)
    return t


def valid(playbook: str, canary: Path) -> dict:
    return {
        "clear-disk.yml": {"target_host": "localhost", "mountpoint": "/", "tmp_dirs": [str(canary / "tmp")],
                           "journal_dir": str(canary / "journal"), "package_cache_dirs": [str(canary / "cache")]},
        "rotate-logs.yml": {"target_host": "localhost", "service": "web", "max_size_mb": 1, "keep": 0,
                            "log_root": str(canary / "log")},
        "restart-service.yml": {"target_host": "localhost", "service": "nginx"},
        "scale-deployment.yml": {"k8s_namespace": "shop", "deployment": "checkout", "replicas": 3},
        "rollout-restart.yml": {"k8s_namespace": "shop", "deployment": "checkout"},
        "db-failover.yml": {"cluster_name": "orders", "primary_host": "pg-1"},
    }[playbook]


HOSTILE = [
    ("clear-disk.yml", "target_host", "; rm -rf /"),
    ("clear-disk.yml", "target_host", "$(id)"),
    ("clear-disk.yml", "target_host", "all"),  # a host pattern, not an inventory host
    ("clear-disk.yml", "target_host", "localhost,web-3"),
    ("clear-disk.yml", "mountpoint", "../../etc"),
    ("clear-disk.yml", "tmp_dirs", ["/etc"]),
    ("clear-disk.yml", "tmp_dirs", ["/"]),
    ("clear-disk.yml", "tmp_dirs", ["/tmp/../etc"]),
    ("clear-disk.yml", "tmp_dirs", "/tmp"),
    ("clear-disk.yml", "min_free_gb", -1),
    ("clear-disk.yml", "min_free_gb", "5"),
    ("clear-disk.yml", "max_age_days", 0),
    ("clear-disk.yml", "max_age_days", True),
    ("rotate-logs.yml", "service", "../../etc"),
    ("rotate-logs.yml", "service", "web; rm -rf /"),
    ("rotate-logs.yml", "service", "$(id)"),
    ("rotate-logs.yml", "service", "web*"),
    ("rotate-logs.yml", "log_root", "/var/log/../../etc"),
    ("rotate-logs.yml", "log_root", "relative/log"),
    ("rotate-logs.yml", "max_size_mb", 0),
    ("rotate-logs.yml", "keep", 51),
    ("rotate-logs.yml", "keep", 2.5),
    ("restart-service.yml", "service", "$(id)"),
    ("restart-service.yml", "service", "nginx;reboot"),
    ("restart-service.yml", "service", "`reboot`"),
    ("restart-service.yml", "service", "systemd-journald"),
    ("restart-service.yml", "service", "dbus.service"),
    ("restart-service.yml", "service", "nginx.socket"),
    ("restart-service.yml", "force", "yes"),
    ("restart-service.yml", "target_host", "*"),
    ("scale-deployment.yml", "k8s_namespace", "../../etc"),
    ("scale-deployment.yml", "deployment", "a;b"),
    ("scale-deployment.yml", "replicas", -1),
    ("scale-deployment.yml", "replicas", 101),
    ("scale-deployment.yml", "replicas", "3"),
    ("scale-deployment.yml", "replicas", 2.5),
    ("scale-deployment.yml", "wait_timeout", 5),
    ("rollout-restart.yml", "k8s_namespace", "$(id)"),
    ("rollout-restart.yml", "deployment", "../x"),
    ("rollout-restart.yml", "deployment", "Checkout"),
    ("rollout-restart.yml", "wait_timeout", 99999),
    ("db-failover.yml", "cluster_name", "orders; DROP TABLE x"),
    ("db-failover.yml", "primary_host", "$(id)"),
    ("db-failover.yml", "primary_host", "pg-1"),  # not in the inventory
    ("db-failover.yml", "replica_host", "../../etc"),
    ("db-failover.yml", "max_lag_bytes", -1),
    ("db-failover.yml", "primary_down_probes", 0),
]


@pytest.mark.parametrize("playbook,param,value", HOSTILE, ids=[f"{p[:-4]}-{k}={v!r}"[:70] for p, k, v in HOSTILE])
def test_the_playbook_refuses_hostile_params_before_touching_anything(contract, canary, playbook, param, value):
    before = snapshot(canary)
    params = {**valid(playbook, canary), param: value}
    run = contract.run(playbook, params)
    assert run.rc == 3 and run.status == "rejected", run.explain()
    assert run.result["failedTask"].startswith("Validate parameters"), run.explain()
    assert run.output.count("PLAY [") == 1, "no play after the validation play may start"
    assert snapshot(canary) == before


@pytest.mark.parametrize("playbook", ["clear-disk.yml", "rotate-logs.yml", "restart-service.yml",
                                      "scale-deployment.yml", "rollout-restart.yml", "db-failover.yml"])
def test_missing_required_params_are_refused(contract, canary, playbook):
    run = contract.run(playbook, {})
    assert run.rc == 3 and run.status == "rejected", run.explain()


@pytest.mark.parametrize(
    "params,why",
    [
        ({"ansible_connection": "ssh"}, "ansible_"),
        ({"ansible_become_user": "root"}, "ansible_"),
        ({"groups": ["localhost"]}, "magic variable"),
        ({"hostvars": "x"}, "magic variable"),
        ({"salve_host_re": ".*"}, "salve_"),
        ({"Service": "x"}, "not allowed"),
        ({"service": {"nested": "dict"}}, "string, number, boolean or a list"),
        ({"tmp_dirs": [["nested"]]}, "string, number, boolean or a list"),
        ({"service": "x" * 5000}, "longer than"),
        ({"service": "{{ lookup('ansible.builtin.pipe', 'id') }}"}, "Jinja"),
        ({"service": "{% if true %}x{% endif %}"}, "Jinja"),
    ],
)
def test_salve_run_refuses_reserved_names_templates_and_odd_shapes_before_ansible_starts(contract, canary, params, why):
    run = contract.run("rotate-logs.yml", {**valid("rotate-logs.yml", canary), **params})
    assert run.rc == 3 and run.status == "rejected", run.explain()
    assert why in run.result["message"]
    assert "PLAY [" not in run.output


def test_a_template_in_a_param_would_run_in_raw_ansible_so_salve_run_must_refuse_it(contract, canary, tmp_path):
    """Why salve-run checks for templates: ansible-core 2.19 trusts an extravars *file*, so a
    `{{ lookup('pipe', ...) }}` param runs as soon as the playbook mentions the param, before
    its validation can look at it. The catalog patterns forbid `{`; salve-run refuses it too."""
    marker = tmp_path / "pwned"
    hostile = {"target_host": "localhost",
               "service": "{{ lookup('ansible.builtin.pipe', 'touch " + str(marker) + "') }}nginx"}
    inventory = tmp_path / "hosts"
    inventory.write_text(LOCALHOST)
    raw = ansible_playbook("restart-service.yml", hostile, inventory, check=True)
    assert marker.exists(), "if this fails, Ansible stopped rendering extravars; keep the guard anyway\n" + raw.stdout
    marker.unlink()
    run = contract.run("restart-service.yml", hostile, check=True)
    assert run.rc == 3 and "Jinja" in run.result["message"]
    assert not marker.exists()
