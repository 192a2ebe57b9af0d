#!/usr/bin/env bash
# Install Autobahn|Testsuite's `wstest` (25.10.1, Python 2.7 only) into a cache dir.
#
# usage: conformance/setup.sh
#   Prints the path of the wstest wrapper as its last stdout line (progress goes
#   to stderr).  Idempotent: a completed install is only checked, not redone;
#   concurrent calls are serialized with flock; an interrupted install is
#   discarded and rebuilt on the next call.
#
# environment:
#   AUTOBAHN_CACHE          cache dir (default /tmp/websock-actors-autobahn)
#   PYTHON                  host Python 3 used to fetch pip for Python 2 (default python3)
#   AUTOBAHN_DEBIAN_MIRROR  Debian archive URL to fetch bullseye packages from
#                           (default: the Debian mirrors in this machine's apt sources)
#
# Debian 12 ships no Python 2, so the interpreter comes from Debian 11 (bullseye):
# its python2.7 .debs are fetched with `apt-get download` through a private apt
# configuration under the cache dir (the machine's own apt/dpkg state is not
# used) and unpacked with `dpkg-deb -x`.  pip 20.3.4 (the last for Python 2) is
# bootstrapped from PyPI, then `autobahntestsuite` is pip-installed from PyPI,
# pinned by constraints-py27.txt.  Some packages compile C code, so gcc is
# apt-installed when missing (needs root).  Tested on Debian 12 amd64.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CACHE="${AUTOBAHN_CACHE:-/tmp/websock-actors-autobahn}"
HOST_PY="${PYTHON:-python3}"
# a relative path (e.g. .venv/bin/python) must survive the cd below; symlinks are kept
[[ "$HOST_PY" != */* ]] || HOST_PY="$(cd "$(dirname "$HOST_PY")" && pwd)/$(basename "$HOST_PY")"
CONSTRAINTS="$HERE/constraints-py27.txt"
SUITE_VERSION="25.10.1"
BULLSEYE_DEBS=(python2.7-minimal libpython2.7-minimal libpython2.7-stdlib libpython2.7
               libpython2.7-dev libssl1.1 libffi7)
PY2_BOOTSTRAP=(pip==20.3.4 setuptools==44.0.0 wheel==0.37.1)
LAYOUT_VERSION=1   # bump when this script changes what it installs

# stdout is reserved for the final path; everything else goes to stderr.
exec 3>&1 1>&2
say() { echo "[conformance/setup] $*"; }
die() { say "error: $*"; exit 1; }

# Long steps run in the background so that SIGINT/SIGTERM stop them at once
# (bash runs traps only after a foreground child has exited).
CHILD=""
bounded() {  # bounded SECONDS COMMAND... : COMMAND under `timeout`, interruptible
    local limit="$1" rc=0
    shift
    timeout "$limit" "$@" &
    CHILD=$!
    wait "$CHILD" || rc=$?
    CHILD=""
    return "$rc"
}
trap 'if [[ -n "$CHILD" ]]; then kill -TERM "$CHILD" 2>/dev/null; fi; say "interrupted"; exit 130' INT TERM

mkdir -p "$CACHE"
CACHE="$(cd "$CACHE" && pwd)"

# One environment per (constraints, package list, layout): editing the pins builds
# a new tree next to the old one instead of patching it in place.
KEY="$( { cat "$CONSTRAINTS"; echo "${BULLSEYE_DEBS[*]} ${PY2_BOOTSTRAP[*]} $LAYOUT_VERSION"; } \
        | sha256sum | cut -c1-12)"
ENV_DIR="$CACHE/py27-$KEY"
DONE_MARK="$ENV_DIR/.complete"
BIN="$CACHE/bin"
WSTEST="$BIN/wstest"

exec 9>"$CACHE/.setup.lock"
flock -w 1800 9 || die "timed out waiting for $CACHE/.setup.lock"

usable() {
    [[ -f "$DONE_MARK" && -x "$WSTEST" ]] || return 1
    grep -qF "$ENV_DIR/" "$WSTEST" || return 1
    timeout 60 "$WSTEST" --autobahnversion 2>/dev/null | grep -qF "AutobahnTestSuite $SUITE_VERSION"
}

if usable; then
    echo "$WSTEST" >&3
    exit 0
fi

say "installing Autobahn|Testsuite $SUITE_VERSION (Python 2.7) into $ENV_DIR"
T0=$SECONDS
rm -rf "$ENV_DIR"

# ---- host tools -------------------------------------------------------------------
for tool in apt-get dpkg-deb sha256sum timeout flock; do
    command -v "$tool" >/dev/null || die "'$tool' is required (this script targets Debian)"
done
missing_pkgs=()
# Python 2.7's distutils compiles with "<triplet>-gcc", as Debian's gcc package provides
command -v "$(uname -m)-linux-gnu-gcc" >/dev/null || missing_pkgs+=(gcc)
[[ -e /usr/include/stdio.h ]] || missing_pkgs+=(libc6-dev)
# shared libraries of the Python 2.7 stdlib that minimal images may lack
LDCONFIG="$(command -v ldconfig || echo /sbin/ldconfig)"
host_lib() { "$LDCONFIG" -p | grep -qF "$1 "; }
host_lib libexpat.so.1 || missing_pkgs+=(libexpat1)
host_lib libbz2.so.1.0 || missing_pkgs+=(libbz2-1.0)
host_lib libz.so.1 || missing_pkgs+=(zlib1g)
HOST_PIP=()
for py in "$HOST_PY" python3; do
    if "$py" -m pip --version >/dev/null 2>&1; then HOST_PIP=("$py" -m pip); break; fi
done
((${#HOST_PIP[@]})) || missing_pkgs+=(python3-pip)
if ((${#missing_pkgs[@]})); then
    [[ $(id -u) -eq 0 ]] || die "missing host packages: ${missing_pkgs[*]} (install them, or run as root)"
    say "apt-get install ${missing_pkgs[*]}"
    bounded 900 apt-get update -q
    bounded 1200 env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
        "${missing_pkgs[@]}"
    ((${#HOST_PIP[@]})) || HOST_PIP=(python3 -m pip)
fi

# ---- 1. CPython 2.7 from Debian bullseye, through a private apt configuration ---------
APT_DIR="$CACHE/apt"
DEB_DIR="$CACHE/debs"
mkdir -p "$APT_DIR/lists/partial" "$APT_DIR/archives/partial" "$DEB_DIR"
touch "$APT_DIR/dpkg-status"
APT_OPTS=(-o "Dir::Etc::SourceList=$APT_DIR/sources.list" -o "Dir::Etc::SourceParts=/dev/null"
          -o "Dir::State::Lists=$APT_DIR/lists" -o "Dir::State::Status=$APT_DIR/dpkg-status"
          -o "Dir::Cache=$APT_DIR" -o "Dir::Cache::Archives=$APT_DIR/archives"
          -o "Dir::Cache::pkgcache=" -o "Dir::Cache::srcpkgcache=" -o "APT::Sandbox::User=root")

# Debian archive base URLs configured on this machine (one-line and deb822 formats).
machine_mirrors() {
    {
        grep -hsE '^[[:space:]]*URIs:' /etc/apt/sources.list.d/*.sources | sed -E 's/^[^:]*://' | tr -s ' \t' '\n'
        grep -hsE '^[[:space:]]*deb[[:space:]]' /etc/apt/sources.list /etc/apt/sources.list.d/*.list \
            | sed -E 's/\[[^]]*\]//' | awk '{print $2}'
    } | sed -E 's:/+$::' | grep -E '^(https?|file)://.+/debian(-security)?$' | sort -u || true
}

write_sources() {  # write_sources URL... : one bullseye entry per archive
    local url
    : >"$APT_DIR/sources.list"
    for url in "$@"; do
        case "$url" in
            */debian-security) echo "deb $url bullseye-security main" ;;
            *) echo "deb $url bullseye main" ;;
        esac
    done >>"$APT_DIR/sources.list"
}

