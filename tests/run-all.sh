#!/bin/bash
# Installs everything the test suite needs on a fresh Debian 12 machine and runs all of it, as root:
#   1. lint (ruff) and types (mypy --strict on the whole package),
#   2. the suite on this host (cgroup v1 or v2, whatever it boots with), rootless tests included
#      (they create a throw-away unprivileged user),
#   3. the cgroup v2 part inside a throw-away cgroup v2 VM (tests/vm/), when the host is not unified.
# Usage: sudo bash tests/run-all.sh [extra pytest args]
set -uo pipefail
top=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$top"
[ "$(id -u)" -eq 0 ] || { echo "run as root: sudo bash tests/run-all.sh" >&2; exit 2; }

export DEBIAN_FRONTEND=noninteractive
pkgs="python3-venv busybox-static crun runc util-linux iptables qemu-system-x86 linux-image-amd64 cpio docker-registry skopeo umoci buildah iperf3 docker.io podman conmon catatonit"
missing=$(for p in $pkgs; do dpkg -s "$p" >/dev/null 2>&1 || echo "$p"; done)
if [ -n "$missing" ]; then
  apt-get update -qq && apt-get install -y -qq --no-install-recommends $missing >/dev/null || exit 1
fi
if [ ! -x .venv/bin/python ]; then
  /usr/bin/python3 -m venv .venv || exit 1
fi
.venv/bin/pip install -q --upgrade pip >/dev/null
.venv/bin/pip install -q -e '.[test]' || exit 1

status=0
echo "== ruff"; .venv/bin/ruff check pycontainer_magics tests bench || status=1
echo "== mypy --strict (pyproject)"; .venv/bin/mypy pycontainer_magics || status=1

echo "== pytest on this host"
.venv/bin/python -m pytest tests/ --nbval-lax --nbval-sanitize-with notebooks/sanitize.cfg notebooks/ "$@" || status=1

# nbval ends each notebook's kernel with SIGKILL: what it had made ahead of time for a next cell (an empty
# cgroup) is left, as after any killed kernel; the next %load_ext prunes it, and so does this.
.venv/bin/pycontainer prune || status=1

layout=$(.venv/bin/python -c 'from pycontainer_magics.linux.cgroups import detect_layout; print(detect_layout())')
if [ "$layout" != unified ]; then
  echo "== pytest -m cgroup2 in a cgroup v2 VM (this host is $layout)"
  # bounded: a guest that stops answering must not hold CI past its time
  timeout 1500 tests/vm/run-cgroup2-tests || status=1
fi
exit $status
