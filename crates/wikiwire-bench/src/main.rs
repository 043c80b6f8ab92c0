//! `wikiwire-bench`: measures a hub started in this process, through its real sockets.
//!
//!     cargo run --release -p wikiwire-bench -- http
//!     cargo build --release -p wikiwire && cargo run --release -p wikiwire-bench -- irc
//!     cargo build --release -p wikiwire && cargo run --release -p wikiwire-bench -- versus
//!     cargo build --release -p wikiwire && cargo run --release -p wikiwire-bench -- v2
//!
//! Figures are printed, never asserted: timing belongs in notes, not in tests.

mod catchup;
mod http;
mod irc;
mod nats;
mod v2;
mod versus;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(about = "Benchmarks of wikiwire over real sockets")]
struct Cli {
    #[command(subcommand)]
    bench: Bench,
}

#[derive(Subcommand)]
enum Bench {
    /// Publishing over HTTP (one event per request, batches of 100) and a 10,000-event history read.
    Http(http::Args),
    /// IRC fan-out: deliveries per second, latency and memory with many listeners on one channel.
    Irc(irc::Args),
    /// `wikiwire listen` resuming far behind: catch-up events per second.
    Catchup(catchup::Args),
    /// Side by side with InspIRCd 3 (Debian): one publisher line per event, burst and steady rate,
    /// N listeners; deliveries per second, latency, memory, and the ratios.
    Versus(versus::Args),
    /// `/v2/stream` (EventStreams) fan-out: N clients at a steady rate of RCFeed datagrams;
    /// every delivery counted, latency, memory per client.
    V2(v2::Args),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().bench {
        Bench::Http(args) => http::run(args).await,
        Bench::Irc(args) => irc::run(args).await,
        Bench::Catchup(args) => catchup::run(args).await,
        Bench::Versus(args) => versus::run(args).await,
        Bench::V2(args) => v2::run(args).await,
    }
}

/// Percentile of sorted durations, in milliseconds.
pub fn percentile(sorted: &[std::time::Duration], fraction: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let index = ((sorted.len() as f64 - 1.0) * fraction).round() as usize;
    sorted[index].as_secs_f64() * 1000.0
}
