# Sourced by .ci/python314.sh and .ci/python313t.sh: make a Debian root at $ROOT, enter it so
# that pip inside can install exactly as outside, and run commands in it. Needs REPO and ROOT.
#
#   make_root PKGS  debootstraps a minimal Debian unstable root with PKGS (comma-separated)
#   enter_root      copies the host's CA bundle and pip settings in; mounts proc, a tmpfs
#                   /dev/shm (multiprocessing's semaphores) and read-only binds of the
#                   repository and the local package folders the pip settings name; all
#                   unmounted when the script exits, after killing what still runs there
#   in_root CMD     runs CMD with bash in the root, in a clean environment

RO_DIRS=("$REPO" /opt/pypi /opt/pypi-more /opt/wheels)

make_root() {
    command -v debootstrap >/dev/null || { apt-get update -q; apt-get install -y -q debootstrap; }
    debootstrap --variant=minbase --include="$1" \
        sid "$ROOT" http://deb.debian.org/debian >"$ROOT.debootstrap.log" 2>&1 \
        || { tail -20 "$ROOT.debootstrap.log" >&2; return 1; }
}

# A process still running in the root (a test's hung child that outlived pytest) keeps
# its mounts busy: kill whatever has the root as its root first.
kill_left_in_root() {
    local root proc left=()
    root=$(realpath "$ROOT")
    for proc in /proc/[0-9]*; do
        [[ $(readlink "$proc/root" 2>/dev/null) == "$root" ]] && left+=("${proc#/proc/}")
    done
    ((${#left[@]})) || return 0
    echo "killing what still runs in $ROOT: ${left[*]}" >&2
    kill -KILL "${left[@]}" 2>/dev/null || true
    local tries
    for ((tries = 0; tries < 50; tries++)); do
        kill -0 "${left[@]}" 2>/dev/null || return 0
        sleep 0.1
    done
}

unmount_all() {
    local d
    kill_left_in_root
    for d in "${RO_DIRS[@]}"; do
        if mountpoint -q "$ROOT$d"; then umount "$ROOT$d"; fi
    done
    if mountpoint -q "$ROOT/dev/shm"; then umount "$ROOT/dev/shm"; fi
    if mountpoint -q "$ROOT/proc"; then umount "$ROOT/proc"; fi
}

enter_root() {
    # The host's CA bundle (with its local CAs) and pip settings.
    cp /etc/ssl/certs/ca-certificates.crt "$ROOT/etc/ssl/certs/ca-certificates.crt"
    cp /usr/local/share/ca-certificates/*.crt "$ROOT/usr/local/share/ca-certificates/" 2>/dev/null || true
    mkdir -p "$ROOT/etc/xdg/pip" "$ROOT/root/.config/pip"
    local f d
    for f in /etc/pip.conf /etc/xdg/pip/pip.conf /etc/xdg/pip/constraints.txt /root/.config/pip/pip.conf; do
        if [[ -f $f ]]; then cp "$f" "$ROOT$f"; fi
    done
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
}

# A clean environment inside; Hypothesis keeps its database out of the read-only repo.
in_root() {
    chroot "$ROOT" /usr/bin/env -i HOME=/root LANG=C.UTF-8 TMPDIR=/tmp \
        PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        DEBIAN_FRONTEND=noninteractive \
        PIP_CERT=/etc/ssl/certs/ca-certificates.crt PIP_DEFAULT_TIMEOUT=180 \
        PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_FIND_LINKS=/opt/wheels \
        SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt SSL_CERT_DIR=/etc/ssl/certs \
        HYPOTHESIS_STORAGE_DIRECTORY=/tmp/hypothesis \
        /bin/bash -c "$1"
}
