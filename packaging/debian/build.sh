#!/usr/bin/env bash
# Builds the Debian package of wikiwire into target/debian/:
#     packaging/debian/build.sh                      # release build, version from Cargo.toml
#     packaging/debian/build.sh --profile dev        # the debug binary (what the tests install)
#     packaging/debian/build.sh --deb-version 0.2.0-1 --output DIR
# Then: sudo apt install ./target/debian/wikiwire_*.deb
set -euo pipefail
cd "$(dirname "$0")/../.."

profile=release
deb_args=()
while (($#)); do
    case "$1" in
        --profile) profile="$2"; shift 2 ;;
        --deb-version) deb_args+=(--deb-version "$2"); shift 2 ;;
        --output) deb_args+=(--output "$2"); shift 2 ;;
        *) echo "usage: $0 [--profile release|dev] [--deb-version VERSION] [--output DIR]" >&2; exit 2 ;;
    esac
done

if ! cargo deb --version >/dev/null 2>&1; then
    echo "==> installing cargo-deb (once)"
    cargo install cargo-deb --version 3.8.0 --locked --quiet
fi

cargo build --profile "$profile" -p wikiwire --locked
binary="target/$([ "$profile" = dev ] && echo debug || echo "$profile")/wikiwire"

# What the package carries besides the binary and the repository's files: made from them here.
assets=target/deb-assets
mkdir -p "$assets"
"$binary" completions bash >"$assets/wikiwire.bash"
"$binary" completions zsh >"$assets/_wikiwire"
"$binary" completions fish >"$assets/wikiwire.fish"
python3 packaging/debian/copyright.py >"$assets/copyright"

cargo deb -p wikiwire --no-build --profile "$profile" --locked "${deb_args[@]}"
