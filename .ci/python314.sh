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

command -v debootstrap >/dev/null || { apt-get update -q; apt-get install -y -q debootstrap; }
if [[ ! -x $ROOT/usr/bin/python3.14 ]]; then
    debootstrap --variant=minbase --include=python3.14,python3.14-venv,ca-certificates \
        sid "$ROOT" http://deb.debian.org/debian >"$ROOT.debootstrap.log" 2>&1 \
        || { tail -20 "$ROOT.debootstrap.log" >&2; exit 1; }
fi

# The host's CA bundle (with its local CAs) and pip settings.
cp /etc/ssl/certs/ca-certificates.crt "$ROOT/etc/ssl/certs/ca-certificates.crt"
cp /usr/local/share/ca-certificates/*.crt "$ROOT/usr/local/share/ca-certificates/" 2>/dev/null || true
mkdir -p "$ROOT/etc/xdg/pip" "$ROOT/root/.config/pip"
for f in /etc/pip.conf /etc/xdg/pip/pip.conf /etc/xdg/pip/constraints.txt /root/.config/pip/pip.conf; do
    if [[ -f $f ]]; then cp "$f" "$ROOT$f"; fi
done

# proc, a tmpfs /dev/shm (multiprocessing's semaphores), and read-only binds of the
# repository and of the local package folders the pip settings name.
RO_DIRS=("$REPO" /opt/pypi /opt/pypi-more /opt/wheels)
unmount_all() {
    local d
    for d in "${RO_DIRS[@]}"; do
        if mountpoint -q "$ROOT$d"; then umount "$ROOT$d"; fi
    done
    if mountpoint -q "$ROOT/dev/shm"; then umount "$ROOT/dev/shm"; fi
    if mountpoint -q "$ROOT/proc"; then umount "$ROOT/proc"; fi
}
trap unmount_all EXIT
mountpoint -q "$ROOT/proc" || mount -t proc proc "$ROOT/proc"
mountpoint -q "$ROOT/dev/shm" || mount -t tmpfs -o mode=1777 tmpfs "$ROOT/dev/shm"
for d in "${RO_DIRS[@]}"; do
    [[ -d $d ]] || continue
    mkdir -p "$ROOT$d"
    if ! mountpoint -q "$ROOT$d"; then
        mount --bind "$d" "$ROOT$d"
        mount -o remount,bind,ro "$ROOT$d"
    fi
done

# A clean environment inside; Hypothesis keeps its database out of the read-only repo.
in_root() {
    chroot "$ROOT" /usr/bin/env -i HOME=/root LANG=C.UTF-8 TMPDIR=/tmp \
        PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        PIP_CERT=/etc/ssl/certs/ca-certificates.crt PIP_DEFAULT_TIMEOUT=180 \
        PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_FIND_LINKS=/opt/wheels \
        SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt SSL_CERT_DIR=/etc/ssl/certs \
        HYPOTHESIS_STORAGE_DIRECTORY=/tmp/hypothesis \
        /bin/bash -c "$1"
}

[[ -x $ROOT/opt/venv-3.14/bin/python ]] || in_root "python3.14 -m venv /opt/venv-3.14"
in_root "/opt/venv-3.14/bin/python --version"
in_root "/opt/venv-3.14/bin/pip install -q -e '$REPO[test]'"
in_root "cd '$REPO' && /opt/venv-3.14/bin/python -m pytest -x -q -p no:cacheprovider $*"
