#!/usr/bin/env bash
# Deploys and initializes the market's contracts on testnet (or another network near-cli-rs
# knows) from an account the operator names, with near-cli-rs (`near`):
#
#   1. builds res/market_hub.wasm and res/model_token.wasm (scripts/build.sh);
#   2. creates the hub's account, <hub-name>.<operator>, funded by the operator, with a new
#      full-access key saved to near-cli's keychain (~/.near-credentials);
#   3. deploys the hub and calls `new(owner, config)`;
#   4. hands the hub the model token's code (`set_token_code`), so model owners can issue
#      tokens; or, with --global-token, publishes it once as a global contract and points the
#      hub at its hash (costs ~19 NEAR once; each token then needs 0.02 NEAR, not 1.9);
#   5. locks the hub: deletes the hub account's full-access key, so its code changes only
#      through the owner's time-locked `propose_upgrade` / `apply_upgrade` (users can leave
#      before new code runs), never by whoever holds that key;
#   6. prints `hub_info` as the chain reports it.
#
#   scripts/deploy-testnet.sh --account operator.testnet [options]
#
# Options (defaults in brackets):
#   --account ID            the operator's account, whose key is in near-cli's keychain (required)
#   --hub-name NAME         the hub's sub-account name [hub]
#   --owner ID              the hub's owner (its admin) [the operator]
#   --network NAME          near-cli-rs network [testnet]; its chain id goes into the config
#   --chain-id ID           the chain id signed into authorizations [the network's name]
#   --hub-balance NEAR      what the hub account starts with [8]
#   --protocol-fee-bps N    [1000]      --min-runner-bps N       [5000]
#   --min-runner-bond NEAR  [1]         --settlement-window-h N  [24]
#   --withdrawal-delay-h N  [48]        --runner-exit-delay-h N  [168]
#   --global-token          publish the token as a global contract instead of set_token_code
#   --keep-hub-key          leave the hub account's full-access key (development only: whoever
#                           holds it can replace the code and take every deposit)
#   --skip-build            use res/*.wasm as they are
#   --dry-run               print the near-cli-rs commands instead of running them
#
# NEAR_CLI names the near-cli-rs binary [near]. Install it with
# `cargo install near-cli-rs` or from https://github.com/near/near-cli-rs/releases.
set -euo pipefail
cd "$(dirname "$0")/.."

usage() { sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'; exit "${1:-0}"; }

ACCOUNT="" HUB_NAME=hub OWNER="" NETWORK=testnet CHAIN_ID="" HUB_BALANCE=8
FEE_BPS=1000 MIN_RUNNER_BPS=5000 MIN_BOND=1 WINDOW_H=24 WITHDRAW_H=48 EXIT_H=168
GLOBAL=0 BUILD=1 DRY=0 KEEP_KEY=0
while [ $# -gt 0 ]; do
  case "$1" in
    --account) ACCOUNT=$2; shift 2 ;;
    --hub-name) HUB_NAME=$2; shift 2 ;;
    --owner) OWNER=$2; shift 2 ;;
    --network) NETWORK=$2; shift 2 ;;
    --chain-id) CHAIN_ID=$2; shift 2 ;;
    --hub-balance) HUB_BALANCE=$2; shift 2 ;;
    --protocol-fee-bps) FEE_BPS=$2; shift 2 ;;
    --min-runner-bps) MIN_RUNNER_BPS=$2; shift 2 ;;
    --min-runner-bond) MIN_BOND=$2; shift 2 ;;
    --settlement-window-h) WINDOW_H=$2; shift 2 ;;
    --withdrawal-delay-h) WITHDRAW_H=$2; shift 2 ;;
    --runner-exit-delay-h) EXIT_H=$2; shift 2 ;;
    --global-token) GLOBAL=1; shift ;;
    --keep-hub-key) KEEP_KEY=1; shift ;;
    --skip-build) BUILD=0; shift ;;
    --dry-run) DRY=1; shift ;;
    -h|--help) usage 0 ;;
    *) echo "deploy-testnet: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done

fail() { echo "deploy-testnet: $*" >&2; exit 1; }
[ -n "$ACCOUNT" ] || fail "--account is required: the operator account that pays for the hub"
OWNER=${OWNER:-$ACCOUNT}
CHAIN_ID=${CHAIN_ID:-$NETWORK}
HUB="$HUB_NAME.$ACCOUNT"
for n in "$FEE_BPS" "$MIN_RUNNER_BPS" "$WINDOW_H" "$WITHDRAW_H" "$EXIT_H"; do
  [[ "$n" =~ ^[0-9]+$ ]] || fail "\`$n\` is not a whole number"
done
for n in "$MIN_BOND" "$HUB_BALANCE"; do
  [[ "$n" =~ ^[0-9]+(\.[0-9]{1,24})?$ ]] || fail "\`$n\` is not an amount of NEAR"
done
# The hub checks these too; failing here costs no transaction.
[ "$FEE_BPS" -le 2000 ] || fail "--protocol-fee-bps is at most 2000"
[ "$MIN_RUNNER_BPS" -le 8000 ] || fail "--min-runner-bps is at most 8000"
[ "$WITHDRAW_H" -gt "$WINDOW_H" ] || fail "--withdrawal-delay-h must exceed --settlement-window-h, so runners can always settle what users signed for"

