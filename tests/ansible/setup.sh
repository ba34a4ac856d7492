#!/usr/bin/env bash
# Builds (once) the Python venv the Ansible tests and lints run in, and prints its path on the
# last line of stdout.
#
#   venv: ${SALVE_CACHE:-$HOME/.cache/salve}/venv-<sha256 of the pinned requirement files>
#
# A venv whose requirements are unchanged is reused as is (a warm run takes well under a
# second); changing a pin builds a new venv next to the old one. Only PyPI is used: Ansible
# Galaxy is not reachable here, so collections come from the `ansible` community package
# (see images/runner/requirements.txt).
#
# It also installs, when missing and when running as root with apt, the Debian packages the
# tests drive for real: postgresql (db-failover against a real primary/replica pair) and
# logrotate (rotate-logs' logrotate path). Set SALVE_NO_APT=1 to never touch apt; the tests
# that need a missing package then skip with the reason.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
req="$here/requirements.txt"
runtime_req="$root/images/runner/requirements.txt"
cache=${SALVE_CACHE:-$HOME/.cache/salve}
python=${SALVE_PYTHON:-python3}

log() { printf '[setup-ansible %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

# ansible-core 2.19 runs on a 3.11-3.13 controller.
pyver=$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
case "$pyver" in
  3.11 | 3.12 | 3.13) ;;
  *) log "need Python 3.11-3.13 for ansible-core 2.19, $python is $pyver (set SALVE_PYTHON)"; exit 1 ;;
esac

hash=$(cat "$req" "$runtime_req" <(echo "python$pyver") | sha256sum | cut -c1-16)
venv="$cache/venv-$hash"
mkdir -p "$cache"

ensure_debian_packages() {
  [ "${SALVE_NO_APT:-0}" = 1 ] && return 0
  [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null || return 0
  local missing=()
  [ -x /usr/sbin/logrotate ] || missing+=(logrotate)
  compgen -G '/usr/lib/postgresql/*/bin/pg_ctl' >/dev/null || missing+=(postgresql)
  [ ${#missing[@]} -eq 0 ] && return 0
  log "installing Debian packages: ${missing[*]}"
  # A fresh machine may have no package lists yet.
  if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2; then
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
  fi
}

build_venv() {
  if [ -f "$venv/.complete" ]; then
    return 0
  fi
  # A half-built venv (interrupted run) is thrown away: venvs cannot be moved, so they are
  # built in place and marked complete last.
  rm -rf "$venv"
  log "creating $venv (Python $pyver, cold: about a minute)"
  "$python" -m venv "$venv"
  "$venv/bin/python" -m pip install -q --disable-pip-version-check --upgrade 'pip==26.3' >&2
  (cd "$here" && "$venv/bin/python" -m pip install -q --disable-pip-version-check -r "$req" >&2)
  "$venv/bin/ansible-galaxy" collection list kubernetes.core >/dev/null 2>&1 \
    || { log "kubernetes.core is missing from the ansible package"; exit 1; }
  touch "$venv/.complete"
  log "venv ready"
}

# One builder at a time (make -j, two terminals); the others wait and reuse its result.
exec 9>"$cache/.venv-$hash.lock"
flock 9
build_venv
flock -u 9
ensure_debian_packages
echo "$venv"
