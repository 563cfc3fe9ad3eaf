//! `GET /metrics`, in the `OpenMetrics` text format (`prometheus-client`): counters and
//! histograms updated as the runner works, and gauges read per scrape from state kept in
//! memory (`Scraped`), so a scrape costs no disk read however large the store grows.

use std::time::Duration;

use prometheus_client::{
    collector::Collector,
    encoding::{
        text::{encode_eof, encode_registry},
        DescriptorEncoder, EncodeGaugeValue, EncodeLabelSet, EncodeMetric,
    },
    metrics::{
        counter::{ConstCounter, Counter},
        family::Family,
        gauge::ConstGauge,
        histogram::{exponential_buckets, Histogram},
    },
    registry::{Registry, Unit},
};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: String,
    status: u16,
}

/// What an RPC call was for.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RpcLabels {
    pub call: RpcCall,
}

#[derive(
    Clone, Copy, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelValue,
)]
pub enum RpcCall {
    /// A hub view (keys, channels, prices, the clock).
    View,
    /// A `settle` transaction, sent until its final outcome.
    Settle,
}

pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    pub tokens_in: Counter,
    pub tokens_out: Counter,
    pub receipts_signed: Counter,
    pub settle_batches: Counter,
    pub settle_failures: Counter,
    pub receipts_settled: Counter,
    pub receipts_rejected: Counter,
    /// Generation stopped because the client went away or stopped reading.
    pub client_disconnects: Counter,
    /// Inference failed inside the engine (a GPU or driver error), not the request.
    pub inference_errors: Counter,
    /// From a request's arrival to its first generated piece.
    pub time_to_first_token: Histogram,
    /// Between two generated pieces of one request.
    pub inter_token: Histogram,
    /// Committing a receipt durably (the write transaction and its fsync).
    pub store_commit: Histogram,
    rpc: Family<RpcLabels, Histogram>,
}

/// Seconds, from 1 ms to about 65 s.
fn latency_buckets() -> impl Iterator<Item = f64> {
    exponential_buckets(0.001, 2.0, 17)
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("runner");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "requests",
            "HTTP requests by route and status",
            requests.clone(),
        );
        let counter = |registry: &mut Registry, name: &str, help: &str| {
            let c = Counter::default();
            registry.register(name, help, c.clone());
            c
        };
        let histogram = |registry: &mut Registry, name: &str, help: &str| {
            let h = Histogram::new(latency_buckets());
            registry.register_with_unit(name, help, Unit::Seconds, h.clone());
            h
        };
        let rpc = Family::<RpcLabels, Histogram>::new_with_constructor(
            (|| Histogram::new(latency_buckets())) as fn() -> Histogram,
        );
        registry.register_with_unit(
            "rpc",
            "RPC calls to the node, by what they were for",
            Unit::Seconds,
            rpc.clone(),
        );
        Self {
            tokens_in: counter(&mut registry, "tokens_in", "Prompt tokens served"),
            tokens_out: counter(&mut registry, "tokens_out", "Tokens generated"),
            receipts_signed: counter(
                &mut registry,
                "receipts_signed",
                "Receipts signed and stored",
            ),
            settle_batches: counter(
                &mut registry,
                "settle_batches",
                "`settle` transactions sent",
            ),
            settle_failures: counter(
                &mut registry,
                "settle_failures",
                "`settle` transactions without a successful final outcome",
            ),
            receipts_settled: counter(
                &mut registry,
                "receipts_settled",
                "Receipts whose settlement is final",
            ),
            receipts_rejected: counter(
                &mut registry,
                "receipts_rejected",
                "Receipts the hub refused",
            ),
            client_disconnects: counter(
                &mut registry,
                "client_disconnects",
                "Generations cut short because the client went away or stopped reading",
            ),
            inference_errors: counter(
                &mut registry,
                "inference_errors",
                "Inference failures in the engine (GPU or driver errors)",
            ),
            time_to_first_token: histogram(
                &mut registry,
                "time_to_first_token",
                "From a generation request's arrival to its first piece",
            ),
            inter_token: histogram(
                &mut registry,
                "inter_token",
                "Between two pieces of one generation",
            ),
            store_commit: histogram(
                &mut registry,
                "store_commit",
                "Committing a receipt durably, fsync included",
            ),
            requests,
            rpc,
            registry,
        }
    }
}

