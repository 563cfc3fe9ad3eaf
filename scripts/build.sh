#!/usr/bin/env bash
# Builds every contract to optimized wasm in res/ and prints their sizes.
#   scripts/build.sh            build all contracts
# Installs what it needs on a fresh machine: the wasm32 target and binaryen's wasm-opt
# (a pinned release from npm, or Debian's package when npm is missing).
set -euo pipefail
cd "$(dirname "$0")/.."

CONTRACTS=(market-hub model-token)
# Size ceiling per contract in bytes; a build over it fails. Measured sizes are in README.md.
CEILING=425500
BINARYEN_VERSION=132.0.0
TOOLS="$PWD/target/tools"

if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
    echo "==> installing the wasm32-unknown-unknown target"
    rustup target add wasm32-unknown-unknown
fi

wasm_opt() {
    if [ -x "$TOOLS/node_modules/.bin/wasm-opt" ]; then
        "$TOOLS/node_modules/.bin/wasm-opt" "$@"
    elif command -v npm >/dev/null; then
        echo "==> installing binaryen $BINARYEN_VERSION (wasm-opt) into $TOOLS" >&2
        mkdir -p "$TOOLS"
        npm install --prefix "$TOOLS" --no-audit --no-fund --silent "binaryen@$BINARYEN_VERSION" >&2
        "$TOOLS/node_modules/.bin/wasm-opt" "$@"
    else
        command -v wasm-opt >/dev/null || { echo "==> installing binaryen" >&2; apt-get install -y -qq binaryen >&2; }
        wasm-opt "$@"
    fi
}

# The features rustc enables by default for wasm32 and nearcore's VM accepts; wasm-opt
# must not introduce others.
FEATURES=(--enable-bulk-memory --enable-sign-ext --enable-mutable-globals
          --enable-nontrapping-float-to-int --enable-reference-types --enable-multivalue)

mkdir -p res
for crate in "${CONTRACTS[@]}"; do
    echo "==> building $crate"
    # .cargo/config.toml adds `--cfg near` for this target, as `cargo near build` does.
    cargo build --locked -q -p "$crate" --target wasm32-unknown-unknown --profile wasm-release
    name="${crate//-/_}"
    wasm_opt -Oz "${FEATURES[@]}" --strip-debug --strip-producers \
        "target/wasm32-unknown-unknown/wasm-release/$name.wasm" -o "res/$name.wasm"
    size=$(stat -c %s "res/$name.wasm")
    printf '%-24s %8d bytes\n' "res/$name.wasm" "$size"
    if [ "$size" -gt "$CEILING" ]; then
        echo "error: res/$name.wasm is $size bytes, over the $CEILING-byte ceiling" >&2
        exit 1
    fi
done
