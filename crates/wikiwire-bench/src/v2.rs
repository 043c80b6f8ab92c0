//! `/v2/stream` (EventStreams) fan-out against a real `wikiwire serve` process: N clients on
//! `GET /v2/stream/recentchange` while a MediaWiki-like feed sends a steady rate of RCFeed
//! datagrams, one change at a time, as a wiki does. Every client checks that it receives every
//! event once and in order (by the id KafkaSSE-style `id:` lines carry); a client the hub
//! disconnects (one that fell behind the bus) reconnects with its last id, as EventSource and
//! sseclient do, and the reconnections are counted. Latency is from sending the datagram to
//! reading the event's `data:` line; the hub's resident memory per connected client and its CPU
//! time during the run are read from /proc.

use std::io::Write as _;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::irc::start_hub_with;
use crate::percentile;

#[derive(clap::Args)]
pub struct Args {
    /// Client counts to measure, one hub each.
    #[arg(long, value_delimiter = ',', default_value = "1000,10000")]
    clients: Vec<usize>,
    /// Events per second, each its own datagram.
    #[arg(long, default_value_t = 50)]
    rate: u64,
    /// Seconds of publishing at that rate.
    #[arg(long, default_value_t = 20)]
    seconds: u64,
    /// Read the events as NDJSON (`Accept: application/json`) instead of SSE.
    #[arg(long)]
    json: bool,
    /// The wikiwire binary (default: next to this one; build it with `cargo build --release -p wikiwire`).
    #[arg(long)]
    binary: Option<PathBuf>,
}

