//! The workload wikis really make, against wikiwire and against the IRC server people would run
//! instead (InspIRCd 3 from Debian, `auditorium` module, channel `+u`, `fakelag` off, large
//! sendq), in one run with one load generator, side by side: one publisher sends one event per
//! line by PRIVMSG, first a burst as fast as it can, then a steady rate; N listeners on the
//! channel. Deliveries per second, publish-to-receive latency (the line's `comment` carries the
//! send time), and resident memory per idle listener.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::Mutex;

use crate::irc::{Listeners, TOKEN, start_hub};
use crate::percentile;

const CHANNEL: &str = "#BenchWiki.events";

#[derive(clap::Args)]
pub struct Args {
    /// Listener counts to measure.
    #[arg(long, value_delimiter = ',', default_value = "2000,5000")]
    listeners: Vec<usize>,
    /// Events in the burst, one line each, sent as fast as the publisher can.
    #[arg(long, default_value_t = 400)]
    burst: usize,
    /// Steady rates, events per second.
    #[arg(long, value_delimiter = ',', default_value = "50")]
    rates: Vec<u64>,
    /// Seconds of each steady rate.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Seconds to wait after the burst before the server's memory is read again (0: skip).
    #[arg(long, default_value_t = 60)]
    settle: u64,
    /// The wikiwire binary (default: next to this one).
    #[arg(long)]
    binary: Option<PathBuf>,
    /// The InspIRCd binary (Debian's `inspircd` package; installed when missing and root).
    #[arg(long, default_value = "/usr/sbin/inspircd")]
    inspircd: PathBuf,
}

/// What one server did under the workload.
struct Figures {
    deliveries_per_second: f64,
    burst_p50: f64,
    burst_p99: f64,
    steady: Vec<(u64, f64, f64)>,
    per_listener_kib: f64,
    /// The whole server with every listener joined and nothing sent yet.
    rss_idle_mib: f64,
    /// Right after the burst, and `--settle` seconds later.
    rss_burst_mib: f64,
    rss_settled_mib: Option<f64>,
    rss_after_mib: f64,
}

/// A server under test: where to connect and how its publisher logs in.
struct Server {
    address: String,
    pid: u32,
    /// Lines the publisher sends after connecting, before it publishes.
    login: Vec<String>,
    /// InspIRCd: the publisher joins first (channel operator) and makes the channel an auditorium.
    join_first: bool,
    _guard: Box<dyn Send>,
}

impl Server {
    fn rss_kib(&self) -> anyhow::Result<u64> {
        crate::irc::rss_kib(self.pid)
    }
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let binary = match &args.binary {
        Some(binary) => binary.clone(),
        None => std::env::current_exe()?.with_file_name("wikiwire"),
    };
    ensure_inspircd(&args.inspircd)?;
    println!(
        "One publisher, one event per PRIVMSG line; burst of {} then steady {:?} events/s for {} s; {} cores shared by \
         servers and load generator",
        args.burst,
        args.rates,
        args.seconds,
        std::thread::available_parallelism()?.get()
    );
    for &count in &args.listeners {
        let directory = tempfile::tempdir()?;
        let wikiwire = {
            let hub = start_hub(binary.clone(), directory.path()).await?;
            let pid = hub.pid().context("hub exited")?;
            Server {
                address: hub.irc.clone(),
                pid,
                login: vec![
                    format!("PASS bench:{TOKEN}"),
                    "NICK bench".into(),
                    "USER bench 0 * :bench".into(),
                ],
                join_first: false,
                _guard: Box::new(hub),
            }
        };
        let ours = measure(&wikiwire, count, &args).await?;
        drop(wikiwire);
        let theirs_server = start_inspircd(&args.inspircd, directory.path()).await?;
        let theirs = measure(&theirs_server, count, &args).await?;
        drop(theirs_server);
        println!("\n{count} listeners            wikiwire      InspIRCd 3   ratio");
        println!(
            "burst: deliveries/s    {:>10.0}   {:>10.0}   {:.2}×",
            ours.deliveries_per_second,
            theirs.deliveries_per_second,
            ours.deliveries_per_second / theirs.deliveries_per_second
        );
        println!(
            "burst: latency p50     {:>8.1} ms  {:>8.1} ms   {:.2}",
            ours.burst_p50,
            theirs.burst_p50,
            ours.burst_p50 / theirs.burst_p50
        );
        println!(
            "burst: latency p99     {:>8.1} ms  {:>8.1} ms   {:.2}",
            ours.burst_p99,
            theirs.burst_p99,
            ours.burst_p99 / theirs.burst_p99
        );
        for ((rate, our50, our99), (_, their50, their99)) in ours.steady.iter().zip(&theirs.steady) {
            println!(
                "{rate}/s: latency p50      {our50:>8.1} ms  {their50:>8.1} ms   {:.2}",
                our50 / their50
            );
            println!(
                "{rate}/s: latency p99      {our99:>8.1} ms  {their99:>8.1} ms   {:.2}",
                our99 / their99
            );
        }
        println!(
            "RSS per idle listener  {:>8.1} KiB {:>8.1} KiB  {:.2}",
            ours.per_listener_kib,
            theirs.per_listener_kib,
            ours.per_listener_kib / theirs.per_listener_kib
        );
        println!("RSS, listeners idle    {:>8.1} MiB {:>8.1} MiB", ours.rss_idle_mib, theirs.rss_idle_mib);
        println!("RSS after the burst    {:>8.1} MiB {:>8.1} MiB", ours.rss_burst_mib, theirs.rss_burst_mib);
        if let (Some(our), Some(their)) = (ours.rss_settled_mib, theirs.rss_settled_mib) {
            println!(
                "RSS {:>3} s later       {our:>8.1} MiB {their:>8.1} MiB   ({:.2}× and {:.2}× of idle)",
                args.settle,
                our / ours.rss_idle_mib,
                their / theirs.rss_idle_mib
            );
        }
        println!("RSS after the runs     {:>8.1} MiB {:>8.1} MiB", ours.rss_after_mib, theirs.rss_after_mib);
    }
    Ok(())
}

