# Sourced by the README's two commands (binder/lab.sh, tests/run-all.sh): what Binder's files do on
# mybinder.org, done on a machine of your own. Functions only; nothing runs on sourcing.

# Runs the calling script again as root when it is not: through sudo when there is one. A root shell
# (a container, a CI runner, a lab VM) often has no sudo and needs none.
#   as_root "$BASH_SOURCE" "$@"
as_root() {
  [ "$(id -u)" -eq 0 ] && return 0
  local script; script=$(realpath "$1"); shift
  if command -v sudo >/dev/null 2>&1; then
    echo "$(basename "$script"): namespaces, cgroups and packages need root: running it through sudo" >&2
    exec sudo -- bash "$script" "$@"
  fi
  echo "$(basename "$script") needs root (namespaces, cgroups, packages): run it as root, or install sudo" >&2
  exit 2
}

# Installs the Debian packages given that are missing (one apt-get call, none when all are there).
apt_install() {
  local missing p
  missing=$(for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || echo "$p"; done)
  [ -z "$missing" ] && return 0
  export DEBIAN_FRONTEND=noninteractive
  # shellcheck disable=SC2086 # one package per word
  apt-get update -qq && apt-get install -y -qq --no-install-recommends $missing >/dev/null
}

# The interpreter to make .venv with: $PYTHON, else Debian's python3, else the first python3 on PATH
# (pyenv, a distribution without 3.11), whichever is 3.11+ and has venv.
pick_python() {
  local py
  for py in ${PYTHON:-} /usr/bin/python3 python3; do
    if "$py" -c 'import sys, venv, ensurepip; sys.exit(sys.version_info < (3, 11))' >/dev/null 2>&1; then
      echo "$py"; return 0
    fi
  done
  echo "no python3 3.11+ with venv found: apt-get install python3-venv, or set PYTHON" >&2
  return 1
}

# .venv in the checkout (kept when there is one, whichever interpreter made it) with the package
# installed editable with the extras given ("lab", "test"). The build writes nothing into the checkout.
#   make_venv lab
make_venv() {
  if [ ! -x .venv/bin/python ]; then
    local py; py=$(pick_python) || return 1
    "$py" -m venv .venv || return 1
  fi
  .venv/bin/pip install -q --upgrade pip >/dev/null
  .venv/bin/pip install -q -e ".[$1]" || return 1
  # (pip -q hides the build's own warning)
  .venv/bin/python -c 'from pycontainer_magics.images import native; native.lane or print("note: the C fast lane of '\
'the layer unpacker was not built (a C compiler and Python headers: apt-get install gcc python3-dev, then this '\
'again); layers unpack the slower Python way")'
}
