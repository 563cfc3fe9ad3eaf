//! `off-chain-runner`: the runner operator's and the user's command line.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use anyhow::{bail, Context};
use clap::{Args, Parser, Subcommand, ValueEnum};
use market_hub_api::{
    jsonrpc::{HubClient, Signer},
    methods,
};
use market_protocol::{
    authorization::{ContentCeiling, ModelCeiling},
    Authorization, SignedAuthorization,
};
use near_sdk::{
    json_types::{U128, U64},
    AccountId,
};
use off_chain_runner::{
    keys::Credentials,
    server::{self, store_path},
    settlement::{Settings, Settler},
    store::ChannelStatus,
    store::Store,
    token,
};

const NEAR: u128 = 1_000_000_000_000_000_000_000_000;

#[derive(Parser)]
#[command(
    name = "off-chain-runner",
    version,
    about = "Serve registered models over an OpenAI-compatible API, paid by signed spending authorizations, and settle usage receipts on the hub",
    long_about = "The runner of the AI market on NEAR.\n\nAn operator generates keys (`keys`), registers them on the hub (`register`), and serves models (`serve`): every request is paid by the user's signed spending authorization, sent as the API key, and metered in a cumulative receipt that is stored durably and settled on chain in batches. A user signs an authorization with `authorize`. `settle` and `status` work on a runner's receipt store."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Where the hub is.
#[derive(Args, Clone)]
struct ChainArgs {
    /// The hub contract's account.
    #[arg(long)]
    hub: AccountId,
    /// `local` (a local-chain node on 127.0.0.1:3030, chain id `localnet`), `testnet`,
    /// `mainnet`, or any chain id together with --rpc.
    #[arg(long, default_value = "local")]
    chain: String,
    /// The JSON-RPC URL; defaults to the chain's public endpoint.
    #[arg(long)]
    rpc: Option<String>,
}

impl ChainArgs {
    fn hub(&self) -> anyhow::Result<HubClient> {
        let (chain_id, default_rpc) = match self.chain.as_str() {
            "local" | "localnet" => ("localnet", Some("http://127.0.0.1:3030")),
            "testnet" => ("testnet", Some("https://rpc.testnet.near.org")),
            "mainnet" => ("mainnet", Some("https://rpc.mainnet.near.org")),
            other => (other, None),
        };
        let rpc = match (&self.rpc, default_rpc) {
            (Some(url), _) => url.clone(),
            (None, Some(url)) => url.to_owned(),
            (None, None) => bail!(
                "chain `{}` has no default RPC endpoint: pass --rpc URL",
                self.chain
            ),
        };
        Ok(HubClient::new(&rpc, self.hub.clone(), chain_id.to_owned()))
    }
}

#[derive(Clone, Copy, ValueEnum)]
enum Backend {
    /// The wgpu engine on the best adapter (a GPU, or a CPU Vulkan driver such as lavapipe).
    #[cfg(feature = "engine")]
    Gpu,
    /// The engine's plain-Rust CPU reference: slow, needs no driver.
    #[cfg(feature = "engine")]
    Cpu,
    /// No model: echoes prompts and hashes inputs. Checks payments end to end.
    Echo,
}