# NEAR (decimal text) to yocto, exactly.
yocto() {
  local whole=${1%%.*} frac=""
  [[ "$1" == *.* ]] && frac=${1#*.}
  frac=$(printf '%-24s' "$frac" | tr ' ' 0)
  echo "$whole$frac" | sed 's/^0*//; s/^$/0/'
}
H=3600000000000 # ns per hour
CONFIG=$(printf '{"chain_id":"%s","protocol_fee_bps":%s,"min_runner_bps":%s,"min_runner_bond":"%s","settlement_window_ns":"%s","withdrawal_delay_ns":"%s","runner_exit_delay_ns":"%s"}' \
  "$CHAIN_ID" "$FEE_BPS" "$MIN_RUNNER_BPS" "$(yocto "$MIN_BOND")" \
  "$((WINDOW_H * H))" "$((WITHDRAW_H * H))" "$((EXIT_H * H))")
INIT_ARGS=$(printf '{"owner":"%s","config":%s}' "$OWNER" "$CONFIG")

NEAR_CLI=${NEAR_CLI:-near}
near_cli() {
  if [ "$DRY" = 1 ]; then
    printf '%q ' "$NEAR_CLI" "$@"; echo
  else
    "$NEAR_CLI" "$@"
  fi
}
if [ "$DRY" = 0 ] && ! command -v "$NEAR_CLI" >/dev/null; then
  fail "near-cli-rs (\`$NEAR_CLI\`) is not installed: \`cargo install near-cli-rs\`, or set NEAR_CLI"
fi

if [ "$BUILD" = 1 ]; then scripts/build.sh; fi
for f in res/market_hub.wasm res/model_token.wasm; do
  [ -f "$f" ] || fail "$f is missing: run scripts/build.sh"
done

echo "==> creating $HUB with $HUB_BALANCE NEAR from $ACCOUNT on $NETWORK"
near_cli account create-account fund-myself "$HUB" "$HUB_BALANCE NEAR" \
  autogenerate-new-keypair save-to-keychain sign-as "$ACCOUNT" \
  network-config "$NETWORK" sign-with-keychain send

echo "==> deploying res/market_hub.wasm to $HUB and calling new (owner $OWNER, chain id $CHAIN_ID)"
near_cli contract deploy "$HUB" use-file res/market_hub.wasm \
  with-init-call new json-args "$INIT_ARGS" prepaid-gas '100.0 Tgas' attached-deposit '0 NEAR' \
  network-config "$NETWORK" sign-with-keychain send

if [ "$GLOBAL" = 1 ]; then
  echo "==> publishing res/model_token.wasm as a global contract (by hash) from $ACCOUNT"
  near_cli contract deploy-as-global use-file res/model_token.wasm as-global-hash "$ACCOUNT" \
    network-config "$NETWORK" sign-with-keychain send
  CODE_HASH=$(python3 -c 'import hashlib,sys; 
A="123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
d=hashlib.sha256(open(sys.argv[1],"rb").read()).digest(); n=int.from_bytes(d,"big"); s=""
while n: n,r=divmod(n,58); s=A[r]+s
print("1"*(len(d)-len(d.lstrip(b"\0")))+s)' res/model_token.wasm)
  echo "==> pointing the hub at the token's code hash $CODE_HASH"
  near_cli contract call-function as-transaction "$HUB" set_token_code_hash \
    json-args "{\"code_hash\":\"$CODE_HASH\"}" prepaid-gas '30.0 Tgas' attached-deposit '1 yoctoNEAR' \
    sign-as "$OWNER" network-config "$NETWORK" sign-with-keychain send
else
  # `set_token_code` takes borsh bytes (a u32 length, then the code): too large for a
  # command-line argument, so near-cli-rs reads them from a file.
  ARGS=$(mktemp)
  trap 'rm -f "$ARGS"' EXIT
  python3 -c 'import struct,sys; c=open(sys.argv[1],"rb").read(); sys.stdout.buffer.write(struct.pack("<I",len(c))+c)' \
    res/model_token.wasm > "$ARGS"
  echo "==> handing the hub the model token's code (set_token_code, storage attached)"
  near_cli contract call-function as-transaction "$HUB" set_token_code \
    file-args "$ARGS" prepaid-gas '300.0 Tgas' attached-deposit '3 NEAR' \
    sign-as "$OWNER" network-config "$NETWORK" sign-with-keychain send
fi

if [ "$KEEP_KEY" = 0 ]; then
  KEY_FILE="$HOME/.near-credentials/$NETWORK/$HUB.json"
  if [ "$DRY" = 1 ]; then
    HUB_KEY="<the key in $KEY_FILE>"
  else
    HUB_KEY=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["public_key"])' "$KEY_FILE") \
      || fail "cannot read the hub's key from $KEY_FILE"
  fi
  echo "==> locking $HUB: deleting its full-access key $HUB_KEY (code changes only through propose_upgrade)"
  near_cli account delete-keys "$HUB" public-keys "$HUB_KEY" \
    network-config "$NETWORK" sign-with-keychain send
fi

echo "==> $HUB is live:"
near_cli contract call-function as-read-only "$HUB" hub_info json-args '{}' \
  network-config "$NETWORK" now
cat <<EOF

Next, for a runner operator (see README.md, Runner):
  off-chain-runner register --chain $CHAIN_ID --hub $HUB --account-key ~/.near-credentials/$NETWORK/<runner>.json --receipt-key receipt.json
  off-chain-runner serve --chain $CHAIN_ID --hub $HUB --account-key ... --receipt-key receipt.json --model <model_id>=<path>
EOF
