//! Server-Sent Events over a real socket, read with eventsource-stream (a parser this project
//! did not write). SPEC §8: a subscriber that disconnects and reconnects gets every event exactly
//! once, in order; a slow client cannot slow anyone else.

mod common;

use std::time::Duration;

use common::{Options, edit, start};
use eventsource_stream::{Event, Eventsource};
use futures_util::{Stream, StreamExt};
use serde_json::json;
use wikiwire_store::Retention;

async fn open(
    hub: &common::TestHub,
    query: &str,
    last_event_id: Option<u64>,
) -> impl Stream<Item = Event> + Unpin {
    let mut request = hub.client.get(format!("{}/api/v1/stream{query}", hub.url));
    if let Some(id) = last_event_id {
        request = request.header("Last-Event-ID", id.to_string());
    }
    let response = request.send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream; charset=utf-8");
    Box::pin(response.bytes_stream().eventsource().map(|event| event.expect("well-formed SSE")))
}

async fn next(stream: &mut (impl Stream<Item = Event> + Unpin)) -> Event {
    tokio::time::timeout(Duration::from_secs(20), stream.next())
        .await
        .expect("an event in time")
        .expect("stream open")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnecting_with_last_event_id_gives_every_event_exactly_once_in_order() {
    let hub = start(Options::default()).await;
    for n in 0..50 {
        hub.publish(edit(&format!("Before {n}"))).await;
    }
    let publisher = {
        let client = hub.client.clone();
        let url = format!("{}/api/v1/events", hub.url);
        tokio::spawn(async move {
            for n in 0..250 {
                let response = client
                    .post(&url)
                    .bearer_auth(common::TOKEN)
                    .json(&edit(&format!("During {n}")))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(response.status(), 201);
                if n % 50 == 0 {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        })
    };
    let mut received: Vec<u64> = Vec::new();
    let mut last = Some(0);
    // Three connections: each is dropped mid-stream and the next resumes with Last-Event-ID.
    for stop_after in [40, 90, 300 - 130] {
        let mut stream = open(&hub, "?since=0", last).await;
        for _ in 0..stop_after {
            let event = next(&mut stream).await;
            let body: serde_json::Value = serde_json::from_str(&event.data).unwrap();
            assert_eq!(event.id, body["id"].to_string());
            received.push(body["id"].as_u64().unwrap());
        }
        last = received.last().copied();
        drop(stream);
    }
    publisher.await.unwrap();
    assert_eq!(received, (1..=300).collect::<Vec<u64>>());
}

#[tokio::test]
async fn without_a_cursor_the_stream_starts_now_and_filters_apply() {
    let hub = start(Options::default()).await;
    hub.publish(edit("Old")).await;
    let mut stream = open(&hub, "?wiki=HelpWiki&action=page_changed", None).await;
    hub.publish(json!([edit("Moin"), {"wiki": "HelpWiki", "action": "SAVE", "page": "Help", "user": "u"}]))
        .await;
    let event = next(&mut stream).await;
    assert_eq!(event.id, "3");
    assert_eq!(serde_json::from_str::<serde_json::Value>(&event.data).unwrap()["page"], "Help");
}

#[tokio::test]
async fn heartbeats_keep_an_idle_stream_alive() {
    let hub = start(Options { heartbeat: Duration::from_millis(100), ..Options::default() }).await;
    let response = hub.get("/api/v1/stream").await;
    let mut body = response.bytes_stream();
    let mut seen = String::new();
    while !seen.contains("\n: heartbeat\n") {
        let chunk = tokio::time::timeout(Duration::from_secs(5), body.next())
            .await
            .expect("bytes in time")
            .unwrap()
            .unwrap();
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(seen.starts_with("retry: 3000\n: wikiwire stream\n"), "{seen}");
}

#[tokio::test]
async fn a_cursor_older_than_retention_gets_a_gap_event_first() {
    let hub = start(Options::default()).await;
    hub.publish(json!((0..30).map(|n| edit(&format!("P{n}"))).collect::<Vec<_>>())).await;
    while hub.hub.store().prune(Retention { max_events: Some(10), max_age: None }).await.unwrap() > 0 {}
    let mut stream = open(&hub, "?since=5", None).await;
    let gap = next(&mut stream).await;
    assert_eq!((gap.event.as_str(), gap.id.as_str()), ("gap", "20"));
    assert_eq!(serde_json::from_str::<serde_json::Value>(&gap.data).unwrap(), json!({"from": 6, "to": 20}));
    assert_eq!(next(&mut stream).await.id, "21");
}

#[tokio::test]
async fn a_bad_cursor_is_refused() {
    let hub = start(Options::default()).await;
    let response = hub
        .client
        .get(format!("{}/api/v1/stream", hub.url))
        .header("Last-Event-ID", "abc")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let (status, body) = hub.get_json("/api/v1/stream?since=-1").await;
    assert_eq!((status, body["field"].as_str()), (400, Some("since")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_is_dropped_while_others_keep_up() {
    // A ring of 1024 events: the reader keeps within it, the stalled client falls out of it once
    // its socket buffers (several MB on loopback) are full.
    let hub = start(Options { bus_capacity: 1024, max_body: 8 * 1024 * 1024, ..Options::default() }).await;
    let stalled = hub.client.get(format!("{}/api/v1/stream?since=0", hub.url)).send().await.unwrap();
    let mut reader = open(&hub, "", None).await;
    let total = 8000;
    let comment = "x".repeat(4000);
    let publisher = {
        let client = hub.client.clone();
        let url = format!("{}/api/v1/events", hub.url);
        tokio::spawn(async move {
            for chunk in 0..total / 100 {
                let batch: Vec<_> = (0..100)
                    .map(|n| json!({"wiki": "MoinMaster", "action": "SAVE", "page": format!("P{chunk}-{n}"), "user": "u", "comment": comment}))
                    .collect();
                let response =
                    client.post(&url).bearer_auth(common::TOKEN).json(&batch).send().await.unwrap();
                assert_eq!(response.status(), 201);
            }
        })
    };
    for expected in 1..=total {
        assert_eq!(next(&mut reader).await.id, expected.to_string());
    }
    publisher.await.unwrap();
    // The stalled client was cut off: reading its body now ends before it has everything.
    let mut stalled_events = 0;
    let mut body = Box::pin(stalled.bytes_stream().eventsource());
    while let Ok(Some(Ok(_))) = tokio::time::timeout(Duration::from_secs(10), body.next()).await {
        stalled_events += 1;
    }
    assert!(stalled_events < total, "the stalled client got all {stalled_events} events: it was not dropped");
    assert!(hub.hub.metrics().followers_lagged.get() >= 1);
}

/// `/v2/stream` as NDJSON: the first `count` bodies after `query`.
async fn v2_lines(client: reqwest::Client, url: String, query: &str, count: usize) -> Vec<serde_json::Value> {
    let response = client
        .get(format!("{url}/v2/stream/recentchange{query}"))
        .header("Accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let mut body = response.bytes_stream();
    let (mut text, mut lines) = (Vec::new(), Vec::new());
    while lines.len() < count {
        let chunk = tokio::time::timeout(Duration::from_secs(20), body.next()).await.expect("in time");
        text.extend_from_slice(&chunk.expect("stream open").unwrap());
        while let Some(end) = text.iter().position(|&byte| byte == b'\n') {
            let line: Vec<u8> = text.drain(..=end).collect();
            if line.len() > 1 {
                lines.push(serde_json::from_slice(&line).unwrap());
            }
        }
    }
    lines
}

/// Each event is rendered once and shared by the `/v2` clients (1024 slots by id): a slot that a
/// later event took (1025 after 1) is never sent for the earlier one, live or from history.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v2_clients_share_renderings_and_never_get_another_events() {
    let limits = wikiwire_hub::config::LimitsConfig { publish_rate: 1e6, publish_burst: 1e6 };
    let hub = start(Options { limits, ..Options::default() }).await;
    let live = tokio::spawn(v2_lines(hub.client.clone(), hub.url.clone(), "", 1100));
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while hub.hub.metrics().sse_clients.get() < 1 {
        assert!(std::time::Instant::now() < deadline, "the live client connected");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for batch in 0..2 {
        let events: Vec<_> = (0..550).map(|n| edit(&format!("Page {}", batch * 550 + n + 1))).collect();
        assert_eq!(hub.publish(events.into()).await.status(), 201);
    }
    let check = |bodies: &[serde_json::Value]| {
        for (index, body) in bodies.iter().enumerate() {
            let id = index as u64 + 1;
            assert_eq!(body["meta"]["offset"], json!(id));
            assert_eq!(body["title"], json!(format!("Page {id}")));
        }
    };
    check(&live.await.unwrap());
    check(&v2_lines(hub.client.clone(), hub.url.clone(), "?since=0", 1100).await);
    check(&v2_lines(hub.client.clone(), hub.url.clone(), "?since=0", 1100).await);
}