fetch_debs() {
    rm -f "$DEB_DIR"/*.deb
    bounded 600 apt-get "${APT_OPTS[@]}" -q update || return 1
    # apt-get download saves into the current directory
    local rc=0
    pushd "$DEB_DIR" >/dev/null
    bounded 600 apt-get "${APT_OPTS[@]}" -q download "${BULLSEYE_DEBS[@]}" || rc=$?
    popd >/dev/null
    return "$rc"
}

if [[ -n "${AUTOBAHN_DEBIAN_MIRROR:-}" ]]; then
    mapfile -t MIRRORS < <(echo "${AUTOBAHN_DEBIAN_MIRROR%/}")
else
    mapfile -t MIRRORS < <(machine_mirrors)
    ((${#MIRRORS[@]})) || MIRRORS=(http://deb.debian.org/debian http://deb.debian.org/debian-security)
fi
write_sources "${MIRRORS[@]}"
say "fetching bullseye packages from: ${MIRRORS[*]}"
if ! fetch_debs; then
    # bullseye will eventually move to archive.debian.org
    say "retrying from http://archive.debian.org/debian"
    write_sources http://archive.debian.org/debian
    APT_OPTS+=(-o "Acquire::Check-Valid-Until=false")   # archived releases have expired Release files
    fetch_debs || die "could not download ${BULLSEYE_DEBS[*]} from Debian bullseye"
fi

mkdir -p "$ENV_DIR"
for deb in "$DEB_DIR"/*.deb; do
    dpkg-deb -x "$deb" "$ENV_DIR"
done
PY2="$ENV_DIR/usr/bin/python2.7"
LIBDIRS=("$ENV_DIR"/usr/lib/*-linux-gnu)
[[ -x "$PY2" && -d "${LIBDIRS[0]}" ]] || die "unexpected layout of the unpacked packages in $ENV_DIR"
LIBDIR="${LIBDIRS[0]}"

export LD_LIBRARY_PATH="$LIBDIR"
export PYTHONNOUSERSITE=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1
export PIP_CACHE_DIR="$CACHE/pip-cache"
unset PYTHONHOME PYTHONPATH PIP_REQUIRE_VIRTUALENV PIP_CONSTRAINT PIP_INDEX_URL
"$PY2" -c 'import ssl, hashlib, ctypes, zlib, bz2, pyexpat, json' \
    || die "the unpacked python2.7 cannot load its standard library"

# ---- 2. pip / setuptools / wheel for Python 2 (fetched with the host's pip) ---------
WHEELS="$CACHE/py2-wheels"
mkdir -p "$WHEELS"
say "downloading ${PY2_BOOTSTRAP[*]} with ${HOST_PIP[*]}"
bounded 600 "${HOST_PIP[@]}" download -q --no-deps --only-binary=:all: -d "$WHEELS" "${PY2_BOOTSTRAP[@]}"
PIP_WHEEL=("$WHEELS"/pip-20.3.4-*.whl)
[[ -f "${PIP_WHEEL[0]}" ]] || die "pip wheel missing from $WHEELS"
# A pip wheel can run itself: python WHEEL/pip install ...
bounded 600 "$PY2" "${PIP_WHEEL[0]}/pip" install -q --no-warn-script-location \
    --no-index --find-links "$WHEELS" "${PY2_BOOTSTRAP[@]}"

# ---- 3. the suite (Twisted, wsaccel, ujson, ... are compiled against the unpacked headers)
export CPATH="$ENV_DIR/usr/include/python2.7:$ENV_DIR/usr/include"
say "pip install autobahntestsuite==$SUITE_VERSION (log: $CACHE/pip-install.log)"
if ! bounded 1800 "$PY2" -m pip install --no-warn-script-location -c "$CONSTRAINTS" \
        "autobahntestsuite==$SUITE_VERSION" >"$CACHE/pip-install.log" 2>&1; then
    tail -n 40 "$CACHE/pip-install.log"
    die "pip install failed"
fi
WSTEST_SCRIPT="$ENV_DIR/usr/local/bin/wstest"
[[ -f "$WSTEST_SCRIPT" ]] || die "pip did not install $WSTEST_SCRIPT"
"$PY2" -c 'import autobahntestsuite.fuzzing, autobahntestsuite.case' \
    || die "autobahntestsuite does not import"

# ---- 4. wrappers (written to temp files, then renamed into place) --------------------
mkdir -p "$BIN"
make_wrapper() {  # make_wrapper NAME COMMAND...
    local name="$1" tmp
    shift
    tmp="$(mktemp "$BIN/.$name.XXXXXX")"
    cat >"$tmp" <<EOF
#!/usr/bin/env bash
# generated by websock-actors conformance/setup.sh
export LD_LIBRARY_PATH="$LIBDIR\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}"
export PYTHONNOUSERSITE=1
unset PYTHONHOME PYTHONPATH
exec $* "\$@"
EOF
    chmod 755 "$tmp"
    mv -f "$tmp" "$BIN/$name"
}
make_wrapper python2 "\"$PY2\""
make_wrapper wstest "\"$PY2\" \"$WSTEST_SCRIPT\""

"$BIN/python2" -m pip freeze >"$ENV_DIR/pip-freeze.txt" 2>/dev/null || true
touch "$DONE_MARK"
usable || die "the installed wstest does not run"

# environments built from older pins are no longer referenced by the wrappers
for old in "$CACHE"/py27-*; do
    [[ "$old" == "$ENV_DIR" ]] || rm -rf "$old"
done
say "done in $((SECONDS - T0))s: $("$WSTEST" --autobahnversion | tr '\n' ' ')"
echo "$WSTEST" >&3