#[derive(Subcommand)]
enum Command {
    /// Serve models over HTTP and settle receipts in the background.
    ///
    /// Before serving, checks that the runner and its receipt key are registered, that each
    /// model's weights hash to a registered version whose runner policy admits this runner,
    /// and that each content file is registered inference-only content; refuses to start
    /// otherwise.
    Serve {
        #[command(flatten)]
        chain: ChainArgs,
        /// The runner account's key (NEAR credential JSON): signs `settle` transactions.
        #[arg(long)]
        account_key: PathBuf,
        /// The receipt key (NEAR credential JSON), registered on the hub.
        #[arg(long)]
        receipt_key: PathBuf,
        /// A model to serve: `<model_id>=<path>`, the path a .gguf/.safetensors file or a
        /// directory. Repeatable.
        #[arg(long = "model", value_parser = parse_model, required = true)]
        models: Vec<(String, PathBuf)>,
        /// A directory of inference-only content files, each named `<content_id>.<ext>`.
        #[arg(long)]
        content_dir: Option<PathBuf>,
        /// The X25519 key (`sealing-key`) that sealed models' grants are wrapped to: a
        /// `--model` path that is a sealed artifact is unsealed into memory with it.
        #[arg(long)]
        sealing_key: Option<PathBuf>,
        #[arg(long, value_enum, default_value = if cfg!(feature = "engine") { "gpu" } else { "echo" })]
        backend: Backend,
        /// With `--backend echo`: how long each request takes, in milliseconds (to try
        /// load and shutdown without a model).
        #[arg(long, default_value_t = 0)]
        echo_delay_ms: u64,
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        /// Where receipts are kept (`receipts.redb`).
        #[arg(long, default_value = "runner-data")]
        data_dir: PathBuf,
        /// Receipts per `settle` transaction.
        #[arg(long, default_value_t = 50)]
        batch: usize,
        /// Days settled receipt history is kept; each channel's latest and last settled
        /// receipt, and everything unsettled, are kept always.
        #[arg(long, default_value_t = 90)]
        keep_receipts_days: u64,
        /// Seconds between settlement rounds.
        #[arg(long, default_value_t = 30.0)]
        settle_interval: f64,
        /// The longest a `settle` transaction's final outcome is waited for, in seconds
        /// (the node is asked again meanwhile). Past it the round ends; what landed is read
        /// from the hub at the next round, never sent blind again.
        #[arg(long, default_value_t = 60)]
        tx_timeout_secs: u64,
        /// How often, in seconds, the hub is asked again whether it still pays this runner
        /// for each served model (runner policy, sealed models' grants); while it would
        /// not, requests for the model get 403 `runner_not_allowed`.
        #[arg(long, default_value_t = 30)]
        admission_interval_secs: u64,
        /// Requests that may wait per model besides the running one; more get 429.
        #[arg(long, default_value_t = 8)]
        queue: usize,
        /// Sequences each chat model runs at once (continuous batching), each with its own
        /// KV cache of the model's context.
        #[cfg(feature = "engine")]
        #[arg(long, default_value_t = 4)]
        kv_slots: usize,
        /// Prompt tokens a sequence prefills per step, interleaved with the others'
        /// decoding: smaller keeps others' inter-token time short, larger prefills faster.
        #[cfg(feature = "engine")]
        #[arg(long, default_value_t = 64)]
        prefill_chunk: usize,
        /// How long an admitted chat request may wait for a free KV slot; past it the
        /// request gets 429 `queue_timeout` with `Retry-After` and is not charged. 0 waits
        /// as long as it takes.
        #[cfg(feature = "engine")]
        #[arg(long, default_value_t = 120)]
        queue_timeout_secs: u64,
        /// KV slots one user's channel may hold at once per chat model (its other requests
        /// wait while later users' go ahead); 0: half of `--kv-slots`, rounded up.
        #[cfg(feature = "engine")]
        #[arg(long, default_value_t = 0)]
        channel_slots: usize,
        /// Requests one user's channel may have running or waiting per model; more get
        /// 429 `channel_busy`, so one user cannot take every place.
        #[arg(long, default_value_t = 4)]
        max_per_channel: usize,
        /// How long hub views (keys, channels, prices) are cached, in milliseconds.
        #[arg(long, default_value_t = 2000)]
        view_ttl_ms: u64,
        /// While the node fails, how long past `--view-ttl-ms` a cached view is still
        /// trusted; after that requests get 503 until the node answers again.
        #[arg(long, default_value_t = 60)]
        view_max_stale_secs: u64,
        /// The longest one hub view may take before it counts as failed, in milliseconds.
        #[arg(long, default_value_t = 5000)]
        view_timeout_ms: u64,
        /// Refuse requests whose authorization expires within this many seconds (401
        /// `expires_soon`), so every receipt served can be settled before the expiry.
        /// Keep it well above `--settle-interval`.
        #[arg(long, default_value_t = 300)]
        expiry_margin_secs: u64,
        #[arg(long, default_value_t = off_chain_runner::http::DEFAULT_MAX_BODY_BYTES)]
        max_body_bytes: usize,
        /// `max_tokens` for requests that name none.
        #[arg(long, default_value_t = 256)]
        default_max_tokens: usize,
        /// A streaming client that leaves the stream unread this long (seconds) has its
        /// request cancelled, and is charged for what was generated until then.
        #[arg(long, default_value_t = 30)]
        client_read_timeout_secs: u64,
        /// Stop serving a channel that owes this much (NEAR) not yet settled, settle it at
        /// once, and serve it again when that lands (402 `settlement_pending` meanwhile).
        /// Bounds what a user's withdrawal or a key revocation could leave unpaid.
        #[arg(long)]
        max_unsettled: Option<String>,
        /// Serve without settling (settle with `off-chain-runner settle` instead).
        #[arg(long)]
        no_settle: bool,
    },
    /// Generate or show keys (NEAR credential JSON files, as near-cli stores them).
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Closed models: seal a model, a runner's sealing key, grants.
    Sealed {
        #[command(subcommand)]
        command: SealCommand,
    },
    /// (User) Sign a spending authorization for a channel; prints the API key to use.
    Authorize {
        #[command(flatten)]
        chain: ChainArgs,
        /// The user's key file (its public key must be registered with `register_user_key`).
        #[arg(long)]
        user_key: PathBuf,
        #[arg(long)]
        runner: AccountId,
        /// Cumulative cap over the channel's life, in NEAR (e.g. 0.5) ...
        #[arg(long, conflicts_with = "cap_yocto")]
        cap: Option<String>,
        /// ... or in yocto.
        #[arg(long)]
        cap_yocto: Option<u128>,
        /// Model ids covered, comma-separated. The signed price ceilings are each model's
        /// prices on the hub now: a runner can charge no more.
        #[arg(long, value_delimiter = ',', required = true)]
        models: Vec<String>,
        /// The most units (tokens in + out) one request may use, per model.
        #[arg(long, default_value_t = 8_192)]
        max_units_per_request: u64,
        /// Inference-time content a runner may put into the context and charge for,
        /// comma-separated; each at most its price on the hub now. None by default.
        #[arg(long, value_delimiter = ',')]
        content: Vec<String>,
        /// Hours until it expires (by the chain's clock).
        #[arg(long, default_value_t = 24 * 7)]
        expires_in_hours: u64,
    },
    /// Register the runner on the hub with its receipt key and a bond.
    Register {
        #[command(flatten)]
        chain: ChainArgs,
        #[arg(long)]
        account_key: PathBuf,
        #[arg(long)]
        receipt_key: PathBuf,
        /// Bond plus storage to attach, in NEAR.
        #[arg(long, default_value = "2")]
        deposit: String,
    },
    /// Settle every pending receipt now and print the outcome.
    Settle {
        #[command(flatten)]
        chain: ChainArgs,
        #[arg(long)]
        account_key: PathBuf,
        #[arg(long, default_value = "runner-data")]
        data_dir: PathBuf,
        #[arg(long, default_value_t = 50)]
        batch: usize,
        /// A `serve` running on this machine holds the store: ask it to settle now instead
        /// (its address, e.g. `http://127.0.0.1:8080`), with the operator token it wrote
        /// to `--data-dir`.
        #[arg(long)]
        runner_url: Option<String>,
    },
    /// Backlog, last settled sequence per channel, and earnings on the hub.
    Status {
        #[command(flatten)]
        chain: ChainArgs,
        /// The runner account.
        #[arg(long)]
        runner: AccountId,
        #[arg(long, default_value = "runner-data")]
        data_dir: PathBuf,
        /// A `serve` running on this machine holds the store: read it through that runner
        /// instead (its address, e.g. `http://127.0.0.1:8080`), with the operator token it
        /// wrote to `--data-dir`.
        #[arg(long)]
        runner_url: Option<String>,
    },
}

