#!/bin/bash
# The README's first command: the lab on a machine of your own (Debian 12 or Ubuntu), from the checkout.
# As root, or as a user with sudo (it runs itself again through sudo: namespaces and cgroups need root).
#   1. the Debian packages the notebooks use: busybox for small root filesystems, crun and runc for the
#      runtimes notebook, qemu and cpio for the VM the first notebook boots;
#   2. .venv with the package and JupyterLab, and the kernel "Python 3 (container lab)" in it;
#   3. JupyterLab on the lecture notebooks (any further arguments go to `jupyter lab`).
# Usage: bash binder/lab.sh [--install-only] [JUPYTER LAB ARGS...]
set -uo pipefail
top=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
. "$top/binder/setup.sh"
as_root "${BASH_SOURCE[0]}" "$@"
cd "$top"

install_only=0
if [ "${1:-}" = --install-only ]; then install_only=1; shift; fi

# gcc and python3-dev: the install builds the C fast lane of the layer unpacker (pure Python without them)
apt_install python3-venv gcc python3-dev busybox-static crun runc qemu-system-x86 cpio || exit 1
make_venv lab || exit 1
.venv/bin/pycontainer install-kernel --prefix .venv || exit 1
[ $install_only -eq 1 ] && { echo "installed: bash binder/lab.sh starts JupyterLab"; exit 0; }

extra=()
# Started through sudo: a browser opened as root on your desktop would be wrong; open the URL it prints.
[ -n "${SUDO_USER:-}" ] && extra+=(--no-browser)
exec .venv/bin/jupyter lab --allow-root --ServerApp.root_dir="$top/notebooks" "${extra[@]}" "$@"
