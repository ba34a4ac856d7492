"""Shared fixtures: the Job contract laid out in a temp dir, and helpers that run the playbooks
for real, either through the runner image's entrypoint (salve-run, exactly the container's
command) or with plain ansible-playbook.

Run through tests/ansible/run.sh, which builds the pinned venv and puts it first on PATH.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PLAYBOOKS = REPO / "playbooks"
RUNNER_DIR = REPO / "images" / "runner"
CATALOG_DIR = REPO / "examples" / "catalog"
VENV_BIN = Path(sys.executable).parent
PLAYBOOK_FILES = sorted(p.name for p in PLAYBOOKS.glob("*.yml"))

# Local targets run as the current user (root here, and there is no sudo on these machines),
# so the test inventories turn become off; the playbooks themselves keep `become: true`.
LOCALHOST = (
    f"localhost ansible_connection=local ansible_python_interpreter={VENV_BIN / 'python'} "
    "ansible_become=false\n"
)


def base_env(extra: dict | None = None) -> dict:
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(RUNNER_DIR), str(VENV_BIN), env.get("PATH", "")])
    env["ANSIBLE_NOCOLOR"] = "1"
    env.pop("SALVE_ROOT", None)
    if extra:
        env.update(extra)
    return env


@dataclass
class Run:
    """Outcome of one salve-run invocation."""

    rc: int
    output: str
    result: dict

    @property
    def status(self) -> str:
        return self.result.get("status", "")

    def explain(self) -> str:
        return f"exit {self.rc}, result {json.dumps(self.result, indent=1)}\n--- output (tail) ---\n{self.output[-4000:]}"


class Contract:
    """The files a remediation Job mounts, laid out under a temp dir (docs/job-contract.md):

        <root>/params/extravars       params Secret, key `extravars` (JSON object)
        <root>/inventory/hosts        inventory Secret, key `hosts`
        <root>/ssh/ssh-privatekey     SSH Secret, key `ssh-privatekey` (optional)
        <root>/work/                  writable emptyDir (ansible-runner's private data dir)
        <project>/                    the playbooks, baked into the image at /opt/salve/project

    `run()` executes the container's command, `salve-run`, with the Job's env. Only SALVE_ROOT,
    SALVE_PROJECT_DIR and SALVE_TERMINATION_LOG differ from a real Job: they relocate the
    mounts into the temp dir.
    """

    def __init__(self, base: Path):
        self.base = base
        self.root = base / "salve"
        self.project = base / "project"
        for sub in ("params", "inventory", "work"):
            (self.root / sub).mkdir(parents=True)
        shutil.copytree(PLAYBOOKS, self.project)
        self.termination_log = base / "termination-log"
        self.inventory(LOCALHOST)

    def params(self, params: dict | str) -> None:
        text = params if isinstance(params, str) else json.dumps(params)
        (self.root / "params" / "extravars").write_text(text)

    def inventory(self, text: str) -> None:
        (self.root / "inventory" / "hosts").write_text(text)

    def run(
        self,
        playbook: str,
        params: dict | str | None = None,
        *,
        check: bool = False,
        env: dict | None = None,
        incident: str = "inc-test",
        attempt: int = 1,
        timeout: int = 600,
    ) -> Run:
        if params is not None:
            self.params(params)
        job_env = base_env(
            {
                "SALVE_PLAYBOOK": playbook,
                "SALVE_CHECK_MODE": "true" if check else "false",
                "SALVE_INCIDENT": incident,
                "SALVE_ATTEMPT": str(attempt),
                "SALVE_ROOT": str(self.root),
                "SALVE_PROJECT_DIR": str(self.project),
                "SALVE_TERMINATION_LOG": str(self.termination_log),
            }
        )
        if env:
            job_env.update(env)
        proc = subprocess.run(
            ["salve-run"],
            env=job_env,
            cwd=self.base,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=timeout,
        )
        result_file = self.root / "work" / "result.json"
        result = json.loads(result_file.read_text()) if result_file.is_file() else {}
        return Run(proc.returncode, proc.stdout, result)


@pytest.fixture
def contract(tmp_path: Path) -> Contract:
    return Contract(tmp_path)


def ansible_playbook(playbook: str, params: dict, inventory: Path, *, check: bool = False, env: dict | None = None):
    """Runs a playbook with plain ansible-playbook (no salve-run in between)."""
    extravars = inventory.parent / "direct-extravars.json"
    extravars.write_text(json.dumps(params))
    argv = ["ansible-playbook", "-i", str(inventory), "-e", f"@{extravars}", str(PLAYBOOKS / playbook)]
    if check:
        argv += ["--check", "--diff"]
    return subprocess.run(argv, env=base_env(env), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=600)


def snapshot(root: Path) -> dict:
    """Everything about a tree a cleanup could change: path -> (type, size, mtime, inode)."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            st = p.lstat()
            out[str(p.relative_to(root))] = (st.st_mode >> 12, st.st_size, st.st_mtime_ns, st.st_ino)
    return out


def age(path: Path, days: float) -> None:
    """`touch -d '<days> days ago'`, as an operator would age a file."""
    subprocess.run(["touch", "-h", "-d", f"{days} days ago", str(path)], check=True)