/// What every client adds to.
#[derive(Default)]
struct Tally {
    /// Events received (each client's every event).
    received: AtomicU64,
    /// An event whose id was not the one after the client's last: ids skipped over.
    missing: AtomicU64,
    /// An event at or before the client's last id.
    duplicates: AtomicU64,
    /// Streams the hub ended, after which the client came back with its last id.
    reconnections: AtomicU64,
    /// Clients whose stream has begun (its `: ok` comment or the NDJSON stream's first empty line read).
    ready: AtomicU64,
    /// Set to make every client stop at its next line.
    stop: AtomicBool,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let binary = match args.binary {
        Some(binary) => binary,
        None => std::env::current_exe()?.with_file_name("wikiwire"),
    };
    let files = open_files_limit()?;
    println!(
        "wikiwire /v2/stream benchmark: {} cores shared by the hub and these clients; open files limit {files} \
         (each process); {} events/s for {} s as RCFeed datagrams, {}",
        std::thread::available_parallelism()?.get(),
        args.rate,
        args.seconds,
        if args.json { "read as NDJSON" } else { "read as SSE" },
    );
    for &count in &args.clients {
        if count as u64 + 200 > files {
            println!("{count} clients: skipped, the open files limit ({files}) is too low (raise ulimit -n)");
            continue;
        }
        let directory = tempfile::tempdir()?;
        let limit = count + 1000;
        let hub = start_hub_with(
            binary.clone(),
            directory.path(),
            &format!(
                "max_connections = {limit}\nmax_connections_per_ip = {limit}\nreserved_connections = 0\n"
            ),
            "[[publisher]]\nname = \"mw\"\ntoken = \"wwt_benchmark-mediawiki-publisher-token\"\n\
             wikis = [\"mwbench\"]\nengine = \"mediawiki\"\nbase_url = \"https://bench.example/w/\"\n\
             [[rcfeed]]\nlisten = \"127.0.0.1:0\"\npublisher = \"mw\"\n",
        )
        .await?;
        let pid = hub.pid().context("hub exited")?;
        let feed = hub.rcfeed.clone().context("the hub printed no RCFEED address")?;
        let http = hub.http.trim_start_matches("http://").to_owned();
        let epoch = Instant::now();
        let baseline = hub.rss_kib()?;

        let tally = Arc::new(Tally::default());
        let mut clients = Vec::with_capacity(count);
        let mut samples = Vec::with_capacity(count);
        for index in 0..count {
            let latencies = Arc::new(Mutex::new(Vec::new()));
            samples.push(Arc::clone(&latencies));
            clients.push(tokio::spawn(client(http.clone(), args.json, Arc::clone(&tally), latencies, epoch)));
            if index % 100 == 99 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
        let started = Instant::now();
        while tally.ready.load(Ordering::Relaxed) < count as u64 {
            if started.elapsed() > Duration::from_secs(180) {
                bail!("only {} of {count} clients connected in 180 s", tally.ready.load(Ordering::Relaxed));
            }
            if let Some(ended) = clients.iter().position(|client| client.is_finished()) {
                let result = clients.swap_remove(ended).await?;
                bail!("a client ended while connecting: {result:?}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let connecting = started.elapsed();
        tokio::time::sleep(Duration::from_secs(1)).await;
        let idle = hub.rss_kib()?;
        let per_client = idle.saturating_sub(baseline) as f64 / count as f64;

        // The feed: one datagram per change at a steady rate, stamped with when it was sent.
        let (cpu_before, own_before) = (cpu_ticks(pid)?, cpu_ticks(std::process::id())?);
        let udp = tokio::net::UdpSocket::bind("127.0.0.1:0").await?;
        let total = args.rate * args.seconds;
        let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / args.rate as f64));
        let publishing = Instant::now();
        for n in 0..total {
            ticker.tick().await;
            let sent = epoch.elapsed().as_micros() as u64;
            udp.send_to(&datagram(n, sent), &feed).await?;
        }
        let published = publishing.elapsed();
        let expected = count as u64 * total;
        let waiting = Instant::now();
        while tally.received.load(Ordering::Relaxed) < expected
            && waiting.elapsed() < Duration::from_secs(120)
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let drained = waiting.elapsed();
        let cpu_seconds = (cpu_ticks(pid)? - cpu_before) as f64 / 100.0;
        let own_seconds = (cpu_ticks(std::process::id())? - own_before) as f64 / 100.0;
        let busy = hub.rss_kib()?;
        tally.stop.store(true, Ordering::Relaxed);
        for client in &clients {
            client.abort();
        }
        let mut all: Vec<Duration> = Vec::with_capacity(expected as usize);
        for latencies in samples {
            all.extend(
                latencies.lock().expect("latencies").iter().map(|&micros| Duration::from_micros(micros)),
            );
        }
        all.sort_unstable();
        let received = tally.received.load(Ordering::Relaxed);
        println!(
            "{count} clients (connected in {:.1} s): {received} of {expected} deliveries ({} events × {count}), \
             {} missing, {} duplicates, {} reconnections; latency p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; \
             {:.0} deliveries/s over {:.1} s of publishing + {:.2} s to drain; hub CPU {:.1} s ({:.0}% of one core), the clients' {:.1} s; \
             hub RSS {:.1} MiB before, {:.1} MiB with the clients idle ({:.1} KiB per client), {:.1} MiB after the run",
            connecting.as_secs_f64(),
            total,
            tally.missing.load(Ordering::Relaxed),
            tally.duplicates.load(Ordering::Relaxed),
            tally.reconnections.load(Ordering::Relaxed),
            percentile(&all, 0.5),
            percentile(&all, 0.99),
            all.last().map_or(0.0, |max| max.as_secs_f64() * 1000.0),
            received as f64 / (published + drained).as_secs_f64(),
            published.as_secs_f64(),
            drained.as_secs_f64(),
            cpu_seconds,
            cpu_seconds * 100.0 / (published + drained).as_secs_f64(),
            own_seconds,
            baseline as f64 / 1024.0,
            idle as f64 / 1024.0,
            per_client,
            busy as f64 / 1024.0,
        );
        std::io::stdout().flush()?;
        drop(hub);
    }
    Ok(())
}

/// A `JSONRCFeedFormatter` datagram of an edit, its comment the microseconds since the epoch at
/// which it was sent (a real change's size: about 700 bytes).
fn datagram(n: u64, sent_micros: u64) -> Vec<u8> {
    let title = format!("Bench page {n}");
    let underscored = title.replace(' ', "_");
    let seconds =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    json!({
        "$schema": "/mediawiki/recentchange/1.0.0",
        "meta": {"uri": format!("https://bench.example/wiki/{underscored}"), "domain": "bench.example", "stream": "mediawiki.recentchange"},
        "id": 1_000_000 + n, "type": "edit", "namespace": 0, "title": title,
        "title_url": format!("https://bench.example/wiki/{underscored}"),
        "comment": sent_micros.to_string(), "timestamp": seconds, "user": "BenchUser", "bot": false,
        "notify_url": format!("https://bench.example/w/index.php?diff={}&oldid={}", 2 * n + 2, 2 * n + 1),
        "minor": false, "patrolled": true, "length": {"old": 1200 + n, "new": 1210 + n},
        "revision": {"old": 2 * n + 1, "new": 2 * n + 2},
        "server_url": "https://bench.example", "server_name": "bench.example", "server_script_path": "/w",
        "wiki": "mwbench", "parsedcomment": sent_micros.to_string(),
    })
    .to_string()
    .into_bytes()
}

/// One client: reads its stream, checks the ids, records latencies; when the hub ends the
/// stream, reconnects with the last id it received.
async fn client(
    address: String,
    json_lines: bool,
    tally: Arc<Tally>,
    latencies: Arc<Mutex<Vec<u64>>>,
    epoch: Instant,
) -> anyhow::Result<()> {
    let mut last: u64 = 0;
    let mut first = true;
    while !tally.stop.load(Ordering::Relaxed) {
        let mut request = format!("GET /v2/stream/recentchange HTTP/1.1\r\nHost: {address}\r\n");
        if json_lines {
            request.push_str("Accept: application/json\r\n");
        }
        if !first {
            request.push_str(&format!("Last-Event-ID: {last}\r\n"));
            tally.reconnections.fetch_add(1, Ordering::Relaxed);
        }
        request.push_str("\r\n");
        let mut stream = TcpStream::connect(&address).await?;
        stream.write_all(request.as_bytes()).await?;
        let mut reader = BufReader::with_capacity(16 * 1024, stream);
        let mut line = Vec::with_capacity(2048);
        reader.read_until(b'\n', &mut line).await?;
        if !line.starts_with(b"HTTP/1.1 200") {
            bail!("the hub answered {:?}", String::from_utf8_lossy(&line).trim_end());
        }
        // The chunked body's size lines are read as lines too; they match nothing below.
        let mut headers_done = false;
        let mut pending_id: Option<u64> = None;
        loop {
            line.clear();
            if reader.read_until(b'\n', &mut line).await? == 0 {
                break;
            }
            let text = line.strip_suffix(b"\n").unwrap_or(&line);
            let text = text.strip_suffix(b"\r").unwrap_or(text);
            if !headers_done {
                headers_done = text.is_empty();
                continue;
            }
            if first && (text.starts_with(b":") || (json_lines && text.is_empty())) {
                first = false;
                tally.ready.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            let (id, data) = if let Some(id) = text.strip_prefix(b"id: ") {
                pending_id = number_after(id, b"\"offset\":").map(|offset| offset - 1);
                continue;
            } else if let Some(data) = text.strip_prefix(b"data: ") {
                match pending_id.take() {
                    Some(id) => (id, data),
                    None => continue, // a gap's data: never in this run
                }
            } else if json_lines && text.starts_with(b"{") {
                match number_after(text, b"\"offset\":") {
                    Some(id) => (id, text),
                    None => continue,
                }
            } else {
                continue;
            };
            let now = epoch.elapsed().as_micros() as u64;
            if id <= last {
                tally.duplicates.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            tally.missing.fetch_add(id - last - 1, Ordering::Relaxed);
            last = id;
            tally.received.fetch_add(1, Ordering::Relaxed);
            if let Some(sent) = number_after(data, b"\"comment\":\"") {
                latencies.lock().expect("latencies").push(now.saturating_sub(sent));
            }
        }
        if first {
            bail!("the stream ended before it began");
        }
    }
    Ok(())
}

/// The decimal number right after `key` in `text`.
fn number_after(text: &[u8], key: &[u8]) -> Option<u64> {
    let at = text.windows(key.len()).position(|window| window == key)? + key.len();
    let digits = text[at..].iter().take_while(|byte| byte.is_ascii_digit()).count();
    std::str::from_utf8(&text[at..at + digits]).ok()?.parse().ok()
}

/// User plus system CPU time of a process, in clock ticks (1/100 s on Linux).
fn cpu_ticks(pid: u32) -> anyhow::Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // After the command's name in parentheses: state is field 3, utime 14, stime 15.
    let fields: Vec<&str> = stat.rsplit_once(')').context("stat")?.1.split_whitespace().collect();
    Ok(fields.get(11).context("utime")?.parse::<u64>()? + fields.get(12).context("stime")?.parse::<u64>()?)
}

/// This process's soft limit of open files (the hub inherits it).
fn open_files_limit() -> anyhow::Result<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits")?;
    let line =
        limits.lines().find(|line| line.starts_with("Max open files")).context("no open files limit")?;
    let soft = line.split_whitespace().nth(3).context("limit")?;
    Ok(soft.parse().unwrap_or(u64::MAX))
}
