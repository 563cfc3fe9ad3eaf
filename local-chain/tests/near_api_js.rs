//! The node as a dApp sees it: near-api-js 7 (pinned in `tests/js/package.json`) runs
//! `tests/js/near-api-js.test.mjs` with `node --test` against a node served here. The
//! JavaScript client is the one the issue found wanting (`Account.getState()` called
//! `EXPERIMENTAL_protocol_config`, which was not answered), so it is tested as shipped, not
//! through a Rust imitation of it.
//!
//! Needs Node 20.18.3+ and `npm ci --prefix local-chain/tests/js` (scripts/test.sh runs it),
//! and the contracts built to `res/` (scripts/build.sh); without them the test fails and
//! says which is missing, rather than skipping.

use std::{net::SocketAddr, path::Path, process::Command};

use local_chain::{rpc, Chain};
use near_crypto::{KeyType, SecretKey};
use near_primitives::types::AccountId;

const NEAR: u128 = 10u128.pow(24);

#[tokio::test]
async fn near_api_js_drives_the_node() {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let js = manifest.join("tests/js");
    assert!(
        js.join("node_modules/near-api-js/package.json").exists(),
        "near-api-js is not installed in {}: run `npm ci --prefix local-chain/tests/js`",
        js.display()
    );
    // The model token: a NEP-141 contract with views, an initializer and a call that refuses
    // anyone but its hub.
    let wasm = manifest.join("../res/model_token.wasm");
    assert!(
        wasm.exists(),
        "{} is missing: build the contracts with scripts/build.sh",
        wasm.display()
    );

    let root: AccountId = "test.near".parse().unwrap();
    let key = SecretKey::from_seed(KeyType::ED25519, "near-api-js");
    let chain = Chain::new("localnet", &root, &key.public_key(), 1_000 * NEAR);
    let (addr, _server) = rpc::serve(rpc::Node::new(chain), SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .unwrap();

    let mut node = Command::new("node");
    node.arg("--test")
        .arg(js.join("near-api-js.test.mjs"))
        .current_dir(&js)
        .env("NEAR_RPC_URL", format!("http://{addr}"))
        .env("NEAR_ROOT_ACCOUNT", root.as_str())
        .env("NEAR_ROOT_KEY", key.to_string())
        .env("NEAR_CONTRACT_WASM", &wasm);
    // Blocking, on its own thread: the runtime keeps serving the node meanwhile.
    let output = tokio::task::spawn_blocking(move || node.output())
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("running `node` (Node 20.18.3+ is needed): {e}"));
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success(),
        "near-api-js tests failed:\n{report}"
    );
    // `node --test` passes when it finds no test at all; it must have run every one.
    assert!(report.contains("# fail 0"), "{report}");
    assert!(!report.contains("# pass 0"), "{report}");
}
