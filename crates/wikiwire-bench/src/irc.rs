//! IRC fan-out figures against a real `wikiwire serve` process: deliveries per second to N
//! listeners on one channel, publish-to-receive latency at a fixed rate, and resident memory per
//! idle listener (read from /proc).

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::Mutex;

use crate::percentile;

pub const TOKEN: &str = "wwt_benchmark-irc-publisher-token";

#[derive(clap::Args)]
pub struct Args {
    /// Listener counts to measure.
    #[arg(long, value_delimiter = ',', default_value = "1000,5000")]
    listeners: Vec<usize>,
    /// Events published as fast as possible for the throughput figure.
    #[arg(long, default_value_t = 1000)]
    burst: usize,
    /// Events per second for the latency figure.
    #[arg(long, default_value_t = 20)]
    rate: u64,
    /// Seconds of publishing at that rate.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// The wikiwire binary (default: next to this one; build it with `cargo build --release -p wikiwire`).
    #[arg(long)]
    binary: Option<PathBuf>,
}

pub struct Hub {
    child: tokio::process::Child,
    pub http: String,
    pub irc: String,
    /// The first `[[rcfeed]]` listener's address, when the configuration has one.
    pub rcfeed: Option<String>,
}

impl Hub {
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    pub fn rss_kib(&self) -> anyhow::Result<u64> {
        rss_kib(self.child.id().context("hub exited")?)
    }

    /// Publishes `body`, one event or an array of them, as the bench publisher over HTTP.
    pub async fn publish(&self, client: &reqwest::Client, body: &serde_json::Value) -> anyhow::Result<()> {
        client
            .post(wikiwire_event::api::events(&self.http))
            .bearer_auth(TOKEN)
            .json(body)
            .send()
            .await?
            .error_for_status()?;
        Ok(())
    }
}

pub async fn start_hub(binary: PathBuf, directory: &std::path::Path) -> anyhow::Result<Hub> {
    start_hub_with(binary, directory, "", "").await
}

/// A hub whose configuration has `http` added to its `[http]` table and `rest` at its end.
pub async fn start_hub_with(
    binary: PathBuf,
    directory: &std::path::Path,
    http: &str,
    rest: &str,
) -> anyhow::Result<Hub> {
    let config = directory.join("bench.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = {:?}\n[http]\nlisten = \"127.0.0.1:0\"\n{http}[irc]\nlisten = \"127.0.0.1:0\"\nmax_per_ip = 0\nmax_clients = 20000\n\
             [limits]\npublish_rate = 1000000\npublish_burst = 1000000\n\
             [[publisher]]\nname = \"bench\"\ntoken = \"{TOKEN}\"\nwikis = [\"BenchWiki\"]\n{rest}",
            directory.join("data")
        ),
    )?;
    let mut child = tokio::process::Command::new(&binary)
        .args(["serve", "--config"])
        .arg(&config)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| {
            format!("cannot start {} (build it with `cargo build --release -p wikiwire`)", binary.display())
        })?;
    let mut lines = BufReader::new(child.stdout.take().context("stdout")?).lines();
    let (mut http, mut irc, mut rcfeed) = (None, None, None);
    while let Some(line) = lines.next_line().await? {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["HTTP", url] => http = Some(url.trim_end_matches('/').to_owned()),
            ["IRC", url] => irc = Some(url.trim_start_matches("irc://").trim_end_matches('/').to_owned()),
            ["RCFEED", address, ..] if rcfeed.is_none() => {
                rcfeed = Some(address.trim_start_matches("udp://").trim_end_matches('/').to_owned())
            }
            _ if line.starts_with("Stop it with") => break,
            _ => {}
        }
    }
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    match (http, irc) {
        (Some(http), Some(irc)) => Ok(Hub { child, http, irc, rcfeed }),
        _ => bail!("the hub did not print its addresses"),
    }
}

