//! The connection's timers on tokio's paused clock: each is crossed exactly, and nothing
//! happens a moment before it.

use std::time::Duration;

use tokio::time::Instant;

use crate::support::{SERVER_NAME, TestServer};

/// How late a timer may fire: the clock moves in whole milliseconds.
const SLACK: Duration = Duration::from_millis(2);

fn at(started: Instant, expected: Duration) {
    let elapsed = started.elapsed();
    assert!(elapsed >= expected && elapsed <= expected + SLACK, "after {elapsed:?}, expected {expected:?}");
}

#[tokio::test(start_paused = true)]
async fn a_client_that_does_not_register_is_closed_at_the_registration_timeout() {
    let test = TestServer::start();
    let timeout = test.server.settings.limits.registration_timeout;
    let started = Instant::now();
    let mut client = test.connect();
    // NICK alone does not register; nor does any time short of the timeout.
    client.send(&["NICK late"]).await;
    tokio::time::sleep(timeout - Duration::from_millis(10)).await;
    client.quiet().await;
    assert_eq!(client.line().await.as_deref(), Some("ERROR :Closing link: Registration timeout"));
    at(started, timeout);
    client.ends().await;
    assert_eq!(test.server.counts().connections, 0, "its place is given back");
}

#[tokio::test(start_paused = true)]
async fn a_registered_client_outlives_the_registration_timeout() {
    let test = TestServer::start();
    let limits = &test.server.settings.limits;
    let mut client = test.connect();
    client.register("early", &[]).await;
    tokio::time::sleep(limits.registration_timeout * 2).await;
    assert!(limits.registration_timeout * 2 < limits.ping_interval);
    client.quiet().await;
}

#[tokio::test(start_paused = true)]
async fn an_idle_client_is_pinged_and_closed_when_it_does_not_answer() {
    let test = TestServer::start();
    let (interval, timeout) =
        (test.server.settings.limits.ping_interval, test.server.settings.limits.ping_timeout);
    let mut client = test.connect();
    client.register("idle", &[]).await;
    let started = Instant::now();
    tokio::time::sleep(interval - Duration::from_millis(10)).await;
    client.quiet().await;
    assert_eq!(client.line().await, Some(format!("PING {SERVER_NAME}")));
    at(started, interval);
    let pinged = Instant::now();
    tokio::time::sleep(timeout - Duration::from_millis(10)).await;
    client.quiet().await;
    let expected = format!("ERROR :Closing link: Ping timeout: {} seconds", timeout.as_secs());
    assert_eq!(client.line().await, Some(expected));
    at(pinged, timeout);
    client.ends().await;
}

#[tokio::test(start_paused = true)]
async fn any_line_answers_a_ping_and_restarts_the_idle_time() {
    let test = TestServer::start();
    let (interval, timeout) =
        (test.server.settings.limits.ping_interval, test.server.settings.limits.ping_timeout);
    let mut client = test.connect();
    client.register("awake", &[]).await;
    assert_eq!(client.line().await, Some(format!("PING {SERVER_NAME}")));
    // Late, but within the timeout; any line counts (a PONG is answered by nothing).
    tokio::time::sleep(timeout - Duration::from_secs(1)).await;
    client.send(&[&format!("PONG {SERVER_NAME}")]).await;
    let answered = Instant::now();
    assert_eq!(client.line().await, Some(format!("PING {SERVER_NAME}")), "the next PING, not an ERROR");
    at(answered, interval);
    client.send(&["TIME"]).await;
    client.expect(" 391 awake ").await;
    client.quiet().await;
}

#[tokio::test(start_paused = true)]
async fn shutdown_says_goodbye_to_every_connection_and_waits_for_it() {
    let test = TestServer::start();
    let mut listener = test.connect();
    listener.register("reader", &[]).await;
    let unregistered = test.connect();
    test.hub.shutdown().cancel();
    tokio::time::timeout(Duration::from_secs(1), wikiwire_irc::listener::finish(test.server.clone()))
        .await
        .expect("every connection ends at once");
    for mut client in [listener, unregistered] {
        assert_eq!(client.line().await.as_deref(), Some("ERROR :Closing link: Server shutting down"));
        client.ends().await;
    }
}
