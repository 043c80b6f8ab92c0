//! Bounds on what one client may cost: input flood control and the send queue, on the paused
//! clock.

use std::time::Duration;

use tokio::time::Instant;

use crate::support::TestServer;

/// The last word of a line, without the colon of a trailing parameter.
fn last_word(line: &str) -> &str {
    line.rsplit(' ').next().unwrap_or("").trim_start_matches(':')
}

#[tokio::test(start_paused = true)]
async fn lines_past_the_flood_burst_are_read_at_the_flood_rate() {
    let test = TestServer::start();
    let limits = &test.server.settings.limits;
    let (burst, rate) = (limits.flood_burst as usize, limits.flood_rate);
    let mut client = test.connect();
    client.register("fast", &[]).await;
    // Long enough for the bucket to be full again after registration's lines.
    tokio::time::sleep(Duration::from_secs_f64(burst as f64 / rate)).await;
    let waits = test.hub.metrics().irc_flood_waits.get();
    let extra = 10;
    let pings: Vec<String> = (0..burst + extra).map(|n| format!("PING t{n}")).collect();
    let pings: Vec<&str> = pings.iter().map(String::as_str).collect();
    let started = Instant::now();
    client.send(&pings).await;
    for n in 0..burst + extra {
        let pong = client.line().await.expect("every PING is answered");
        assert!(pong.contains(" PONG ") && last_word(&pong) == format!("t{n}"), "{pong}");
        // The burst at once, then one line each 1/rate seconds.
        let paced = n.saturating_sub(burst - 1) as f64 / rate;
        let elapsed = started.elapsed().as_secs_f64();
        assert!((elapsed - paced).abs() < 0.002, "PONG {n} after {elapsed}s, expected {paced}s");
    }
    assert_eq!(test.hub.metrics().irc_flood_waits.get() - waits, extra as u64, "each wait counted");
}

#[tokio::test(start_paused = true)]
async fn a_publisher_is_not_paced_by_flood_control() {
    let test = TestServer::start();
    let burst = test.server.settings.limits.flood_burst as usize;
    let mut publisher = test.connect();
    publisher.register_publisher(&[]).await;
    let pings: Vec<String> = (0..burst * 3).map(|n| format!("PING t{n}")).collect();
    let pings: Vec<&str> = pings.iter().map(String::as_str).collect();
    let started = Instant::now();
    publisher.send(&pings).await;
    for n in 0..burst * 3 {
        assert_eq!(last_word(&publisher.line().await.unwrap()), format!("t{n}"));
    }
    assert_eq!(started.elapsed(), Duration::ZERO, "no line waited");
    assert_eq!(test.hub.metrics().irc_flood_waits.get(), 0);
}

/// Sends VERSION (answered with about 500 bytes) one line at a time, each answer written before
/// the next line, until the stream is full and the send queue overflows behind it.
async fn overflow(test: &TestServer, client: &mut crate::support::Peer) {
    client.register("slow", &[]).await;
    let limits = &test.server.settings.limits;
    // A full flood bucket again: no line waits.
    tokio::time::sleep(Duration::from_secs_f64(limits.flood_burst / limits.flood_rate)).await;
    let metrics = test.hub.metrics();
    for _ in 0..limits.flood_burst as usize {
        client.send(&["VERSION"]).await;
        tokio::time::sleep(Duration::from_millis(1)).await;
        if metrics.irc_sendq_exceeded.get() > 0 {
            return;
        }
    }
    panic!("the send queue never overflowed");
}

#[tokio::test(start_paused = true)]
async fn a_client_that_stops_reading_is_cut_off_at_its_send_queue() {
    let test = TestServer::with(|irc| irc.sendq = 4096);
    let mut client = test.connect_buffered(1024);
    overflow(&test, &mut client).await;
    // Reading again, it gets what the stream held, then the reason: the queued lines are gone.
    let mut read = 0;
    let mut last = String::new();
    while let Some(line) = client.line_within(Duration::from_secs(1)).await {
        read += line.len() + 2;
        last = line;
    }
    assert_eq!(last, "ERROR :Closing link: SendQ exceeded");
    assert!((1024..1024 + 2 * 64).contains(&read), "what the stream held, then the ERROR: {read} bytes");
    client.ends().await;
    assert_eq!(test.hub.metrics().irc_sendq_exceeded.get(), 1);
    assert_eq!(test.server.counts().connections, 0);
}

#[tokio::test(start_paused = true)]
async fn a_client_that_never_reads_again_is_let_go_after_the_goodbye_grace() {
    let test = TestServer::with(|irc| irc.sendq = 4096);
    let mut client = test.connect_buffered(1024);
    overflow(&test, &mut client).await;
    let cut = Instant::now();
    // The writer waits a grace period for room to say why, then ends the connection anyway.
    while !client.served.is_finished() {
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(cut.elapsed() < Duration::from_secs(6), "the connection outlived its grace");
    }
    assert!(cut.elapsed() >= Duration::from_secs(5) - Duration::from_millis(100), "{:?}", cut.elapsed());
    assert_eq!(test.server.counts().connections, 0, "its place is given back");
    // What the stream held is there, but no ERROR: there was never room for it.
    let mut lines = Vec::new();
    while let Some(line) = client.line().await {
        lines.push(line);
    }
    assert!(!lines.is_empty() && !lines.iter().any(|line| line.starts_with("ERROR")), "{lines:?}");
}
