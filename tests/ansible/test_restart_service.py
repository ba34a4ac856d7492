"""restart-service.yml against a real service manager.

Where PID 1 is systemd (and we are root), the test units go to /run/systemd/system and the real
systemd runs them. Where it is not (containers, CI machines here: PID 1 is the sandbox's init),
the stand-in is docker-systemctl-replacement (PyPI, pinned in requirements.txt): a `systemctl`
that really starts and stops the unit's processes from unit files under a root dir, which a
small wrapper first on PATH points at a throwaway tree. The playbook and
ansible.builtin.systemd_service run unchanged against either.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from conftest import VENV_BIN, base_env

REAL_SYSTEMD = Path("/run/systemd/system").is_dir() and os.geteuid() == 0


class ServiceManager:
    def __init__(self, tmp_path: Path):
        self.units: list[str] = []
        self.env: dict = {}
        if REAL_SYSTEMD:
            self.unit_dir = Path("/run/systemd/system")
            self.systemctl = ["systemctl"]
        else:
            self.root = tmp_path / "sysroot"
            self.unit_dir = self.root / "etc" / "systemd" / "system"
            self.unit_dir.mkdir(parents=True)
            bindir = tmp_path / "bin"
            bindir.mkdir()
            wrapper = bindir / "systemctl"
            wrapper.write_text(f'#!/bin/sh\nexec "{VENV_BIN / "systemctl3"}" --root="{self.root}" "$@"\n')
            wrapper.chmod(0o755)
            self.systemctl = [str(wrapper)]
            self.env = {"PATH": f"{bindir}{os.pathsep}{base_env()['PATH']}"}

    def unit(self, exec_start: str = "/bin/sleep 86400") -> str:
        name = f"salve-test-{uuid.uuid4().hex[:8]}"
        (self.unit_dir / f"{name}.service").write_text(
            f"[Unit]\nDescription=salve test unit\n[Service]\nType=simple\nExecStart={exec_start}\n"
            "[Install]\nWantedBy=multi-user.target\n"
        )
        self.units.append(name)
        if REAL_SYSTEMD:
            self.ctl("daemon-reload")
        return name

    def ctl(self, *args: str) -> str:
        env = {**os.environ, **self.env}
        return subprocess.run([*self.systemctl, *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True, timeout=60).stdout

    def show(self, name: str) -> dict:
        out = self.ctl("show", name, "-p", "ActiveState", "-p", "MainPID")
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    def pid(self, name: str) -> int:
        return int(self.show(name).get("MainPID") or 0)

    def cleanup(self):
        for name in self.units:
            pid = self.pid(name)
            self.ctl("stop", name)
            if pid:
                try:
                    os.kill(pid, signal.SIGKILL)  # only the unit's own process, by pid
                except ProcessLookupError:
                    pass
            if REAL_SYSTEMD:
                (self.unit_dir / f"{name}.service").unlink(missing_ok=True)
        if REAL_SYSTEMD and self.units:
            self.ctl("daemon-reload")


@pytest.fixture
def services(tmp_path):
    sm = ServiceManager(tmp_path)
    yield sm
    sm.cleanup()


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_starts_a_stopped_service_and_verifies_it_is_active(contract, services):
    unit = services.unit()
    assert services.show(unit)["ActiveState"] != "active"
    run = contract.run("restart-service.yml", {"target_host": "localhost", "service": unit}, env=services.env)
    assert run.rc == 0 and run.status == "succeeded", run.explain()
    assert services.show(unit)["ActiveState"] == "active"
    assert alive(services.pid(unit))
    assert "active (was inactive)" in run.output


def test_brings_a_crashed_service_back_with_a_new_process(contract, services):
    unit = services.unit()
    services.ctl("start", unit)
    old = services.pid(unit)
    os.kill(old, signal.SIGKILL)
    time.sleep(0.5)
    assert services.show(unit)["ActiveState"] in ("failed", "inactive")
    run = contract.run("restart-service.yml", {"target_host": "localhost", "service": f"{unit}.service"}, env=services.env)
    assert run.rc == 0, run.explain()
    new = services.pid(unit)
    assert new and new != old and alive(new)


def test_leaves_an_active_service_alone_unless_forced(contract, services):
    unit = services.unit()
    services.ctl("start", unit)
    pid = services.pid(unit)
    run = contract.run("restart-service.yml", {"target_host": "localhost", "service": unit}, env=services.env)
    assert run.rc == 0 and run.result["stats"]["changed"] == 0, run.explain()
    assert services.pid(unit) == pid
    forced = contract.run("restart-service.yml", {"target_host": "localhost", "service": unit, "force": True},
                          env=services.env)
    assert forced.rc == 0 and forced.result["stats"]["changed"] == 1, forced.explain()
    assert services.pid(unit) != pid and alive(services.pid(unit))


def test_check_mode_does_not_start_anything(contract, services):
    unit = services.unit()
    run = contract.run("restart-service.yml", {"target_host": "localhost", "service": unit}, check=True, env=services.env)
    assert run.rc == 0 and run.status == "succeeded", run.explain()
    assert services.show(unit)["ActiveState"] != "active"
    assert "would be started if not running" in run.output


def test_refuses_a_unit_that_does_not_exist(contract, services):
    run = contract.run("restart-service.yml", {"target_host": "localhost", "service": "salve-no-such-unit"},
                       env=services.env)
    assert run.rc == 4 and run.status == "refused", run.explain()
    assert run.result["failedTask"].startswith("Pre-check - the unit is installed")


def test_reports_a_service_that_will_not_stay_up(contract, services):
    unit = services.unit(exec_start="/bin/false")
    run = contract.run("restart-service.yml", {"target_host": "localhost", "service": unit, "verify_retries": 2,
                                               "verify_delay": 1}, env=services.env)
    assert run.rc in (2, 5) and run.status in ("failed", "not_fixed"), run.explain()


def test_refuses_a_host_that_is_not_in_the_inventory(contract, services):
    run = contract.run("restart-service.yml", {"target_host": "db-1", "service": services.unit()}, env=services.env)
    assert run.rc == 3 and run.status == "rejected", run.explain()
    assert "listed in the inventory" in run.result["message"]
