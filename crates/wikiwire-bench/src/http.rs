//! HTTP publishing and history figures.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;
use wikiwire::cmd::serve;
use wikiwire::config::Config;
use wikiwire_hub::config::{ClusterConfig, PublisherConfig, Synchronous};

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
    /// Jabber notifications sent to the XML-RPC API, as `system.multicall`s of 100 on one
    /// connection (MoinMoin's way), after the same number one call per request (0: skip both).
    #[arg(long, default_value_t = 20_000)]
    notifications: usize,
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
    let mut config = Config::default();
    config.hub.data_dir = directory.path().to_owned();
    config.hub.http.listen = "127.0.0.1:0".parse()?;
    config.irc.enabled = false;
    config.hub.http.max_body = 8 * 1024 * 1024;
    config.hub.limits.publish_rate = 1e9;
    config.hub.limits.publish_burst = 1e9;
    config.hub.store.synchronous = if args.normal { Synchronous::Normal } else { Synchronous::Full };
    config.hub.publishers = vec![PublisherConfig {
        name: "bench".into(),
        token: Some(TOKEN.into()),
        token_hash: None,
        wikis: vec!["BenchWiki".into(), "OtherWiki".into()],
        base_url: Some("https://bench.example/".into()),
        engine: Default::default(),
        links: Default::default(),
        allow_weak_token: false,
    }];
    if args.notifications > 0 {
        // The bot itself is pointed at a closed port: what is measured is how fast calls are
        // stored in its outbox (answered `true`), not delivery to a Jabber server.
        config.bot.xmpp = Some(serde_json::from_value(
            json!({"jid": "bot@bench.example", "password": "unused", "server": "127.0.0.1", "port": 9}),
        )?);
        config.bot.xmlrpc =
            Some(serde_json::from_value(json!({"listen": "127.0.0.1:0", "secret": XMLRPC_SECRET}))?);
    }
    let nats = match args.store {
        StoreKind::Sqlite => None,
        StoreKind::R1 | StoreKind::R3 => {
            let count = if args.store == StoreKind::R1 { 1 } else { 3 };
            let servers = crate::nats::Servers::start(directory.path(), count)?;
            config.hub.cluster = Some(ClusterConfig {
                node: "bench".into(),
                nats: servers.urls.clone(),
                replicas: count,
                credentials: None,
                nkey_file: None,
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
    report("publish, 1 event per request", args.single, "events", &single);
    // The same with a minimal client (prepared bytes on keep-alive sockets): how much of the
    // two cores the benchmark's own HTTP client took from the hub.
    let raw = publish_raw(running.http, args.single, args.connections).await?;
    report("publish, 1 event per request, minimal client", args.single, "events", &raw);
    let batched = publish(&url, args.batched, 100, args.connections).await?;
    report("publish, 100 events per request", args.batched, "events", &batched);

    if let Some(xmlrpc) = running.xmlrpc {
        let url = format!("http://{xmlrpc}/");
        let (notifications, single) = (args.notifications, notify(&url, args.notifications, 1).await?);
        report(
            "XML-RPC, 1 notification per request, one connection",
            notifications,
            "notifications",
            &single,
        );
        let multicall = notify(&url, notifications, 100).await?;
        report(
            "XML-RPC, system.multicall of 100, one connection",
            notifications,
            "notifications",
            &multicall,
        );
    }

    let client = reqwest::Client::new();
    let total = args.single + args.batched;
    for (label, filter) in [("no filter", ""), ("one wiki's", "&wiki=BenchWiki")] {
        let start_at = (total / 2) as u64;
        let started = Instant::now();
        let mut since = start_at;
        let mut read = 0;
        // Half of the log is past `start_at`, half of that is one wiki's.
        let wanted = 10_000.min(total / 4);
        while read < wanted {
            let page: serde_json::Value = client
                .get(format!("{}&limit=1000{filter}", wikiwire_event::api::events_since(&url, since)))
                .send()
                .await?
                .json()
                .await?;
            read += page["events"].as_array().map_or(0, Vec::len);
            since = page["next"].as_u64().unwrap_or(since);
        }
        println!(
            "history, {label}: {:.1} ms for {read} events (pages of 1000)",
            started.elapsed().as_secs_f64() * 1000.0
        );
    }
    running.stop().await;
    if let (Some(_servers), Some(cluster)) = (&nats, &config.hub.cluster) {
        // A node that lost its replica (or a new node) rebuilds it from the stream.
        let rebuild = tempfile::tempdir()?;
        let mut rebuilt = config.hub.clone();
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

/// One line of figures: `count` things of `unit` (events, notifications) in `measured`.
fn report(label: &str, count: usize, unit: &str, measured: &Measured) {
    let mut latencies = measured.latencies.clone();
    latencies.sort_unstable();
    println!(
        "{label}: {:.0} {unit}/s ({count} {unit} in {:.2} s), request latency p50 {:.2} ms, p99 {:.2} ms",
        count as f64 / measured.elapsed.as_secs_f64(),
        measured.elapsed.as_secs_f64(),
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
    );
}

const XMLRPC_SECRET: &str = "benchmark-bot-secret";

/// Sends `count` notifications as MoinMoin does, one after another on one connection: one
/// `send_notification` per request, or `system.multicall`s of `per_request`.
async fn notify(url: &str, count: usize, per_request: usize) -> anyhow::Result<Measured> {
    // The parameters of one call, each a `<value>`: the secret, one recipient, the notification.
    let params = |n: usize| {
        let member = |name: &str, text: &str| {
            format!("<member><name>{name}</name><value><string>{text}</string></value></member>")
        };
        [
            format!("<value><string>{XMLRPC_SECRET}</string></value>"),
            format!(
                "<value><array><data><value><string>user{}@bench.example</string></value></data></array></value>",
                n % 50
            ),
            format!(
                "<value><struct>{}{}{}{}{}</struct></value>",
                member("action", "page_changed"),
                member("subject", &format!("[BenchWiki] Update of Page {n}")),
                member("text", &format!("Page {n} has been changed by Alice.")),
                member("page_name", &format!("Page {n}")),
                member("revision", &n.to_string()),
            ),
        ]
    };
    let client = reqwest::Client::new();
    let mut latencies = Vec::new();
    let started = Instant::now();
    let mut sent = 0;
    while sent < count {
        let calls = per_request.min(count - sent);
        let body = if per_request == 1 {
            let params: String = params(sent).iter().map(|value| format!("<param>{value}</param>")).collect();
            format!(
                "<?xml version=\"1.0\"?><methodCall><methodName>send_notification</methodName><params>{params}</params></methodCall>"
            )
        } else {
            let calls: String = (sent..sent + calls)
                .map(|n| {
                    format!(
                        "<value><struct><member><name>methodName</name><value><string>send_notification</string></value></member>\
                         <member><name>params</name><value><array><data>{}</data></array></value></member></struct></value>",
                        params(n).concat()
                    )
                })
                .collect();
            format!(
                "<?xml version=\"1.0\"?><methodCall><methodName>system.multicall</methodName><params><param><value><array><data>{calls}</data></array></value></param></params></methodCall>"
            )
        };
        let at = Instant::now();
        let answer =
            client.post(url).header("content-type", "text/xml").body(body).send().await?.text().await?;
        anyhow::ensure!(!answer.contains("faultCode"), "XML-RPC fault: {answer}");
        anyhow::ensure!(
            answer.matches("<boolean>1</boolean>").count() == calls,
            "not every call answered true: {answer}"
        );
        latencies.push(at.elapsed());
        sent += calls;
    }
    Ok(Measured { elapsed: started.elapsed(), latencies })
}

async fn publish(
    url: &str,
    events: usize,
    per_request: usize,
    connections: usize,
) -> anyhow::Result<Measured> {
    let url = wikiwire_event::api::events(url);
    pool(connections, events / per_request, |tickets| {
        let url = url.clone();
        async move {
            let client = reqwest::Client::new();
            let mut latencies = Vec::new();
            while let Some(request) = tickets.take() {
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
            Ok(latencies)
        }
    })
    .await
}

/// Request numbers `0..limit`, shared by the workers of a pool.
struct Tickets {
    next: Arc<AtomicUsize>,
    limit: usize,
}

impl Tickets {
    fn take(&self) -> Option<usize> {
        let number = self.next.fetch_add(1, Ordering::Relaxed);
        (number < self.limit).then_some(number)
    }
}

/// `connections` workers, each spawned from `worker` with the shared tickets of `requests`
/// request numbers; they return their request latencies, and the pool the time it all took.
async fn pool<W, F>(connections: usize, requests: usize, worker: W) -> anyhow::Result<Measured>
where
    W: Fn(Tickets) -> F,
    F: std::future::Future<Output = anyhow::Result<Vec<Duration>>> + Send + 'static,
{
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let workers: Vec<_> = (0..connections)
        .map(|_| tokio::spawn(worker(Tickets { next: Arc::clone(&next), limit: requests })))
        .collect();
    let mut latencies = Vec::new();
    for worker in workers {
        latencies.extend(worker.await??);
    }
    Ok(Measured { elapsed: started.elapsed(), latencies })
}

/// One event per request like `publish`, from a client that does no more than a wiki's would:
/// each request's bytes written at once on a keep-alive connection, the answer's status line
/// checked and its body skipped by `Content-Length`.
async fn publish_raw(
    address: std::net::SocketAddr,
    events: usize,
    connections: usize,
) -> anyhow::Result<Measured> {
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
    pool(connections, events, |tickets| async move {
        let stream = tokio::net::TcpStream::connect(address).await?;
        stream.set_nodelay(true)?;
        let (read, mut write) = stream.into_split();
        let mut read = BufReader::new(read);
        let mut latencies = Vec::new();
        let mut line = String::new();
        while let Some(request) = tickets.take() {
                let body = format!(
                    r#"{{"wiki":"BenchWiki","action":"page_changed","page":"Raw {request}","user":"Bench","comment":"a typical edit summary of some length","revision":"42","old_revision":"41"}}"#
                );
                let head = format!(
                    "POST {} HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {TOKEN}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                    wikiwire_event::api::EVENTS,
                    body.len()
                );
                let sent = Instant::now();
                write.write_all(format!("{head}{body}").as_bytes()).await?;
                line.clear();
                read.read_line(&mut line).await?;
                anyhow::ensure!(line.starts_with("HTTP/1.1 20"), "publish failed: {line}");
                let mut length = 0usize;
                loop {
                    line.clear();
                    read.read_line(&mut line).await?;
                    let header = line.trim_end();
                    if header.is_empty() {
                        break;
                    }
                    if let Some((name, value)) = header.split_once(':')
                        && name.eq_ignore_ascii_case("content-length")
                    {
                        length = value.trim().parse()?;
                    }
                }
                let mut skip = vec![0u8; length];
                read.read_exact(&mut skip).await?;
                latencies.push(sent.elapsed());
        }
        Ok(latencies)
    })
    .await
}
