#!/usr/bin/env bash
# The test suite on CPython 3.14, which pyenv does not have here: a Debian unstable root made
# with debootstrap (python3.14 from Debian), a venv in it with batchlog[test] installed
# editable from a read-only bind mount of the repository, then pytest.
#
#   ROOT=/path/to/root bash .ci/python314.sh [pytest arguments]
#
# Needs root (debootstrap, mount, chroot). The host's CA bundle and pip settings are copied
# in, and the local package folders they point at (/opt/pypi*, /opt/wheels) bind-mounted, so
# pip inside installs exactly as outside. Everything mounted is unmounted on exit.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ROOT=${ROOT:?set ROOT to a directory for the Debian root}
export DEBIAN_FRONTEND=noninteractive

# shellcheck source=.ci/debian_root.sh
source "$REPO/.ci/debian_root.sh"
[[ -x $ROOT/usr/bin/python3.14 ]] || make_root python3.14,python3.14-venv,ca-certificates
enter_root

[[ -x $ROOT/opt/venv-3.14/bin/python ]] || in_root "python3.14 -m venv /opt/venv-3.14"
in_root "/opt/venv-3.14/bin/python --version"
in_root "/opt/venv-3.14/bin/pip install -q -e '$REPO[test]'"
in_root "cd '$REPO' && /opt/venv-3.14/bin/python -m pytest -x -q -p no:cacheprovider $*"
