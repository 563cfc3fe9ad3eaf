#!/usr/bin/env bash
# Shows where a contract's optimized wasm spends its bytes (twiggy), for size work.
#   scripts/size-report.sh [crate] [rows]     default: market-hub, 40 rows
# Builds the contract as scripts/build.sh does but keeps the function names (a separate
# target folder, so res/ and the normal build are untouched), runs the same `wasm-opt -Oz`
# with names kept, then prints the largest items and each export's retained size.
# Installs twiggy into target/tools on first use. Not part of CI.
set -euo pipefail
cd "$(dirname "$0")/.."

crate=${1:-market-hub}
rows=${2:-40}
name="${crate//-/_}"
TOOLS="$PWD/target/tools"
OUT="$PWD/target/size-report"

scripts/build.sh >/dev/null # installs the wasm target and wasm-opt, checks the crate builds
if [ ! -x "$TOOLS/bin/twiggy" ]; then
    echo "==> installing twiggy into $TOOLS" >&2
    cargo install --locked -q --root "$TOOLS" twiggy
fi

# The same flags as .cargo/config.toml minus `-s`, and no symbol stripping: names survive.
CARGO_TARGET_DIR="$OUT" RUSTFLAGS="--cfg near" CARGO_PROFILE_WASM_RELEASE_STRIP=none \
    cargo build --locked -q -p "$crate" --target wasm32-unknown-unknown --profile wasm-release
"$TOOLS/node_modules/.bin/wasm-opt" -Oz --debuginfo --strip-debug --strip-producers \
    --enable-bulk-memory --enable-sign-ext --enable-mutable-globals \
    --enable-nontrapping-float-to-int --enable-reference-types --enable-multivalue \
    "$OUT/wasm32-unknown-unknown/wasm-release/$name.wasm" -o "$OUT/$name.named.wasm"

echo "== $crate: $(stat -c %s "res/$name.wasm") bytes in res/ (the names section below is not part of it)"
"$TOOLS/bin/twiggy" top -n "$rows" "$OUT/$name.named.wasm"
echo "== bytes only each export keeps alive (retained)"
"$TOOLS/bin/twiggy" dominators -d 1 -r 4000 "$OUT/$name.named.wasm" | grep 'export "' | head -n "$rows"
