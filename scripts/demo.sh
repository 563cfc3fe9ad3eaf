#!/usr/bin/env bash
# The main job: the whole flow on the embedded local chain, no network or account needed.
# Builds the contracts (installing what they need), then runs the demo.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/build.sh
echo "==> compiling the local chain and the demo (the first time takes a few minutes)"
cargo build --locked -q -p sandbox-tests --bin demo
exec target/debug/demo
