#!/bin/bash
# The README's test command. Installs everything the test suite needs on a fresh Debian 12 machine and
# runs all of it, as root (as a user with sudo it runs itself again through sudo):
#   1. lint (ruff) and types (mypy --strict on the whole package),
#   2. the suite on this host (cgroup v1 or v2, whatever it boots with), rootless tests included
#      (they create a throw-away unprivileged user),
#   3. the cgroup v2 part inside a throw-away cgroup v2 VM (tests/vm/), when the host is not unified.
# Usage: bash tests/run-all.sh [extra pytest args]
#        bash tests/run-all.sh --install-only    (packages and .venv, no tests)
#        bash tests/run-all.sh --smoke           (install, then a few rootless and cgroup v2 tests:
#                                                  CI runs it from a copy of the checkout under /tmp)
set -uo pipefail
top=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
. "$top/binder/setup.sh"
as_root "${BASH_SOURCE[0]}" "$@"
cd "$top"

mode=all
case ${1:-} in --install-only|--smoke) mode=${1#--}; shift;; esac

# Debian packages the tests use (one per line: append yours).
pkgs=(
  python3-venv
  gcc          # with python3-dev: the install builds the layer unpacker's C fast lane (tests/test_tarlane.py)
  python3-dev
  busybox-static
  crun
  runc
  util-linux
  iptables
  qemu-system-x86
  linux-image-amd64
  cpio
  docker-registry
  skopeo
  umoci
  buildah
  iperf3
  docker.io
  containerd
  podman
  conmon
  catatonit
  sudo
)
apt_install "${pkgs[@]}" || exit 1
make_venv test || exit 1
if [ $mode = install-only ]; then echo "installed: bash tests/run-all.sh runs the tests"; exit 0; fi

status=0
layout=$(.venv/bin/python -c 'from pycontainer_magics.linux.cgroups import detect_layout; print(detect_layout())')

if [ $mode = smoke ]; then
  echo "== smoke: rootless tests (a throw-away user) from $top"
  PYCONTAINER_REQUIRE=rootless .venv/bin/python -m pytest -q -p no:cacheprovider -m "rootless and not slow" \
    tests/test_rootless.py || status=1
  if [ "$layout" != unified ]; then
    echo "== smoke: cgroup v2 tests in a cgroup v2 VM"
    timeout 600 tests/vm/run-cgroup2-tests tests/test_cgroups.py tests/test_containers.py \
      -k "oom_kill_counted_once or detached_container_runs" || status=1
  fi
  exit $status
fi

echo "== ruff"; .venv/bin/ruff check pycontainer_magics tests bench || status=1
echo "== mypy --strict (pyproject)"; .venv/bin/mypy pycontainer_magics || status=1

echo "== pytest on this host"
# PYCONTAINER_REQUIRE: a rootless test that cannot run here fails instead of skipping (tests/conftest.py)
PYCONTAINER_REQUIRE=rootless .venv/bin/python -m pytest tests/ --nbval-lax --nbval-sanitize-with notebooks/sanitize.cfg \
  notebooks/ "$@" || status=1

# (nbval ends each notebook's kernel with SIGKILL: what it had made ahead of time for a next cell, an empty
# cgroup, is left as after any killed kernel; the session's end prunes it: tests/suite_state.py)

if [ "$layout" != unified ]; then
  echo "== pytest -m cgroup2 in a cgroup v2 VM (this host is $layout)"
  # bounded: a guest that stops answering must not hold CI past its time
  reports=$(mktemp -d /tmp/pcm-cgroup2-reports.XXXXXX)
  CG2_REPORTS=$reports timeout 1500 tests/vm/run-cgroup2-tests || status=1
  # what ran there: a guest that ran no test (or wrote no report) fails the run
  .venv/bin/python tests/junit_summary.py "$reports/cgroup2-junit.xml" "$reports/cgroup2-notebooks-junit.xml" \
    || status=1
  rm -rf "$reports"
fi
exit $status