#[derive(Subcommand)]
enum SealCommand {
    /// (Model owner) Seal a model (a .gguf/.safetensors file or a directory, every file in
    /// it) under a new random content key: writes the artifact and the key to new files and
    /// prints the `sealed` field of the version to register (`add_model_version`).
    Seal {
        #[arg(long)]
        model: PathBuf,
        #[arg(long)]
        out: PathBuf,
        /// Where the content key goes (hex, owner-only); keep it to grant the version.
        #[arg(long)]
        key_out: PathBuf,
    },
    /// (Runner) Generate an X25519 sealing key into a new file; prints its public key.
    SealingKey {
        #[arg(long)]
        out: PathBuf,
    },
    /// (Runner) Register the sealing key on the hub, bound by a signature of the receipt
    /// key; replaces an earlier one (rotation: owners grant again to the new key).
    RegisterSealingKey {
        #[command(flatten)]
        chain: ChainArgs,
        #[arg(long)]
        account_key: PathBuf,
        #[arg(long)]
        receipt_key: PathBuf,
        #[arg(long)]
        sealing_key: PathBuf,
        /// A TDX quote whose report data is the key's binding (see `market-sealing`'s
        /// `attestation`), recorded on the hub for owners who grant only to attested
        /// runners; checked here first with `--collateral`.
        #[arg(long, requires = "collateral")]
        quote: Option<PathBuf>,
        /// The quote's collateral (dcap-qvl's `QuoteCollateralV3` JSON, from Intel's PCS
        /// or a PCCS).
        #[arg(long, requires = "quote")]
        collateral: Option<PathBuf>,
        /// NEAR attached for storage (surplus refunded).
        #[arg(long, default_value = "0.01")]
        deposit: String,
    },
    /// (Model owner) Grant a sealed version's content key to a runner: wrapped with HPKE
    /// to the runner's sealing key, posted to the hub.
    Grant {
        #[command(flatten)]
        chain: ChainArgs,
        /// The model owner's key (NEAR credential JSON).
        #[arg(long)]
        owner_key: PathBuf,
        #[arg(long)]
        model: String,
        #[arg(long)]
        version: u32,
        #[arg(long)]
        runner: AccountId,
        /// The runner's sealing public key (hex), as the runner gave it to you, not as a
        /// node reports it: the hub refuses the grant unless it is the runner's current one.
        #[arg(long)]
        sealing_key: market_sealing::SealingPublicKey,
        /// The content key `seal` wrote.
        #[arg(long)]
        content_key: PathBuf,
        /// Grant only if the runner's sealing key is attested: its quote (`--quote`, from
        /// the runner) verifies now with `--collateral`, on a platform of an allowed TCB
        /// status, with an allowed measurement (MRTD), its report data binding the key,
        /// and the hub's attestation record names it.
        #[arg(long, requires_all = ["quote", "collateral", "allow_measurement"])]
        require_attestation: bool,
        #[arg(long)]
        quote: Option<PathBuf>,
        #[arg(long)]
        collateral: Option<PathBuf>,
        /// An allowed MRTD (hex, 48 bytes); repeat for several.
        #[arg(long)]
        allow_measurement: Vec<String>,
        /// An allowed TCB status; repeat for several (default: `UpToDate` only).
        #[arg(long)]
        allow_tcb_status: Vec<String>,
        #[arg(long, default_value = "0.01")]
        deposit: String,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Generate a new ed25519 key for an account into a new file (never overwrites).
    Generate {
        #[arg(long)]
        account: AccountId,
        #[arg(long)]
        out: PathBuf,
    },
    /// Print a key file's account and public key.
    Show { file: PathBuf },
}

fn parse_model(s: &str) -> Result<(String, PathBuf), String> {
    let (id, path) = s.split_once('=').ok_or("expected <model_id>=<path>")?;
    market_protocol::validate_model_id(id)?;
    Ok((id.to_owned(), PathBuf::from(path)))
}

/// "1.5" NEAR → yocto, exactly (no floating point).
fn parse_near(s: &str) -> anyhow::Result<u128> {
    let (whole, frac) = s.split_once('.').unwrap_or((s, ""));
    if frac.len() > 24 || whole.is_empty() && frac.is_empty() {
        bail!("`{s}` is not an amount of NEAR with at most 24 decimals");
    }
    let whole: u128 = if whole.is_empty() {
        0
    } else {
        whole
            .parse()
            .with_context(|| format!("`{s}` is not a number"))?
    };
    let frac_yocto: u128 = if frac.is_empty() {
        0
    } else {
        format!("{frac:0<24}")
            .parse()
            .with_context(|| format!("`{s}` is not a number"))?
    };
    whole
        .checked_mul(NEAR)
        .and_then(|w| w.checked_add(frac_yocto))
        .with_context(|| format!("{s} NEAR overflows u128 yocto"))
}

fn near_text(yocto: u128) -> String {
    format!("{}.{:024}", yocto / NEAR, yocto % NEAR)
        .trim_end_matches('0')
        .trim_end_matches('.')
        .to_owned()
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "off_chain_runner=info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().command {
        Command::Keys { command } => keys(command),
        Command::Sealed { command } => sealed(command).await,
        Command::Authorize {
            chain,
            user_key,
            runner,
            cap,
            cap_yocto,
            models,
            max_units_per_request,
            content,
            expires_in_hours,
        } => {
            let cap = match (cap, cap_yocto) {
                (Some(near), None) => parse_near(&near)?,
                (None, Some(yocto)) => yocto,
                _ => bail!("give the cap with --cap NEAR or --cap-yocto YOCTO"),
            };
            let terms = Terms {
                models,
                max_units_per_request,
                content,
            };
            authorize(&chain, &user_key, runner, cap, terms, expires_in_hours).await
        }
        Command::Register {
            chain,
            account_key,
            receipt_key,
            deposit,
        } => {
            let hub = chain.hub()?;
            let account = Credentials::read(&account_key)?;
            let receipt = Credentials::read(&receipt_key)?;
            let signer = Signer::new(hub.clone(), account.signer()?);
            let key: near_sdk::PublicKey = receipt
                .public_key
                .parse()
                .map_err(|e| anyhow::anyhow!("receipt key {}: {e:?}", receipt.public_key))?;
            signer
                .call(
                    methods::register_runner(&[key])
                        .deposit(parse_near(&deposit)?)
                        .gas(30_000_000_000_000),
                )
                .await
                .context("registering the runner")?;
            println!(
                "registered runner {} on {} with receipt key {}",
                account.account_id, hub.account, receipt.public_key
            );
            Ok(())
        }
        Command::Settle {
            runner_url: Some(url),
            data_dir,
            ..
        } => {
            reqwest::Client::new()
                .post(format!("{}/v1/runner/settle", url.trim_end_matches('/')))
                .bearer_auth(operator_token(&data_dir)?)
                .send()
                .await
                .and_then(reqwest::Response::error_for_status)
                .with_context(|| format!("asking the runner at {url}"))?;
            println!("the runner at {url} is settling now; `status --runner-url {url}` shows the outcome");
            Ok(())
        }
        Command::Settle {
            chain,
            account_key,
            data_dir,
            batch,
            runner_url: None,
        } => {
            let hub = chain.hub()?;
            let account = Credentials::read(&account_key)?;
            let settler = Settler::new(
                Arc::new(open_store(&data_dir)?),
                Signer::new(hub, account.signer()?),
                Settings {
                    batch,
                    ..Settings::default()
                },
                None,
            );
            let found = settler.reconcile().await?;
            if found > 0 {
                println!("{found} channels were settled on the hub already; recorded");
            }
            let report = settler.drain().await?;
            println!(
                "sent {} receipts: {} settled, {} already settled, {} refused",
                report.sent,
                report.settled,
                report.already,
                report.rejected.len()
            );
            for (user, seq, code) in report.rejected {
                println!("  refused: {user} #{seq}: {code}");
            }
            for (user, seq, code) in report.deferred {
                println!("  refused for now, to retry: {user} #{seq}: {code}");
            }
            for (user, seq, failure) in report.failed {
                println!("  failed on its own: {user} #{seq}: {failure}");
            }
            Ok(())
        }
        Command::Status {
            chain,
            runner,
            data_dir,
            runner_url,
        } => status(&chain, &runner, &data_dir, runner_url.as_deref()).await,
        Command::Serve {
            chain,
            account_key,
            receipt_key,
            models,
            content_dir,
            sealing_key,
            backend,
            echo_delay_ms,
            listen,
            data_dir,
            batch,
            keep_receipts_days,
            settle_interval,
            tx_timeout_secs,
            admission_interval_secs,
            queue,
            #[cfg(feature = "engine")]
            kv_slots,
            #[cfg(feature = "engine")]
            prefill_chunk,
            #[cfg(feature = "engine")]
            queue_timeout_secs,
            #[cfg(feature = "engine")]
            channel_slots,
            max_per_channel,
            view_ttl_ms,
            view_max_stale_secs,
            view_timeout_ms,
            expiry_margin_secs,
            max_body_bytes,
            default_max_tokens,
            client_read_timeout_secs,
            max_unsettled,
            no_settle,
        } => {
            let account = Credentials::read(&account_key)?;
            let receipt = Credentials::read(&receipt_key)?;
            let mut builder = server::Builder::new(
                chain.hub()?,
                account.account_id.clone(),
                receipt.key_pair()?,
            )
            .backend(match backend {
                Backend::Echo => server::Backend::Echo {
                    delay: Duration::from_millis(echo_delay_ms),
                },
                #[cfg(feature = "engine")]
                Backend::Gpu => {
                    server::Backend::Engine(off_chain_runner::engine::EngineBackend::Gpu)
                }
                #[cfg(feature = "engine")]
                Backend::Cpu => {
                    server::Backend::Engine(off_chain_runner::engine::EngineBackend::Cpu)
                }
            })
            .data_dir(&data_dir)
            .listen(listen)
            .queue(queue)
            .per_channel(max_per_channel)
            .admission_interval(Duration::from_secs(admission_interval_secs.max(1)))
            .views(off_chain_runner::cache::Limits {
                ttl: Duration::from_millis(view_ttl_ms),
                max_stale: Duration::from_secs(view_max_stale_secs),
                timeout: Duration::from_millis(view_timeout_ms),
                ..off_chain_runner::cache::Limits::default()
            })
            .expiry_margin(Duration::from_secs(expiry_margin_secs))
            .max_body_bytes(max_body_bytes)
            .default_max_tokens(default_max_tokens)
            .client_read_timeout(Duration::from_secs(client_read_timeout_secs.max(1)));
            for (id, path) in &models {
                builder = builder.model(id, path);
            }
            if let Some(near) = &max_unsettled {
                builder = builder.max_unsettled(parse_near(near)?);
            }
            #[cfg(feature = "engine")]
            {
                builder = builder.batching(off_chain_runner::engine::Batching {
                    slots: kv_slots,
                    prefill_chunk,
                    queue_timeout: (queue_timeout_secs > 0)
                        .then(|| Duration::from_secs(queue_timeout_secs)),
                    channel_slots: (channel_slots > 0).then_some(channel_slots),
                });
            }
            if let Some(dir) = &content_dir {
                builder = builder.content_dir(dir);
            }
            if let Some(path) = &sealing_key {
                builder = builder.sealing_key(off_chain_runner::sealed::read_sealing_key(path)?);
            }
            if !no_settle {
                builder = builder.settle_with(
                    account.signer()?,
                    Settings {
                        batch,
                        interval: Duration::from_secs_f64(settle_interval),
                        keep_receipts: Duration::from_hours(24 * keep_receipts_days),
                        outcome_timeout: Duration::from_secs(tx_timeout_secs),
                        ..Settings::default()
                    },
                );
            }
            if let Some(point) = off_chain_runner::killpoint::armed() {
                eprintln!("warning: RUNNER_KILL_AT={point}: this process kills itself there (fault tests only)");
            }
            eprintln!("checking the runner, its models and content against the hub");
            let running = builder.start().await?;
            if let Some(e) = &running.state.model_error {
                eprintln!("warning: {e}; serving no model, settling what was served before");
            }
            // Tests and scripts wait for this line.
            println!("serving on http://{}", running.addr);
            running.run_until(shutdown_signal()).await?;
            eprintln!("stopped");
            Ok(())
        }
    }
}