fn ensure_inspircd(path: &Path) -> anyhow::Result<()> {
    if path.exists() {
        return Ok(());
    }
    println!("installing InspIRCd from Debian (apt-get install inspircd)");
    let installed = std::process::Command::new("apt-get")
        .args(["install", "-y", "-qq", "--no-install-recommends", "inspircd"])
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status()
        .context("apt-get")?;
    anyhow::ensure!(installed.success() && path.exists(), "InspIRCd could not be installed; pass --inspircd");
    // Debian starts the packaged service; this benchmark runs its own.
    let _ = std::process::Command::new("systemctl").args(["stop", "inspircd"]).status();
    Ok(())
}

async fn start_inspircd(binary: &Path, directory: &Path) -> anyhow::Result<Server> {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        listener.local_addr()?.port()
    };
    let directory = directory.join("inspircd");
    std::fs::create_dir_all(&directory)?;
    let config = directory.join("inspircd.conf");
    std::fs::write(directory.join("motd.txt"), "bench\n")?;
    std::fs::write(
        &config,
        format!(
            r#"<config format="xml">
<server name="bench.test" description="bench" network="Bench">
<admin name="bench" nick="bench" email="bench@bench.test">
<bind address="127.0.0.1" port="{port}" type="clients">
<connect allow="*" timeout="120" pingfreq="600" hardsendq="1073741824" softsendq="1073741824" recvq="1048576"
         threshold="100000" commandrate="100000000" fakelag="off" localmax="1000000" globalmax="1000000"
         maxchans="20" limit="1000000" resolvehostnames="no" useident="no">
<module name="auditorium">
<auditorium opvisible="no" opcansee="no" opercansee="no">
<files motd="{motd}">
<pid file="{pid}">
<log method="file" type="* -USERINPUT -USEROUTPUT" level="default" target="{log}">
<performance netbuffersize="65536" somaxconn="4096" softlimit="1000000" clonesonconnect="no" quietbursts="yes">
<dns timeout="1">
<limits maxchan="64" maxnick="30" maxline="512">
"#,
            motd = directory.join("motd.txt").display(),
            pid = directory.join("inspircd.pid").display(),
            log = directory.join("inspircd.log").display(),
        ),
    )?;
    let child = tokio::process::Command::new(binary)
        .arg(format!("--config={}", config.display()))
        .args(["--nofork", "--runasroot", "--nopid"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("cannot start {}", binary.display()))?;
    let pid = child.id().context("InspIRCd exited")?;
    let address = format!("127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(&address).await.is_err() {
        if Instant::now() > deadline {
            bail!("InspIRCd did not listen; see {}", directory.join("inspircd.log").display());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(Server {
        address,
        pid,
        login: vec!["NICK bench".into(), "USER bench 0 * :bench".into()],
        join_first: true,
        _guard: Box::new(child),
    })
}

async fn measure(server: &Server, count: usize, args: &Args) -> anyhow::Result<Figures> {
    let epoch = Instant::now();
    let mut publisher = Publisher::connect(server).await?;
    let baseline = server.rss_kib()?;
    let listeners = Listeners::join(&server.address, count, epoch).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle = server.rss_kib()?;
    let per_listener_kib = idle.saturating_sub(baseline) as f64 / count as f64;

    // The burst: one line per event, as fast as the publisher can write.
    let started = Instant::now();
    for n in 0..args.burst {
        publisher.publish(n, epoch).await?;
    }
    let mut expected = (count * args.burst) as u64;
    listeners.wait_for(expected, Duration::from_secs(300), "the burst").await?;
    let burst_elapsed = started.elapsed();
    let burst = listeners.take_latencies().await;
    let rss_burst_mib = server.rss_kib()? as f64 / 1024.0;
    let rss_settled_mib = if args.settle > 0 {
        tokio::time::sleep(Duration::from_secs(args.settle)).await;
        Some(server.rss_kib()? as f64 / 1024.0)
    } else {
        None
    };

    let mut steady = Vec::new();
    for &rate in &args.rates {
        let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64));
        let total = rate * args.seconds;
        for n in 0..total {
            ticker.tick().await;
            publisher.publish(args.burst + n as usize, epoch).await?;
        }
        expected += count as u64 * total;
        listeners.wait_for(expected, Duration::from_secs(300), "the steady rate").await?;
        let samples = listeners.take_latencies().await;
        steady.push((rate, percentile(&samples, 0.5), percentile(&samples, 0.99)));
    }
    let after = server.rss_kib()?;
    drop(listeners);
    Ok(Figures {
        deliveries_per_second: (count * args.burst) as f64 / burst_elapsed.as_secs_f64(),
        burst_p50: percentile(&burst, 0.5),
        burst_p99: percentile(&burst, 0.99),
        steady,
        per_listener_kib,
        rss_idle_mib: idle as f64 / 1024.0,
        rss_burst_mib,
        rss_settled_mib,
        rss_after_mib: after as f64 / 1024.0,
    })
}

