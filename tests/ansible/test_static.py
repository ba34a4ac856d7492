"""Static checks: every playbook passes `ansible-playbook --syntax-check` and ansible-lint's
production profile; the Dockerfiles pass hadolint; the shell scripts pass shellcheck."""

from __future__ import annotations

import subprocess

import pytest

from conftest import PLAYBOOKS, PLAYBOOK_FILES, REPO, RUNNER_DIR, base_env


def run(argv, **kw):
    return subprocess.run(argv, env=base_env(), cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, timeout=600, **kw)


@pytest.mark.parametrize("playbook", PLAYBOOK_FILES)
def test_playbook_passes_syntax_check(playbook):
    p = run(["ansible-playbook", "--syntax-check", str(PLAYBOOKS / playbook)])
    assert p.returncode == 0, p.stdout


def test_playbooks_pass_ansible_lint_production_profile():
    p = run(["ansible-lint", "--nocolor", "-c", str(PLAYBOOKS / ".ansible-lint"), str(PLAYBOOKS)])
    assert p.returncode == 0, p.stdout
    assert "Profile 'production' was required, and it passed" in p.stdout


@pytest.mark.parametrize("dockerfile", ["images/runner/Dockerfile", "images/operator/Dockerfile"])
def test_dockerfile_passes_hadolint(dockerfile):
    p = run(["hadolint", "--failure-threshold", "info", dockerfile])
    assert p.returncode == 0, p.stdout


@pytest.mark.parametrize("script", ["tests/ansible/setup.sh", "tests/ansible/run.sh"])
def test_shell_scripts_pass_shellcheck(script):
    p = run(["shellcheck", "-x", script])
    assert p.returncode == 0, p.stdout


def test_salve_run_compiles_with_the_image_python():
    src = RUNNER_DIR / "salve-run"
    p = run(["python", "-c", f"compile(open({str(src)!r}).read(), 'salve-run', 'exec')"])
    assert p.returncode == 0, p.stdout
