//! `local-chain serve`: the embedded chain as a JSON-RPC node for near-workspaces,
//! near-jsonrpc-client and near-cli-rs.

use std::net::SocketAddr;

use clap::{Parser, Subcommand};
use local_chain::{rpc, Chain};
use near_crypto::{KeyType, SecretKey};

#[derive(Parser)]
#[command(
    about = "An embedded NEAR chain: contracts run in nearcore's VM with nearcore's gas schedule"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serves NEAR's JSON-RPC on 127.0.0.1:<port>. Prints the root account and its secret
    /// key: the key signs top-level account creation, as a sandbox's validator key does.
    Serve {
        #[arg(long, default_value_t = 3030)]
        port: u16,
        #[arg(long, default_value = "localnet")]
        chain_id: String,
        /// The genesis account.
        #[arg(long, default_value = "test.near")]
        root: String,
        /// Seed of the root key (a deterministic key, for tests and demos only).
        #[arg(long, default_value = "local-chain")]
        seed: String,
        /// Keep the chain in this directory: loaded at start if saved before, saved after
        /// every change, so the node survives a restart.
        #[arg(long)]
        data_dir: Option<std::path::PathBuf>,
    },
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let Command::Serve {
        port,
        chain_id,
        root,
        seed,
        data_dir,
    } = Cli::parse().command;
    let root: near_primitives::types::AccountId = root.parse()?;
    let key = SecretKey::from_seed(KeyType::ED25519, &seed);
    let saved = match &data_dir {
        Some(dir) => Chain::load(dir)?,
        None => None,
    };
    let chain = match saved {
        Some(chain) => {
            println!(
                "loaded the chain saved in {} (height {})",
                data_dir.as_ref().unwrap().display(),
                chain.height()
            );
            chain
        }
        None => Chain::new(
            &chain_id,
            &root,
            &key.public_key(),
            1_000_000_000 * 10u128.pow(24),
        ),
    };
    let (root, chain_id) = (chain.root().clone(), chain.chain_id().to_owned());
    let (addr, server) = rpc::serve(
        rpc::Node::persistent(chain, data_dir),
        SocketAddr::from(([127, 0, 0, 1], port)),
    )
    .await?;
    println!("local-chain `{chain_id}` serving JSON-RPC on http://{addr}");
    println!("root account: {root}");
    println!("root secret key: {key}");
    tokio::select! {
        _ = server => {}
        _ = tokio::signal::ctrl_c() => println!("stopped"),
    }
    Ok(())
}
