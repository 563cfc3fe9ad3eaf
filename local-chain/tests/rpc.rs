//! The JSON-RPC server through `near-jsonrpc-client`, the typed client near-cli-rs and
//! near-workspaces are built on: each response must parse into nearcore's own types.

use std::net::SocketAddr;

use local_chain::{rpc, Chain};
use near_crypto::{InMemorySigner, KeyType, SecretKey, Signer};
use near_jsonrpc_client::{errors::JsonRpcError, methods, JsonRpcClient};
use near_jsonrpc_primitives::types::{
    query::QueryResponseKind,
    transactions::{RpcTransactionError, TransactionInfo},
    view_access_key::RpcViewAccessKeyError,
    view_account::RpcViewAccountResponse,
};
use near_primitives::{
    action::{Action, TransferAction},
    hash::CryptoHash,
    transaction::{SignedTransaction, Transaction, TransactionV0},
    types::{AccountId, Balance, BlockReference, Finality},
    views::{FinalExecutionStatus, QueryRequest, TxExecutionStatus},
};
use serde_json::{json, Value};

const NEAR: u128 = 10u128.pow(24);

async fn start() -> (JsonRpcClient, Signer, AccountId) {
    let root: AccountId = "test.near".parse().unwrap();
    let key = SecretKey::from_seed(KeyType::ED25519, "rpc-test");
    let chain = Chain::new("localnet", &root, &key.public_key(), 1_000 * NEAR);
    let (addr, _server) = rpc::serve(rpc::Node::new(chain), SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .unwrap();
    (
        JsonRpcClient::connect(format!("http://{addr}")),
        InMemorySigner::from_secret_key(root.clone(), key),
        root,
    )
}

fn transfer(
    signer: &Signer,
    from: &AccountId,
    to: &AccountId,
    nonce: u64,
    block_hash: CryptoHash,
    yocto: u128,
) -> SignedTransaction {
    let tx = Transaction::V0(TransactionV0 {
        signer_id: from.clone(),
        public_key: signer.public_key(),
        nonce,
        receiver_id: to.clone(),
        block_hash,
        actions: vec![Action::Transfer(TransferAction {
            deposit: Balance::from_yoctonear(yocto),
        })],
    });
    let signature = signer.sign(tx.get_hash_and_size().0.as_ref());
    SignedTransaction::new(signature, tx)
}

#[tokio::test]
async fn status_block_and_account_views_parse() {
    let (client, _, root) = start().await;
    let status = client
        .call(methods::status::RpcStatusRequest)
        .await
        .unwrap();
    assert_eq!(status.chain_id, "localnet");
    let block = client
        .call(methods::block::RpcBlockRequest {
            block_reference: BlockReference::Finality(Finality::Final),
        })
        .await
        .unwrap();
    assert_eq!(block.header.hash, status.sync_info.latest_block_hash);
    let account = client
        .call(methods::query::RpcQueryRequest {
            block_reference: BlockReference::latest(),
            request: QueryRequest::ViewAccount {
                account_id: root.clone(),
            },
        })
        .await
        .unwrap();
    let QueryResponseKind::ViewAccount(view) = account.kind else {
        panic!("{:?}", account.kind)
    };
    assert_eq!(view.amount.as_yoctonear(), 1_000 * NEAR);
    let missing = client
        .call(methods::query::RpcQueryRequest {
            block_reference: BlockReference::latest(),
            request: QueryRequest::ViewAccount {
                account_id: "nobody.near".parse().unwrap(),
            },
        })
        .await
        .unwrap_err();
    assert!(
        format!("{missing:?}").contains("UnknownAccount"),
        "{missing:?}"
    );
}

#[tokio::test]
async fn transactions_commit_and_invalid_ones_are_typed_errors() {
    let (client, signer, root) = start().await;
    let key = client
        .call(methods::query::RpcQueryRequest {
            block_reference: BlockReference::latest(),
            request: QueryRequest::ViewAccessKey {
                account_id: root.clone(),
                public_key: signer.public_key(),
            },
        })
        .await
        .unwrap();
    let QueryResponseKind::AccessKey(access_key) = key.kind else {
        panic!()
    };
    let block_hash = key.block_hash;

    // Sending to a missing account: the transaction runs, its receipt fails, the deposit
    // comes back.
    let ghost: AccountId = "ghost.near".parse().unwrap();
    let tx = transfer(
        &signer,
        &root,
        &ghost,
        access_key.nonce + 1,
        block_hash,
        NEAR,
    );
    let outcome = client
        .call(methods::broadcast_tx_commit::RpcBroadcastTxCommitRequest {
            signed_transaction: tx.clone(),
        })
        .await
        .unwrap();
    let FinalExecutionStatus::Failure(error) = &outcome.status else {
        panic!("{:?}", outcome.status)
    };
    assert!(
        format!("{error:?}").contains("AccountDoesNotExist"),
        "{error:?}"
    );
    assert!(
        outcome.receipts_outcome.len() >= 2,
        "the failed receipt and the refund"
    );

    // The same nonce again: InvalidNonce, as a typed handler error.
    let again = transfer(&signer, &root, &root, access_key.nonce + 1, block_hash, 1);
    let err = client
        .call(methods::broadcast_tx_commit::RpcBroadcastTxCommitRequest {
            signed_transaction: again,
        })
        .await
        .unwrap_err();
    let JsonRpcError::ServerError(near_jsonrpc_client::errors::JsonRpcServerError::HandlerError(
        RpcTransactionError::InvalidTransaction { context },
    )) = err
    else {
        panic!("{err:?}")
    };
    assert!(
        matches!(context, near_primitives::errors::InvalidTxError::InvalidNonce { tx_nonce, ak_nonce } if tx_nonce == ak_nonce)
    );

    // A bad signature.
    let mut forged = transfer(&signer, &root, &root, access_key.nonce + 2, block_hash, 1);
    forged.signature = near_crypto::Signature::empty(KeyType::ED25519);
    let err = client
        .call(methods::broadcast_tx_commit::RpcBroadcastTxCommitRequest {
            signed_transaction: forged,
        })
        .await
        .unwrap_err();
    assert!(format!("{err:?}").contains("InvalidSignature"), "{err:?}");

    // Re-sending a committed transaction returns its outcome instead of a nonce error.
    let resent = client
        .call(methods::broadcast_tx_commit::RpcBroadcastTxCommitRequest {
            signed_transaction: tx,
        })
        .await
        .unwrap();
    assert_eq!(
        resent.transaction_outcome.id,
        outcome.transaction_outcome.id
    );
}

#[tokio::test]
async fn sandbox_methods_move_time_and_patch_state() {
    let (client, _, root) = start().await;
    let before = client
        .call(methods::status::RpcStatusRequest)
        .await
        .unwrap()
        .sync_info
        .latest_block_height;
    client
        .call(methods::sandbox_fast_forward::RpcSandboxFastForwardRequest { delta_height: 100 })
        .await
        .unwrap();
    let after = client
        .call(methods::status::RpcStatusRequest)
        .await
        .unwrap()
        .sync_info
        .latest_block_height;
    assert_eq!(after, before + 100);

    let record = near_primitives::state_record::StateRecord::Data {
        account_id: root.clone(),
        data_key: b"STATE".to_vec().into(),
        value: b"hello".to_vec().into(),
    };
    client
        .call(methods::sandbox_patch_state::RpcSandboxPatchStateRequest {
            records: vec![record],
        })
        .await
        .unwrap();
    let state = client
        .call(methods::query::RpcQueryRequest {
            block_reference: BlockReference::latest(),
            request: QueryRequest::ViewState {
                account_id: root,
                prefix: b"".to_vec().into(),
                include_proof: false,
                after_key: None,
                limit: None,
            },
        })
        .await
        .unwrap();
    let QueryResponseKind::ViewState(view) = state.kind else {
        panic!()
    };
    assert_eq!(view.values.len(), 1);
    assert_eq!(&*view.values[0].value, b"hello");
}

#[tokio::test]
async fn a_persistent_node_survives_a_restart() {
    let dir = std::env::temp_dir().join(format!("local-chain-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let root: AccountId = "test.near".parse().unwrap();
    let key = SecretKey::from_seed(KeyType::ED25519, "restart");
    let signer = InMemorySigner::from_secret_key(root.clone(), key.clone());
    let node = rpc::Node::persistent(
        Chain::new("localnet", &root, &key.public_key(), 1_000 * NEAR),
        Some(dir.clone()),
    );
    let (addr, server) = rpc::serve(node, SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .unwrap();
    let client = JsonRpcClient::connect(format!("http://{addr}"));
    let head = client
        .call(methods::status::RpcStatusRequest)
        .await
        .unwrap()
        .sync_info
        .latest_block_hash;
    let tx = transfer(&signer, &root, &root, 1, head, 5);
    client
        .call(methods::broadcast_tx_commit::RpcBroadcastTxCommitRequest {
            signed_transaction: tx,
        })
        .await
        .unwrap();
    server.abort();

    // A new node from the saved directory: same height, the key's nonce remembered.
    let chain = Chain::load(&dir).unwrap().expect("a saved chain");
    assert_eq!(
        chain.account(&root).unwrap().keys[&signer.public_key()].nonce,
        1
    );
    let height = chain.height();
    let (addr, _server) = rpc::serve(
        rpc::Node::persistent(chain, Some(dir.clone())),
        SocketAddr::from(([127, 0, 0, 1], 0)),
    )
    .await
    .unwrap();
    let client = JsonRpcClient::connect(format!("http://{addr}"));
    assert_eq!(
        client
            .call(methods::status::RpcStatusRequest)
            .await
            .unwrap()
            .sync_info
            .latest_block_height,
        height
    );
    let replay = transfer(&signer, &root, &root, 1, head, 5);
    let err = client
        .call(methods::broadcast_tx_commit::RpcBroadcastTxCommitRequest {
            signed_transaction: replay,
        })
        .await
        .unwrap_err();
    assert!(format!("{err:?}").contains("InvalidNonce"), "{err:?}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn bad_requests_get_nearcore_errors_and_the_node_keeps_serving() {
    let root: AccountId = "test.near".parse().unwrap();
    let key = SecretKey::from_seed(KeyType::ED25519, "bad-input");
    let (addr, _server) = rpc::serve(
        rpc::Node::new(Chain::new("localnet", &root, &key.public_key(), NEAR)),
        SocketAddr::from(([127, 0, 0, 1], 0)),
    )
    .await
    .unwrap();
    let post = |body: &'static str| async move {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let request = format!("POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len());
        tokio::io::AsyncWriteExt::write_all(&mut stream, request.as_bytes())
            .await
            .unwrap();
        let mut response = String::new();
        tokio::io::AsyncReadExt::read_to_string(&mut stream, &mut response)
            .await
            .unwrap();
        response
    };
    let unknown = post(r#"{"jsonrpc":"2.0","id":"1","method":"no_such_method","params":{}}"#).await;
    assert!(unknown.starts_with("HTTP/1.1 200"), "{unknown}");
    assert!(
        unknown.contains(r#""name":"METHOD_NOT_FOUND""#),
        "{unknown}"
    );
    let garbage = post(
        r#"{"jsonrpc":"2.0","id":"2","method":"broadcast_tx_commit","params":["not base64!"]}"#,
    )
    .await;
    assert!(
        garbage.contains(r#""name":"PARSE_ERROR""#) && garbage.contains("invalid base64"),
        "{garbage}"
    );
    let not_json = post("{").await;
    assert!(not_json.contains("PARSE_ERROR"), "{not_json}");
    // Browsers may call from any origin, as nearcore's default CORS allows.
    assert!(
        unknown
            .to_lowercase()
            .contains("access-control-allow-origin: *"),
        "{unknown}"
    );
    // Still serving, and nothing changed.
    let client = JsonRpcClient::connect(format!("http://{addr}"));
    assert_eq!(
        client
            .call(methods::status::RpcStatusRequest)
            .await
            .unwrap()
            .sync_info
            .latest_block_height,
        1
    );
}

#[tokio::test]
async fn config_gas_price_validators_and_status_times_parse() {
    let (client, signer, root) = start().await;
    let config = client
        .call(
            methods::EXPERIMENTAL_protocol_config::RpcProtocolConfigRequest {
                block_reference: BlockReference::Finality(Finality::Final),
            },
        )
        .await
        .unwrap();
    let chain = Chain::new("localnet", &root, &signer.public_key(), NEAR);
    assert_eq!(config.chain_id, "localnet");
    // What near-api-js's `Account.getState()` reads to price storage.
    assert_eq!(
        config.runtime_config.storage_amount_per_byte,
        chain.config().storage_amount_per_byte()
    );
    let genesis = client
        .call(methods::EXPERIMENTAL_genesis_config::RpcGenesisConfigRequest)
        .await
        .unwrap();
    assert_eq!(genesis.min_gas_price.as_yoctonear(), local_chain::GAS_PRICE);
    let gas_price = client
        .call(methods::gas_price::RpcGasPriceRequest { block_id: None })
        .await
        .unwrap();
    assert_eq!(gas_price.gas_price.as_yoctonear(), local_chain::GAS_PRICE);
    let validators = client
        .call(methods::validators::RpcValidatorRequest {
            epoch_reference: near_primitives::types::EpochReference::Latest,
        })
        .await
        .unwrap();
    assert_eq!(validators.current_validators[0].account_id, root);
    let status = client
        .call(methods::status::RpcStatusRequest)
        .await
        .unwrap();
    assert_eq!(
        status.sync_info.latest_block_time.unix_timestamp_nanos(),
        i128::from(local_chain::chain::GENESIS_TIMESTAMP_NS)
    );
    // A block that was never produced.
    let err = client
        .call(methods::block::RpcBlockRequest {
            block_reference: BlockReference::BlockId(near_primitives::types::BlockId::Height(99)),
        })
        .await
        .unwrap_err();
    assert!(format!("{err:?}").contains("UnknownBlock"), "{err:?}");
}

#[tokio::test]
async fn send_tx_then_tx_status_chunk_and_per_kind_views() {
    let (client, signer, root) = start().await;
    let head = client
        .call(methods::status::RpcStatusRequest)
        .await
        .unwrap()
        .sync_info
        .latest_block_hash;
    let tx = transfer(&signer, &root, &root, 1, head, 7);
    let hash = tx.get_hash();
    let sent = client
        .call(methods::send_tx::RpcSendTransactionRequest {
            signed_transaction: tx,
            wait_until: TxExecutionStatus::Final,
        })
        .await
        .unwrap();
    assert_eq!(sent.final_execution_status, TxExecutionStatus::Final);
    let info = TransactionInfo::TransactionId {
        tx_hash: hash,
        sender_account_id: root.clone(),
    };
    let status = client
        .call(methods::tx::RpcTransactionStatusRequest {
            transaction_info: info.clone(),
            wait_until: TxExecutionStatus::Final,
        })
        .await
        .unwrap();
    let outcome = status.final_execution_outcome.unwrap().into_outcome();
    assert_eq!(outcome.transaction.hash, hash);
    assert!(matches!(
        outcome.status,
        FinalExecutionStatus::SuccessValue(_)
    ));
    client
        .call(methods::tx_status::RpcTransactionStatusRequest {
            transaction_info: info,
            wait_until: TxExecutionStatus::Final,
        })
        .await
        .unwrap();
    let unknown = client
        .call(methods::tx::RpcTransactionStatusRequest {
            transaction_info: TransactionInfo::TransactionId {
                tx_hash: CryptoHash::hash_bytes(b"never sent"),
                sender_account_id: root.clone(),
            },
            wait_until: TxExecutionStatus::Final,
        })
        .await
        .unwrap_err();
    assert!(
        format!("{unknown:?}").contains("UnknownTransaction"),
        "{unknown:?}"
    );

    // The transaction's block has one chunk, and the chunk holds the transaction.
    let block = client
        .call(methods::block::RpcBlockRequest {
            block_reference: BlockReference::latest(),
        })
        .await
        .unwrap();
    assert_eq!(block.chunks.len(), 1);
    let chunk = client
        .call(methods::chunk::RpcChunkRequest {
            chunk_reference: methods::chunk::ChunkReference::ChunkHash {
                chunk_id: block.chunks[0].chunk_hash,
            },
        })
        .await
        .unwrap();
    assert_eq!(chunk.transactions.len(), 1);
    assert_eq!(chunk.transactions[0].hash, hash);
    assert!(chunk.header.gas_used.as_gas() > 0);

    // nearcore's per-kind query methods: the same answers, in their own types.
    let account = client
        .call(methods::any::<Result<Value, Value>>(
            "EXPERIMENTAL_view_account",
            json!({"finality": "final", "account_id": root}),
        ))
        .await
        .unwrap();
    let account: RpcViewAccountResponse = serde_json::from_value(account).unwrap();
    assert_eq!(account.block_hash, block.header.hash);
    let other = SecretKey::from_seed(KeyType::ED25519, "other").public_key();
    let missing_key = client
        .call(methods::any::<Result<Value, Value>>(
            "EXPERIMENTAL_view_access_key",
            json!({"finality": "final", "account_id": root, "public_key": other}),
        ))
        .await
        .unwrap_err();
    let cause = missing_key
        .handler_error()
        .cloned()
        .expect("a handler error");
    assert!(
        matches!(
            serde_json::from_value(cause).unwrap(),
            RpcViewAccessKeyError::UnknownAccessKey { public_key, .. } if public_key == other
        ),
        "{missing_key:?}"
    );
}