/// The wiki: one connection, one PRIVMSG per event; what the server says back is read and
/// dropped (PINGs answered), so it never waits on us.
struct Publisher {
    write: Arc<Mutex<OwnedWriteHalf>>,
}

impl Publisher {
    async fn connect(server: &Server) -> anyhow::Result<Publisher> {
        let stream = TcpStream::connect(&server.address).await?;
        stream.set_nodelay(true)?;
        let (read, mut write) = stream.into_split();
        let mut lines = BufReader::new(read).lines();
        write.write_all(format!("{}\r\n", server.login.join("\r\n")).as_bytes()).await?;
        loop {
            let line = lines.next_line().await?.context("the server closed the publisher's connection")?;
            if line.contains(" 376 ") || line.contains(" 422 ") {
                break;
            }
            if line.starts_with("PING") {
                write.write_all(format!("{}\r\n", line.replacen("PING", "PONG", 1)).as_bytes()).await?;
            }
            anyhow::ensure!(
                !line.starts_with("ERROR") && !line.contains(" 464 "),
                "publisher refused: {line}"
            );
        }
        if server.join_first {
            write.write_all(format!("JOIN {CHANNEL}\r\nMODE {CHANNEL} +u\r\n").as_bytes()).await?;
            loop {
                let line = lines.next_line().await?.context("closed while joining")?;
                if line.contains(" MODE ") && line.contains("+u") {
                    break;
                }
            }
        }
        let write = Arc::new(Mutex::new(write));
        let answer = Arc::clone(&write);
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                if line.starts_with("PING") {
                    let pong = format!("{}\r\n", line.replacen("PING", "PONG", 1));
                    let _ = answer.lock().await.write_all(pong.as_bytes()).await;
                }
            }
        });
        Ok(Publisher { write })
    }

    async fn publish(&mut self, n: usize, epoch: Instant) -> anyhow::Result<()> {
        let sent = epoch.elapsed().as_micros();
        let line = format!(
            "PRIVMSG {CHANNEL} :wiki=BenchWiki&action=page_changed&page=Bench+{n}&user=bench&comment={sent}\r\n"
        );
        self.write.lock().await.write_all(line.as_bytes()).await?;
        Ok(())
    }
}