async fn sealed(command: SealCommand) -> anyhow::Result<()> {
    use off_chain_runner::sealed;
    match command {
        SealCommand::Seal {
            model,
            out,
            key_out,
        } => {
            let info = sealed::seal_model(&model, &out, &key_out)?;
            println!(
                "sealed {} -> {} ({} bytes); content key -> {}",
                model.display(),
                out.display(),
                info.ciphertext_size,
                key_out.display()
            );
            println!("weights_sha256: {}", hex::encode(info.weights_sha256));
            println!(
                "sealed: {}",
                serde_json::to_string(&sealed::artifact(&info))?
            );
            Ok(())
        }
        SealCommand::SealingKey { out } => {
            let public = sealed::generate_sealing_key(&out)?;
            println!("{public} -> {}", out.display());
            Ok(())
        }
        SealCommand::RegisterSealingKey {
            chain,
            account_key,
            receipt_key,
            sealing_key,
            quote,
            collateral,
            deposit,
        } => {
            let account = Credentials::read(&account_key)?;
            let signer = Signer::new(chain.hub()?, account.signer()?);
            let sealing = sealed::read_sealing_key(&sealing_key)?;
            let evidence = match (&quote, &collateral) {
                (Some(q), Some(c)) => Some(sealed::Evidence::read(q, c)?),
                _ => None,
            };
            sealed::register_sealing_key(
                &signer,
                &Credentials::read(&receipt_key)?.key_pair()?,
                &sealing,
                evidence.as_ref(),
                parse_near(&deposit)?,
            )
            .await?;
            println!(
                "registered sealing key {} for {}",
                sealing.public_key(),
                account.account_id
            );
            Ok(())
        }
        SealCommand::Grant {
            chain,
            owner_key,
            model,
            version,
            runner,
            sealing_key,
            content_key,
            require_attestation,
            quote,
            collateral,
            allow_measurement,
            allow_tcb_status,
            deposit,
        } => {
            let signer = Signer::new(chain.hub()?, Credentials::read(&owner_key)?.signer()?);
            let key = sealed::read_content_key(&content_key)?;
            let required = match (require_attestation, &quote, &collateral) {
                (true, Some(q), Some(c)) => {
                    let mut policy = market_sealing::AttestationPolicy::new(
                        allow_measurement
                            .iter()
                            .map(|m| {
                                hex::decode(m)
                                    .with_context(|| format!("--allow-measurement {m}: not hex"))
                            })
                            .collect::<anyhow::Result<_>>()?,
                    );
                    if !allow_tcb_status.is_empty() {
                        policy.allowed_tcb_statuses = allow_tcb_status;
                    }
                    Some(sealed::Required {
                        evidence: sealed::Evidence::read(q, c)?,
                        policy,
                        now_unix_secs: sealed::unix_now(),
                    })
                }
                (true, ..) => anyhow::bail!("--require-attestation needs --quote and --collateral"),
                _ => None,
            };
            sealed::grant(
                &signer,
                &sealed::Grantee {
                    model_id: &model,
                    version,
                    runner: &runner,
                    sealing_key: &sealing_key,
                },
                &key,
                required.as_ref(),
                parse_near(&deposit)?,
            )
            .await?;
            println!("granted model `{model}` version {version} to {runner}");
            Ok(())
        }
    }
}

