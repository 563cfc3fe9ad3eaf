// The local chain's JSON-RPC as a dApp uses it: near-api-js 7 (pinned in package.json)
// against a node started by `tests/near_api_js.rs`, which passes its URL, the root account
// and its secret key, and a contract to deploy. Run through
// `cargo test -p local-chain --test near_api_js` after `npm ci --prefix local-chain/tests/js`.
//
// One story, in order: read the root's state and balance, create a sub-account, add a key,
// deploy and initialize a contract, view it, fail a call and a view, sign and verify a
// NEP-413 message.

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';

import { Account, JsonRpcProvider, KeyPair } from 'near-api-js';
import { signMessage, verifyMessage } from 'near-api-js/nep413';
import {
    AccessKeyDoesNotExistError,
    AccountDoesNotExistError,
    ContractExecutionError,
    ContractMethodNotFoundError,
} from 'near-api-js/rpc-errors';

const env = (name) => {
    const value = process.env[name];
    assert.ok(value, `${name} is not set: run this through \`cargo test -p local-chain --test near_api_js\``);
    return value;
};

const provider = new JsonRpcProvider({ url: env('NEAR_RPC_URL') });
const rootId = env('NEAR_ROOT_ACCOUNT');
const root = new Account(rootId, provider, env('NEAR_ROOT_KEY'));
const wasm = readFileSync(env('NEAR_CONTRACT_WASM'));

const NEAR = 10n ** 24n;
// nearcore's storage price since protocol 25: 10^19 yocto per byte.
const STORAGE_PRICE = 10n ** 19n;
const TGAS = 10n ** 12n;

const appKey = KeyPair.fromRandom('ed25519');
const appId = `app.${rootId}`;
const app = new Account(appId, provider, appKey.toString());

test('node status, blocks, chunks, gas price and validators', async () => {
    const status = await provider.viewNodeStatus();
    assert.equal(status.chain_id, 'localnet');
    const block = await provider.viewBlock({ finality: 'final' });
    assert.equal(block.header.hash, status.sync_info.latest_block_hash);
    const byHeight = await provider.viewBlock({ blockId: block.header.height });
    assert.equal(byHeight.header.hash, block.header.hash);
    const chunk = await provider.viewChunk(block.chunks[0].chunk_hash);
    assert.equal(chunk.header.height_included, block.header.height);
    const { gas_price } = await provider.viewGasPrice();
    assert.equal(BigInt(gas_price), 100_000_000n);
    const validators = await provider.viewValidators();
    assert.equal(validators.current_validators[0].account_id, rootId);
});

test('getState and getBalance: the root account', async () => {
    const view = await provider.viewAccount({ accountId: rootId });
    const state = await root.getState();
    assert.equal(state.balance.total, BigInt(view.amount) + BigInt(view.locked));
    assert.equal(state.balance.usedOnStorage, BigInt(view.storage_usage) * STORAGE_PRICE);
    assert.equal(state.balance.available, state.balance.total - state.balance.usedOnStorage);
    assert.equal(await root.getBalance(), state.balance.available);
});

test('a sub-account, funded, with its key', async () => {
    await root.createSubAccount({
        accountOrPrefix: 'app',
        publicKey: appKey.getPublicKey(),
        nearToTransfer: 10n * NEAR,
    });
    const state = await app.getState();
    assert.equal(state.balance.total, 10n * NEAR);
    const keys = await app.getAccessKeyList();
    assert.deepEqual(
        keys.keys.map((k) => k.public_key),
        [appKey.getPublicKey().toString()]
    );
});

test('a second full-access key', async () => {
    const second = KeyPair.fromRandom('ed25519');
    await app.addFullAccessKey(second.getPublicKey());
    const key = await app.getAccessKey(second.getPublicKey());
    assert.equal(key.permission, 'FullAccess');
    assert.equal((await app.getAccessKeyList()).keys.length, 2);
    // The new key signs for the account too.
    const withSecond = new Account(appId, provider, second.toString());
    await withSecond.transfer({ receiverId: rootId, amount: 1n });
});

test('deploy, initialize and view a contract', async () => {
    await app.deployContract(wasm);
    const code = await app.getContractCode();
    assert.equal(Buffer.from(code.code_base64, 'base64').length, wasm.length);
    assert.notEqual((await app.getState()).codeHash, '11111111111111111111111111111111');
    await app.callFunction({
        contractId: appId,
        methodName: 'new',
        args: {
            hub: rootId,
            metadata: { spec: 'ft-1.0.0', name: 'Model', symbol: 'MDL', decimals: 0 },
            allocations: [[appId, '1000']],
        },
        gas: 100n * TGAS,
    });
    const balance = await provider.callFunction({
        contractId: appId,
        method: 'ft_balance_of',
        args: { account_id: appId },
    });
    assert.equal(balance, '1000');
    const metadata = await provider.callFunction({ contractId: appId, method: 'ft_metadata', args: {} });
    assert.equal(metadata.symbol, 'MDL');
});

test('errors come back as near-api-js error classes', async () => {
    // A call the contract refuses: the transaction's failure, parsed.
    await assert.rejects(
        app.callFunction({ contractId: appId, methodName: 'on_revenue', deposit: 1n }),
        (e) => e instanceof ContractExecutionError && /only the hub sends revenue/.test(e.message)
    );
    // A view of a method that does not exist: nearcore's legacy view error, parsed.
    await assert.rejects(
        provider.callFunction({ contractId: appId, method: 'no_such_method', args: {} }),
        ContractMethodNotFoundError
    );
    // An account that does not exist: a typed handler error.
    await assert.rejects(
        provider.viewAccount({ accountId: `nobody.${rootId}` }),
        AccountDoesNotExistError
    );
});

test('transaction status by hash', async () => {
    const outcome = await root.transfer({ receiverId: appId, amount: 5n });
    const txHash = outcome.transaction_outcome.id;
    const status = await provider.viewTransactionStatus({ txHash, accountId: rootId, waitUntil: 'FINAL' });
    assert.equal(status.final_execution_status, 'FINAL');
    assert.deepEqual(status.status, { SuccessValue: '' });
    const withReceipts = await provider.viewTransactionStatusWithReceipts({ txHash, accountId: rootId });
    assert.equal(withReceipts.transaction.hash, txHash);
});

test('NEP-413: a signed message verifies against the signer key on chain', async () => {
    const payload = { message: 'log me in', recipient: 'market.test.near', nonce: randomBytes(32) };
    const signed = await signMessage({ signerAccount: app, payload });
    assert.equal(signed.accountId, appId);
    await verifyMessage({
        signerAccountId: appId,
        signerPublicKey: signed.publicKey,
        payload,
        signature: signed.signature,
        provider,
    });
    // Another message under the same signature fails.
    await assert.rejects(
        verifyMessage({
            signerAccountId: appId,
            signerPublicKey: signed.publicKey,
            payload: { ...payload, message: 'log someone else in' },
            signature: signed.signature,
            provider,
        }),
        /Signature verification failed/
    );
    // A key the account does not hold fails before any signature check.
    const stranger = KeyPair.fromRandom('ed25519');
    await assert.rejects(
        verifyMessage({
            signerAccountId: appId,
            signerPublicKey: stranger.getPublicKey(),
            payload,
            signature: signed.signature,
            provider,
        }),
        AccessKeyDoesNotExistError
    );
});