impl Metrics {
    pub fn request(&self, route: &str, status: u16) {
        self.requests
            .get_or_create(&RequestLabels {
                route: route.to_owned(),
                status,
            })
            .inc();
    }

    pub fn add(counter: &Counter, n: u64) {
        counter.inc_by(n);
    }

    pub fn observe(histogram: &Histogram, took: Duration) {
        histogram.observe(took.as_secs_f64());
    }

    /// The histogram of `call`'s durations, whatever their result.
    pub fn rpc_latency(&self, call: RpcCall) -> Histogram {
        self.rpc.get_or_create_owned(&RpcLabels { call })
    }

    /// The text exposition, with what `scraped` read at this scrape.
    pub fn render(&self, scraped: Scraped) -> String {
        let mut now = Registry::with_prefix("runner");
        now.register_collector(Box::new(scraped));
        let mut out = String::new();
        encode_registry(&mut out, &self.registry)
            .and_then(|()| encode_registry(&mut out, &now))
            .and_then(|()| encode_eof(&mut out))
            .expect("writing to a String cannot fail");
        out
    }
}

/// What is read at each scrape, from memory.
#[derive(Debug, Default)]
pub struct Scraped {
    pub unsettled: crate::store::Unsettled,
    /// This machine's time, which receipts are issued by (ns).
    pub now_ns: u64,
    /// The chain's, which authorizations expire by (ns).
    pub chain_now_ns: u64,
    /// Hub views served stale because the node failed.
    pub stale_views: u64,
    /// Per model: requests running or waiting for a place.
    pub queue_depth: Vec<(String, u64)>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ModelLabels {
    model: String,
}

impl Collector for Scraped {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        fn gauge<N: EncodeGaugeValue>(
            encoder: &mut DescriptorEncoder,
            name: &str,
            help: &str,
            unit: Option<&Unit>,
            value: N,
        ) -> Result<(), std::fmt::Error> {
            let g = ConstGauge::new(value);
            g.encode(encoder.encode_descriptor(name, help, unit, g.metric_type())?)
        }
        let secs = |ns: u64| Duration::from_nanos(ns).as_secs_f64();
        let u = &self.unsettled;
        gauge(
            &mut encoder,
            "settlement_backlog",
            "Channels with a receipt to settle",
            None,
            i64::try_from(u.channels).unwrap_or(i64::MAX),
        )?;
        // A float: Prometheus has no wider number. Exact up to 2^53 yocto.
        #[allow(clippy::cast_precision_loss)]
        gauge(
            &mut encoder,
            "unsettled_yocto",
            "Yocto signed for and not yet settled: the value at risk",
            None,
            u.amount as f64,
        )?;
        if let Some(at) = u.oldest_ns {
            gauge(
                &mut encoder,
                "oldest_pending_receipt",
                "Age of the oldest unsettled receipt",
                Some(&Unit::Seconds),
                secs(self.now_ns.saturating_sub(at)),
            )?;
        }
        if let Some(at) = u.nearest_expiry_ns {
            gauge(
                &mut encoder,
                "nearest_expiry",
                "Until the soonest expiry of an authorization with something unsettled",
                Some(&Unit::Seconds),
                secs(at.saturating_sub(self.chain_now_ns)),
            )?;
        }
        let stale = ConstCounter::new(self.stale_views);
        stale.encode(encoder.encode_descriptor(
            "views_stale",
            "Hub views served stale while the node failed",
            None,
            stale.metric_type(),
        )?)?;
        let depth = ConstGauge::new(0i64);
        let mut family = encoder.encode_descriptor(
            "queue_depth",
            "Requests running or waiting for a place, per model",
            None,
            depth.metric_type(),
        )?;
        for (model, n) in &self.queue_depth {
            let g = ConstGauge::new(i64::try_from(*n).unwrap_or(i64::MAX));
            g.encode(family.encode_family(&ModelLabels {
                model: model.clone(),
            })?)?;
        }
        Ok(())
    }
}