/// SIGTERM (what service managers send) or Ctrl-C.
async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("a SIGTERM handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    eprintln!("stopping: answering the requests in flight, then settling what they earned");
}

fn keys(command: KeysCommand) -> anyhow::Result<()> {
    match command {
        KeysCommand::Generate { account, out } => {
            let creds = Credentials::generate(account);
            creds.write_new(&out)?;
            println!(
                "{} {} -> {}",
                creds.account_id,
                creds.public_key,
                out.display()
            );
        }
        KeysCommand::Show { file } => {
            let creds = Credentials::read(&file)?;
            println!("{} {}", creds.account_id, creds.public_key);
        }
    }
    Ok(())
}

/// What an authorization covers, before its ceilings are read from the hub.
struct Terms {
    models: Vec<String>,
    max_units_per_request: u64,
    content: Vec<String>,
}

async fn authorize(
    chain: &ChainArgs,
    user_key: &Path,
    runner: AccountId,
    cap: u128,
    terms: Terms,
    expires_in_hours: u64,
) -> anyhow::Result<()> {
    let hub = chain.hub()?;
    let mut models = Vec::with_capacity(terms.models.len());
    for id in &terms.models {
        let view = hub
            .view(methods::model(id))
            .await?
            .with_context(|| format!("model `{id}` is not registered on hub {}", hub.account))?;
        models.push(ModelCeiling {
            model_id: id.clone(),
            max_in_per_1k: view.model.price_in_per_1k,
            max_out_per_1k: view.model.price_out_per_1k,
            max_units_per_request: U64(terms.max_units_per_request),
        });
    }
    let mut content = Vec::with_capacity(terms.content.len());
    for id in &terms.content {
        let item = hub
            .view(methods::content(id))
            .await?
            .with_context(|| format!("content `{id}` is not registered on hub {}", hub.account))?;
        let price = item
            .price_per_use()
            .with_context(|| format!("content `{id}` is open for training, not paid per use"))?;
        content.push(ContentCeiling {
            content_id: id.clone(),
            max_per_use: U128(price),
        });
    }
    let creds = Credentials::read(user_key)?;
    let key = creds.key_pair()?;
    let now = match hub.block_time_ns().await {
        Ok(ns) => ns,
        Err(e) => {
            eprintln!("warning: reading the chain's clock failed ({e}); using this machine's");
            off_chain_runner::state::wall_clock_ns()
        }
    };
    let authorization = Authorization {
        hub: hub.account.clone(),
        chain_id: hub.chain_id.clone(),
        user: creds.account_id.clone(),
        runner,
        cap: U128(cap),
        expires_at_ns: U64(now.saturating_add(expires_in_hours.saturating_mul(3_600_000_000_000))),
        models,
        content,
        public_key: key.public_key(),
    };
    authorization.validate().map_err(|e| anyhow::anyhow!(e))?;
    let signed = SignedAuthorization::sign(authorization, rand::random(), &key);
    eprintln!("{}", signed.authorization.message());
    println!("{}", token::encode(&signed));
    Ok(())
}

