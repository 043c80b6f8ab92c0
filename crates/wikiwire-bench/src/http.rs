//! HTTP publishing and history figures.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;
use wikiwire::cmd::serve;
use wikiwire_hub::config::{ClusterConfig, Config, PublisherConfig, Synchronous};

use crate::percentile;

const TOKEN: &str = "wwt_benchmark-publisher-token";

#[derive(clap::Args)]
pub struct Args {
    /// Events published one per request.
    #[arg(long, default_value_t = 20_000)]
    single: usize,
    /// Events published in batches of 100.
    #[arg(long, default_value_t = 200_000)]
    batched: usize,
    /// Concurrent HTTP connections.
    #[arg(long, default_value_t = 16)]
    connections: usize,
    /// Use synchronous=normal (survives a process crash, not power loss).
    #[arg(long)]
    normal: bool,
    /// The log: `sqlite` (the default store), `r1` (JetStream on one NATS server) or `r3` (three
    /// NATS servers, three copies); NATS servers are started on loopback for the run.
    #[arg(long, value_enum, default_value = "sqlite")]
    store: StoreKind,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum StoreKind {
    Sqlite,
    R1,
    R3,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let directory = tempfile::tempdir()?;
    let mut config = Config { data_dir: directory.path().to_owned(), ..Config::default() };
    config.http.listen = "127.0.0.1:0".parse()?;
    config.irc.enabled = false;
    config.http.max_body = 8 * 1024 * 1024;
    config.limits.publish_rate = 1e9;
    config.limits.publish_burst = 1e9;
    config.store.synchronous = if args.normal { Synchronous::Normal } else { Synchronous::Full };
    config.publishers = vec![PublisherConfig {
        name: "bench".into(),
        token: Some(TOKEN.into()),
        token_hash: None,
        wikis: vec!["BenchWiki".into(), "OtherWiki".into()],
        base_url: Some("https://bench.example/".into()),
        engine: Default::default(),
        links: Default::default(),
    }];
    let nats = match args.store {
        StoreKind::Sqlite => None,
        StoreKind::R1 | StoreKind::R3 => {
            let count = if args.store == StoreKind::R1 { 1 } else { 3 };
            let servers = crate::nats::Servers::start(directory.path(), count)?;
            config.cluster = Some(ClusterConfig {
                node: "bench".into(),
                nats: servers.urls.clone(),
                replicas: count,
                credentials: None,
                ca_file: None,
                lease_ttl: wikiwire_hub::config::DEFAULT_LEASE_TTL,
            });
            Some(servers)
        }
    };
    let running = serve::start(config.clone()).await?;
    let url = format!("http://{}", running.http);
    let store = match args.store {
        StoreKind::Sqlite => format!("SQLite, synchronous={}", if args.normal { "normal" } else { "full" }),
        StoreKind::R1 => "JetStream R1 (one NATS server)".to_owned(),
        StoreKind::R3 => "JetStream R3 (three NATS servers)".to_owned(),
    };
    println!(
        "wikiwire HTTP benchmark, {store}, {} connections, {} cores",
        args.connections,
        std::thread::available_parallelism()?.get()
    );

    let single = publish(&url, args.single, 1, args.connections).await?;
    report("1 event per request", args.single, &single);
    let batched = publish(&url, args.batched, 100, args.connections).await?;
    report("100 events per request", args.batched, &batched);

    let client = reqwest::Client::new();
    let total = args.single + args.batched;
    for (label, filter) in
        [("10,000 events, no filter", ""), ("10,000 events of one wiki", "&wiki=BenchWiki")]
    {
        let start_at = (total / 2) as u64;
        let started = Instant::now();
        let mut since = start_at;
        let mut read = 0;
        while read < 10_000 {
            let page: serde_json::Value = client
                .get(format!("{url}/api/v1/events?since={since}&limit=1000{filter}"))
                .send()
                .await?
                .json()
                .await?;
            read += page["events"].as_array().map_or(0, Vec::len);
            since = page["next"].as_u64().unwrap_or(since);
        }
        println!(
            "history, {label}: {:.1} ms for {read} events (10 pages of 1000)",
            started.elapsed().as_secs_f64() * 1000.0
        );
    }
    running.stop().await;
    if let (Some(_servers), Some(cluster)) = (&nats, &config.cluster) {
        // A node that lost its replica (or a new node) rebuilds it from the stream.
        let rebuild = tempfile::tempdir()?;
        let mut rebuilt = config.clone();
        rebuilt.data_dir = rebuild.path().to_owned();
        let retention = wikiwire_store::Retention::default();
        let options = serve::jetstream_options(&rebuilt, cluster, retention);
        let started = Instant::now();
        let store = wikiwire_store::JetStreamStore::open(options).await?;
        let (_, last) = store.stream_bounds().await?;
        store.wait_applied(last, Duration::from_secs(600)).await;
        let seconds = started.elapsed().as_secs_f64();
        println!("replica rebuild: {last} events in {seconds:.2} s, {:.0} events/s", last as f64 / seconds);
        wikiwire_store::Store::close(&store).await;
    }
    Ok(())
}

struct Measured {
    elapsed: Duration,
    latencies: Vec<Duration>,
}

fn report(label: &str, events: usize, measured: &Measured) {
    let mut latencies = measured.latencies.clone();
    latencies.sort_unstable();
    println!(
        "publish, {label}: {:.0} events/s ({events} events in {:.2} s), request latency p50 {:.2} ms, p99 {:.2} ms",
        events as f64 / measured.elapsed.as_secs_f64(),
        measured.elapsed.as_secs_f64(),
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
    );
}

async fn publish(
    url: &str,
    events: usize,
    per_request: usize,
    connections: usize,
) -> anyhow::Result<Measured> {
    let requests = events / per_request;
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let workers: Vec<_> = (0..connections)
        .map(|_| {
            let next = Arc::clone(&next);
            let url = format!("{url}/api/v1/events");
            tokio::spawn(async move {
                let client = reqwest::Client::new();
                let mut latencies = Vec::new();
                loop {
                    let request = next.fetch_add(1, Ordering::Relaxed);
                    if request >= requests {
                        return Ok::<_, anyhow::Error>(latencies);
                    }
                    let batch: Vec<_> = (0..per_request)
                        .map(|n| {
                            let wiki = if n % 2 == 0 { "BenchWiki" } else { "OtherWiki" };
                            json!({"wiki": wiki, "action": "page_changed", "page": format!("Page {request}/{n}"),
                                   "user": "Bench", "comment": "a typical edit summary of some length", "revision": "42", "old_revision": "41"})
                        })
                        .collect();
                    let sent = Instant::now();
                    let response = client.post(&url).bearer_auth(TOKEN).json(&batch).send().await?;
                    anyhow::ensure!(response.status().is_success(), "publish failed: {}", response.status());
                    latencies.push(sent.elapsed());
                }
            })
        })
        .collect();
    let mut latencies = Vec::new();
    for worker in workers {
        latencies.extend(worker.await??);
    }
    Ok(Measured { elapsed: started.elapsed(), latencies })
}
