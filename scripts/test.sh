#!/usr/bin/env bash
# The test suite, exactly what CI runs (.ci/run): builds the contracts to optimized wasm
# (checking their size ceilings), then runs every test of the workspace once.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/build.sh
cargo test --workspace --locked