/// The receipt store of `data_dir`, with what to do when a running `serve` holds it.
fn open_store(data_dir: &Path) -> anyhow::Result<Store> {
    let path = store_path(data_dir);
    Store::open(&path).with_context(|| {
        format!(
            "opening {}: if `serve` is running on it, pass --runner-url http://<its --listen>",
            path.display()
        )
    })
}

/// The token a `serve` on `data_dir` wrote for its operator's endpoints.
fn operator_token(data_dir: &Path) -> anyhow::Result<String> {
    off_chain_runner::operator::read(data_dir).with_context(|| {
        format!(
            "reading {} (written by `serve --data-dir {}`; pass the same --data-dir)",
            off_chain_runner::operator::path(data_dir).display(),
            data_dir.display()
        )
    })
}

async fn status(
    chain: &ChainArgs,
    runner: &AccountId,
    data_dir: &Path,
    runner_url: Option<&str>,
) -> anyhow::Result<()> {
    let hub = chain.hub()?;
    let channels: Vec<ChannelStatus> = match runner_url {
        Some(url) => {
            reqwest::Client::new()
                .get(format!("{}/v1/runner/status", url.trim_end_matches('/')))
                .bearer_auth(operator_token(data_dir)?)
                .send()
                .await
                .and_then(reqwest::Response::error_for_status)
                .with_context(|| format!("asking the runner at {url}"))?
                .json()
                .await?
        }
        None => open_store(data_dir)?.status()?,
    };
    let backlog: Vec<_> = channels.iter().filter(|c| c.pending()).collect();
    let unsettled = backlog
        .iter()
        .try_fold(0u128, |s, c| s.checked_add(c.amount.0 - c.settled_amount.0))
        .context("backlog overflows")?;
    println!("runner {runner} on {} ({})", hub.account, hub.chain_id);
    println!(
        "backlog: {} channels, {} NEAR unsettled",
        backlog.len(),
        near_text(unsettled)
    );
    println!(
        "{:<40} {:>6} {:>8} {:>26} {:>26}  note",
        "user", "seq", "settled", "charged (NEAR)", "settled (NEAR)"
    );
    for c in &channels {
        println!(
            "{:<40} {:>6} {:>8} {:>26} {:>26}  {}",
            c.user.as_str(),
            c.seq,
            c.settled_seq,
            near_text(c.amount.0),
            near_text(c.settled_amount.0),
            c.note
        );
    }
    match hub.view(methods::runner(runner)).await {
        Ok(Some(state)) => println!(
            "on chain: earnings {} NEAR, bond {} NEAR{}",
            near_text(state.earnings.0),
            near_text(state.bond.0),
            if state.left { " (left)" } else { "" }
        ),
        Ok(None) => println!("on chain: {runner} is not registered"),
        Err(e) => println!("on chain: unknown ({e})"),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn near_amounts_parse_exactly() {
        assert_eq!(parse_near("1").unwrap(), NEAR);
        assert_eq!(parse_near("0.5").unwrap(), NEAR / 2);
        assert_eq!(parse_near(".000000000000000000000001").unwrap(), 1);
        assert!(parse_near("0.0000000000000000000000001").is_err());
        assert!(parse_near("1e3").is_err());
        assert!(parse_near("").is_err());
        assert_eq!(near_text(NEAR + NEAR / 4), "1.25");
        assert_eq!(near_text(0), "0");
    }
}
