#!/usr/bin/env bash
# The test suite on a free-threaded (no-GIL) CPython built from Debian's source packages in a
# Debian unstable root (made with debootstrap if ROOT has none), then pytest with PYTHON_GIL=0.
#
#   ROOT=/path/to/root bash .ci/python313t.sh [pytest arguments]
#
# .ci/run runs it in a copy of its 3.14 root, beside the pyenv Pythons. Building the
# interpreter takes about 4 minutes on a quiet 2-CPU machine (make -j2), reusing it seconds.
# FT_TIMEOUT (seconds, default 1800) bounds the test run.
#
# Debian ships no free-threaded interpreter, and its mirror here serves the source of
# python3.14 (and 3.15) as 404: the first of FT_SOURCES that downloads is built, today
# trixie's python3.13 (3.13.5, upstream's tarball without Debian's patches), so the
# interpreter is python3.13t. It is built once, into $ROOT/opt/python3.Nt, and reused.
#
# On 3.13t two test dependencies have no build: psycopg-binary (wheels only, none for
# cp313t), so the pure-Python psycopg runs on Debian's libpq5 (against Debian's PostgreSQL
# server, so no PostgreSQL test skips); orjson (PyO3 builds no
# free-threaded 3.13), so tests/test_encode_fast.py skips. The test requirements are read
# from pyproject.toml's test extra with those two changed.
#
# Needs root (debootstrap, mount, chroot). As in .ci/python314.sh, the host's CA bundle and
# pip settings are copied in and the local package folders bind-mounted; everything mounted
# is unmounted on exit.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ROOT=${ROOT:?set ROOT to a directory for the Debian root}
FT_SOURCES=${FT_SOURCES:-"python3.14 python3.13/trixie"}
export DEBIAN_FRONTEND=noninteractive
started=$SECONDS
step() { echo "python-ft: $1 ($((SECONDS - started)) s)"; }

# shellcheck source=.ci/debian_root.sh
source "$REPO/.ci/debian_root.sh"
if [[ ! -x $ROOT/usr/bin/apt-get ]]; then
    make_root ca-certificates
    step "debootstrap"
fi
enter_root

built() {  # the free-threaded interpreter already in the root, if any
    local p
    for p in "$ROOT"/opt/python3.*t/bin/python3.*t; do
        if [[ -x $p && ! -L $p ]]; then echo "${p#"$ROOT"}"; return; fi
    done
}

PY=$(built)
if [[ -z $PY ]]; then
    # Sources of unstable and trixie; the snapshot's Release files are past Valid-Until.
    for suite in sid trixie; do
        if ! grep -rqsE "^deb-src .* $suite main" "$ROOT/etc/apt/sources.list" "$ROOT/etc/apt/sources.list.d"; then
            echo "deb-src http://deb.debian.org/debian $suite main"
        fi
    done >"$ROOT/etc/apt/sources.list.d/batchlog-ft-src.list"
    in_root "apt-get -q -o Acquire::Check-Valid-Until=false update >/dev/null"
    in_root "nice -n 19 apt-get install -y -q --no-install-recommends build-essential \
        pkg-config dpkg-dev xz-utils libssl-dev libffi-dev zlib1g-dev libsqlite3-dev \
        libbz2-dev liblzma-dev libreadline-dev libncurses-dev uuid-dev libgdbm-dev \
        libexpat1-dev libzstd-dev >/dev/null"
    step "build dependencies installed"
    src=/usr/src/batchlog-ft
    in_root "rm -rf $src && mkdir -p $src"
    got=
    for spec in $FT_SOURCES; do
        if in_root "cd $src && apt-get source -q --download-only '$spec' >/dev/null 2>&1"; then
            got=$spec
            break
        fi
        echo "python-ft: Debian serves no source for $spec" >&2
        in_root "rm -f $src/*"
    done
    [[ -n $got ]] || { echo "python-ft: none of $FT_SOURCES could be downloaded" >&2; exit 1; }
    in_root "cd $src && tar xf \$(ls *.orig.tar.* | grep -v '\\.asc\$')"
    tree=$(cd "$ROOT$src" && echo Python-3.*)
    version=${tree#Python-}
    prefix=/opt/python${version%.*}t
    step "source of $got ($tree) fetched"
    in_root "cd $src/$tree && nice -n 19 ./configure -q --disable-gil --prefix=$prefix >/dev/null"
    step "configured"
    in_root "cd $src/$tree && nice -n 19 make -s -j$(nproc) >$src/make.log 2>&1" \
        || { tail -30 "$ROOT$src/make.log" >&2; exit 1; }
    step "built"
    in_root "cd $src/$tree && nice -n 19 make -s install >$src/install.log 2>&1" \
        || { tail -30 "$ROOT$src/install.log" >&2; exit 1; }
    in_root "rm -rf $src"
    PY=$(built)
    step "installed $PY"
fi
# PostgreSQL's server for the sink tests, and the libpq the pure-Python psycopg loads.
if ! compgen -G "$ROOT/usr/lib/postgresql/*/bin/initdb" >/dev/null || [[ ! -e $ROOT/usr/share/doc/libpq5 ]]; then
    in_root "apt-get -q -o Acquire::Check-Valid-Until=false update >/dev/null"
    in_root "nice -n 19 apt-get install -y -q --no-install-recommends postgresql libpq5 >/dev/null"
    step "postgresql installed"
fi
minor=$(in_root "$PY -c 'import sys; print(sys.version_info[1])'")
VENV=/opt/venv-3.${minor}t

# The test extra, expanded; psycopg without [binary] (no free-threaded wheels), and no
# orjson on 3.13 (it cannot be built there).
reqs=/tmp/batchlog-ft-requirements.txt
[[ -x $ROOT$VENV/bin/python ]] || in_root "$PY -m venv $VENV"
in_root "$VENV/bin/python - '$REPO/pyproject.toml' >$reqs" <<'EOF'
import re
import sys
import tomllib

with open(sys.argv[1], "rb") as f:
    project = tomllib.load(f)["project"]
extras, seen = project["optional-dependencies"], set()


def expand(extra):
    if extra not in seen:
        seen.add(extra)
        for req in extras[extra]:
            own = re.fullmatch(rf"{project['name']}\[([^\]]+)\]", req.replace(" ", ""))
            yield from (r for e in own.group(1).split(",") for r in expand(e)) if own else [req]


for req in dict.fromkeys(expand("test")):
    if req.startswith("orjson") and sys.version_info < (3, 14):
        continue
    print(re.sub(r"^psycopg\[binary\]", "psycopg", req))
EOF
in_root "nice -n 19 $VENV/bin/pip install -q --prefer-binary -r $reqs"
in_root "nice -n 19 $VENV/bin/pip install -q --no-deps -e '$REPO'"
step "venv $VENV ready"
in_root "$VENV/bin/python -VV"
# No extension module may turn the GIL back on.
in_root "cd /tmp && PYTHON_GIL=0 $VENV/bin/python -c 'import sys, batchlog, batchlog.sinks; \
    sys.exit(\"the GIL is enabled\" if sys._is_gil_enabled() else 0)'"
in_root "cd '$REPO' && PYTHON_GIL=0 BATCHLOG_REQUIRE_POSTGRES=1 timeout ${FT_TIMEOUT:-1800} $VENV/bin/python -X faulthandler \
    -m pytest -x -q -p no:cacheprovider $*"