/// `count` listeners on `#BenchWiki.events`, joined, counting deliveries and collecting latencies.
pub struct Listeners {
    received: Arc<AtomicU64>,
    latencies: Arc<Mutex<Vec<Duration>>>,
    readers: Vec<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl Listeners {
    /// Connects them (a hundred at a time) and returns once every one has joined.
    pub async fn join(address: &str, count: usize, epoch: Instant) -> anyhow::Result<Listeners> {
        let received = Arc::new(AtomicU64::new(0));
        let latencies = Arc::new(Mutex::new(Vec::new()));
        let (ready_sender, mut ready) = tokio::sync::mpsc::channel(count.max(1));
        let mut readers = Vec::with_capacity(count);
        for index in 0..count {
            readers.push(tokio::spawn(listener(
                address.to_owned(),
                format!("l{index}"),
                Arc::clone(&received),
                Arc::clone(&latencies),
                epoch,
                ready_sender.clone(),
            )));
            if index % 100 == 99 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
        drop(ready_sender);
        for joined in 0..count {
            match tokio::time::timeout(Duration::from_secs(180), ready.recv()).await {
                Ok(Some(())) => {}
                Ok(None) => bail!("only {joined} of {count} listeners joined (the others ended)"),
                Err(_) => bail!("only {joined} of {count} listeners joined in 180 s"),
            }
        }
        Ok(Listeners { received, latencies, readers })
    }

    /// Waits until `expected` deliveries arrived, at most `limit`.
    pub async fn wait_for(&self, expected: u64, limit: Duration, what: &str) -> anyhow::Result<()> {
        let started = Instant::now();
        while self.received.load(Ordering::Relaxed) < expected {
            anyhow::ensure!(
                started.elapsed() < limit,
                "{what}: {} of {expected} deliveries after {limit:?}",
                self.received.load(Ordering::Relaxed)
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        Ok(())
    }

    /// The latencies collected since the last call, sorted.
    pub async fn take_latencies(&self) -> Vec<Duration> {
        let mut samples = std::mem::take(&mut *self.latencies.lock().await);
        samples.sort_unstable();
        samples
    }
}

impl Drop for Listeners {
    fn drop(&mut self) {
        for reader in &self.readers {
            reader.abort();
        }
    }
}

/// One listener: joins once registered (some servers drop a JOIN sent before), says so on
/// `ready`, counts event lines and records latencies from the `comment` field, which carries the
/// microseconds since `epoch` at which the event was published.
async fn listener(
    address: String,
    nick: String,
    received: Arc<AtomicU64>,
    latencies: Arc<Mutex<Vec<Duration>>>,
    epoch: Instant,
    ready: tokio::sync::mpsc::Sender<()>,
) -> anyhow::Result<()> {
    let stream = TcpStream::connect(&address).await?;
    let (read, mut write) = stream.into_split();
    write.write_all(format!("NICK {nick}\r\nUSER {nick} 0 * :bench\r\n").as_bytes()).await?;
    let mut lines = BufReader::new(read).lines();
    while let Some(line) = lines.next_line().await? {
        if line.starts_with("PING") {
            write.write_all(format!("{}\r\n", line.replacen("PING", "PONG", 1)).as_bytes()).await?;
        } else if line.contains(" 376 ") || line.contains(" 422 ") {
            write.write_all(b"JOIN #BenchWiki.events\r\n").await?;
        } else if line.contains(" 366 ") {
            let _ = ready.send(()).await;
        } else if line.contains(" PRIVMSG ") {
            received.fetch_add(1, Ordering::Relaxed);
            let sent = line.rsplit("comment=").next().and_then(|rest| rest.split('&').next());
            if let Some(micros) = sent.and_then(|sent| sent.trim().parse::<u64>().ok()) {
                let latency = epoch.elapsed().saturating_sub(Duration::from_micros(micros));
                latencies.lock().await.push(latency);
            }
        } else if line.starts_with("ERROR") {
            break;
        }
    }
    Ok(())
}

/// A process's resident memory, from /proc.
pub fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status.lines().find(|line| line.starts_with("VmRSS:")).context("no VmRSS")?;
    Ok(line.split_whitespace().nth(1).context("VmRSS value")?.parse()?)
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let binary = match args.binary {
        Some(binary) => binary,
        None => std::env::current_exe()?.with_file_name("wikiwire"),
    };
    println!(
        "wikiwire IRC fan-out benchmark: one channel, {} cores shared by the hub and these listeners",
        std::thread::available_parallelism()?.get()
    );
    for &count in &args.listeners {
        let directory = tempfile::tempdir()?;
        let hub = start_hub(binary.clone(), directory.path()).await?;
        let client = reqwest::Client::new();
        let epoch = Instant::now();
        let baseline = hub.rss_kib()?;
        let listeners = Listeners::join(&hub.irc, count, epoch).await?;
        tokio::time::sleep(Duration::from_secs(1)).await;
        let idle = hub.rss_kib()?;
        let per_listener = (idle.saturating_sub(baseline)) as f64 * 1024.0 / count as f64;

        // Throughput: a burst published as fast as possible, until every listener has it all.
        let started = Instant::now();
        for chunk in 0..args.burst.div_ceil(100) {
            let batch: serde_json::Value = (0..100.min(args.burst - chunk * 100))
                .map(|n| json!({"wiki": "BenchWiki", "action": "page_changed", "page": format!("Burst {chunk}/{n}"), "user": "bench"}))
                .collect();
            hub.publish(&client, &batch).await?;
        }
        let expected = (count * args.burst) as u64;
        listeners.wait_for(expected, Duration::from_secs(300), "the burst").await?;
        let burst_elapsed = started.elapsed();

        // Latency at a fixed rate, one event per request.
        listeners.take_latencies().await;
        let interval = Duration::from_secs_f64(1.0 / args.rate as f64);
        let total = args.rate * args.seconds;
        let mut ticker = tokio::time::interval(interval);
        for n in 0..total {
            ticker.tick().await;
            let sent = epoch.elapsed().as_micros() as u64;
            let event = json!({"wiki": "BenchWiki", "action": "page_changed", "page": format!("Rate {n}"), "user": "bench", "comment": sent.to_string()});
            hub.publish(&client, &event).await?;
        }
        let expected = expected + count as u64 * total;
        listeners.wait_for(expected, Duration::from_secs(600), "the rate events").await?;
        let busy = hub.rss_kib()?;
        let samples = listeners.take_latencies().await;
        drop(listeners);
        println!(
            "{count} listeners: burst of {} events → {:.0} deliveries/s ({:.2} s); at {} events/s: latency p50 {:.1} ms, p99 {:.1} ms ({} samples); \
             hub RSS {:.1} MiB idle ({:.1} KiB per idle listener), {:.1} MiB after the runs",
            args.burst,
            (count * args.burst) as f64 / burst_elapsed.as_secs_f64(),
            burst_elapsed.as_secs_f64(),
            args.rate,
            percentile(&samples, 0.5),
            percentile(&samples, 0.99),
            samples.len(),
            idle as f64 / 1024.0,
            per_listener / 1024.0,
            busy as f64 / 1024.0,
        );
        drop(hub);
    }
    Ok(())
}
