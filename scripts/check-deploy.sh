#!/usr/bin/env bash
# Runs scripts/deploy-testnet.sh for real against the local chain's JSON-RPC, with
# near-cli-rs configured for a `localnet` network, then walks the README's runner-operator
# steps (keys, register, status) with the runner's CLI against the hub it deployed.
# Everything lives in a temporary HOME, so no real keychain or config is touched.
#   scripts/check-deploy.sh
# Uses near-cli-rs from NEAR_CLI, else the version below installed into target/tools
# (built from crates.io the first time, about 12 minutes on 2 cores).
set -euo pipefail
cd "$(dirname "$0")/.."
NEAR_CLI_VERSION=0.31.0-rc.2
TOOLS="$PWD/target/tools"
if [ -z "${NEAR_CLI:-}" ]; then
  NEAR_CLI="$TOOLS/near-cli/bin/near"
  if ! "$NEAR_CLI" --version 2>/dev/null | grep -q "$NEAR_CLI_VERSION"; then
    echo "==> installing near-cli-rs $NEAR_CLI_VERSION into $TOOLS/near-cli (once)"
    CARGO_TARGET_DIR="$TOOLS/near-cli-build" cargo install -q --locked --no-default-features \
      near-cli-rs --version "$NEAR_CLI_VERSION" --root "$TOOLS/near-cli"
    rm -rf "$TOOLS/near-cli-build"
  fi
fi
export NEAR_CLI

# The binaries the test suite builds (a no-op right after `cargo test --workspace`).
cargo test --workspace --locked --no-run -q
[ -f res/market_hub.wasm ] || scripts/build.sh

WORK=$(mktemp -d)
export HOME="$WORK/home"
mkdir -p "$HOME"
# Any free port: the node prints the one it bound.
target/debug/local-chain serve --port "${CHECK_DEPLOY_PORT:-0}" > "$WORK/node.log" 2>&1 &
NODE=$!
trap 'kill $NODE 2>/dev/null; rm -rf "$WORK"' EXIT
for _ in $(seq 50); do grep -q "root secret key" "$WORK/node.log" && break; sleep 0.2; done
SECRET=$(sed -n 's/^root secret key: //p' "$WORK/node.log")
PORT=$(sed -n 's|.*serving JSON-RPC on http://127.0.0.1:\([0-9]*\).*|\1|p' "$WORK/node.log")
[ -n "$SECRET" ] && [ -n "$PORT" ] || { cat "$WORK/node.log" >&2; exit 1; }

# near-cli's legacy keychain: ~/.near-credentials/<network>/<account>.json.
mkdir -p "$HOME/.near-credentials/localnet"
python3 - "$SECRET" > "$HOME/.near-credentials/localnet/test.near.json" <<'PY'
import json, sys
A = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
def b58d(s):
    n = 0
    for ch in s: n = n * 58 + A.index(ch)
    return n.to_bytes(64, "big")
def b58e(b):
    n, s = int.from_bytes(b, "big"), ""
    while n: n, r = divmod(n, 58); s = A[r] + s
    return "1" * (len(b) - len(b.lstrip(b"\0"))) + s
secret = sys.argv[1]
pk = "ed25519:" + b58e(b58d(secret.split(":")[1])[32:])
print(json.dumps({"account_id": "test.near", "public_key": pk, "private_key": secret}))
PY
# A `localnet` connection in near-cli-rs's config (`config add-connection` insists on a
# TTY for its optional fields): the default file first, then the section appended.
"$NEAR_CLI" config show-connections > /dev/null 2>&1
cat >> "$HOME/.config/near-cli/config.toml" <<EOF

[network_connection.localnet]
network_name = "localnet"
rpc_url = "http://127.0.0.1:$PORT/"
wallet_url = "http://127.0.0.1:$PORT/"
explorer_transaction_url = "http://127.0.0.1:$PORT/"
EOF

echo "==> bad options are refused before any transaction"
for bad in "--withdrawal-delay-h 1" "--protocol-fee-bps 9000" "--min-runner-bond lots" "--bogus"; do
  # shellcheck disable=SC2086
  if out=$(scripts/deploy-testnet.sh --account test.near --network localnet --skip-build $bad 2>&1); then
    echo "check-deploy: deploy-testnet.sh accepted $bad" >&2; exit 1
  fi
  grep -q "^deploy-testnet: " <<<"$out" || { echo "check-deploy: no clear error for $bad: $out" >&2; exit 1; }
  echo "    $bad: ${out#deploy-testnet: }"
done
# Had any of them sent a transaction, creating hub.test.near below would fail.

echo "==> deploy-testnet.sh against the local chain on port $PORT"
scripts/deploy-testnet.sh --account test.near --network localnet --chain-id localnet --skip-build \
  | tee "$WORK/deploy.log"
grep -q '"owner": "test.near"' "$WORK/deploy.log" || { echo "check-deploy: hub_info does not name the owner" >&2; exit 1; }
# The hub is locked: its own key no longer signs anything (it could redeploy the code).
if "$NEAR_CLI" contract call-function as-transaction hub.test.near hub_info json-args '{}' \
    prepaid-gas '10.0 Tgas' attached-deposit '0 NEAR' sign-as hub.test.near \
    network-config localnet sign-with-keychain send > "$WORK/locked.log" 2>&1; then
  echo "check-deploy: hub.test.near's full-access key still signs" >&2; exit 1
fi
echo "    the hub's own key is gone: code changes only through propose_upgrade"

echo "==> the runner operator's steps against hub.test.near"
RUNNER=(target/debug/off-chain-runner)
CHAIN=(--chain localnet --rpc "http://127.0.0.1:$PORT" --hub hub.test.near)
"$NEAR_CLI" account create-account fund-myself gpu.test.near '10 NEAR' autogenerate-new-keypair \
  save-to-keychain sign-as test.near network-config localnet sign-with-keychain send
"${RUNNER[@]}" keys generate --account gpu.test.near --out "$WORK/receipt.json"
"${RUNNER[@]}" register "${CHAIN[@]}" --account-key "$HOME/.near-credentials/localnet/gpu.test.near.json" \
  --receipt-key "$WORK/receipt.json" --deposit 2
"${RUNNER[@]}" status "${CHAIN[@]}" --runner gpu.test.near --data-dir "$WORK/runner-data" | tee "$WORK/status.log"
grep -q "bond 1.99" "$WORK/status.log" || grep -q "bond 2" "$WORK/status.log" \
  || { echo "check-deploy: the runner is not registered with its bond" >&2; exit 1; }
echo "==> deploy-testnet.sh and the runner's register work against the local chain"
