//! The HTTP API over a real socket: publishing, refusals, history, XML, wikis, feeds, operations.

mod common;

use common::{OTHER_TOKEN, Options, TOKEN, edit, start};
use serde_json::json;
use wikiwire_hub::config::LimitsConfig;

#[tokio::test]
async fn publish_json_then_read_it_back() {
    let hub = start(Options::default()).await;
    let response = hub.publish(json!({"wiki": "MoinMaster", "action": "SAVE", "page": "פתיחה / 開始", "editor": "פלוני", "comment": "x", "tags": "a,b"})).await;
    assert_eq!(response.status(), 201);
    assert_eq!(response.json::<serde_json::Value>().await.unwrap(), json!({"ids": [1], "duplicates": []}));
    let (status, event) = hub.get_json("/api/v1/events/1").await;
    assert_eq!(status, 200);
    assert_eq!(event["page"], "פתיחה / 開始");
    assert_eq!(event["user"], "פלוני");
    assert_eq!(event["action"], "page_changed");
    assert_eq!(event["extra"]["tags"], "a,b");

    let batch = hub
        .publish(json!([edit("A"), edit("B"), {"wiki": "HelpWiki", "action": "user_created", "user": "New"}]))
        .await;
    assert_eq!(batch.status(), 201);
    assert_eq!(batch.json::<serde_json::Value>().await.unwrap()["ids"], json!([2, 3, 4]));
}

#[tokio::test]
async fn packed_form_bodies_one_event_per_line() {
    let hub = start(Options::default()).await;
    let body = "wiki=MoinMaster&action=SAVE&page=Front+Page&user=A%20B\nwiki=MoinMaster&action=SAVENEW&page=%D7%90&user=u\n";
    let response = hub.post_body("application/x-www-form-urlencoded", body).await;
    assert_eq!(response.status(), 201);
    let (_, history) = hub.get_json("/api/v1/events").await;
    assert_eq!(history["events"][0]["page"], "Front Page");
    assert_eq!(history["events"][0]["user"], "A B");
    assert_eq!(history["events"][1]["action"], "page_created");
    assert_eq!(history["events"][1]["page"], "א");
}

#[tokio::test]
async fn idempotency_keys_store_once() {
    let hub = start(Options::default()).await;
    let keyed = json!({"wiki": "MoinMaster", "action": "SAVE", "page": "P", "user": "u", "key": "P@42"});
    assert_eq!(hub.publish(keyed.clone()).await.status(), 201);
    let again = hub.publish(keyed).await;
    assert_eq!(again.status(), 200);
    assert_eq!(again.json::<serde_json::Value>().await.unwrap(), json!({"ids": [1], "duplicates": [1]}));
    assert_eq!(hub.last_id().await, 1);
}

#[tokio::test]
async fn every_refusal_is_json_and_stores_nothing() {
    let hub = start(Options { max_body: 4096, ..Options::default() }).await;
    let url = format!("{}/api/v1/events", hub.url);
    let client = &hub.client;
    let check = |response: reqwest::Response, status: u16, field: Option<&'static str>| async move {
        assert_eq!(response.status(), status);
        let body: serde_json::Value = response.json().await.expect("a JSON error body");
        assert!(body["error"].as_str().is_some_and(|text| !text.is_empty()), "{body}");
        if let Some(field) = field {
            assert_eq!(body["field"], field, "{body}");
        }
    };
    check(client.post(&url).json(&edit("A")).send().await.unwrap(), 401, None).await;
    let wrong_token = client.post(&url).bearer_auth("wwt_nope").json(&edit("A")).send().await.unwrap();
    assert_eq!(wrong_token.headers()["www-authenticate"], "Bearer realm=\"wikiwire\"");
    check(wrong_token, 401, None).await;
    check(
        client.post(&url).bearer_auth(OTHER_TOKEN).json(&edit("A")).send().await.unwrap(),
        403,
        Some("wiki"),
    )
    .await;
    check(
        hub.publish(json!([edit("A"), {"wiki": "MoinMaster", "action": "SAVE", "user": "u"}])).await,
        400,
        Some("[1].page"),
    )
    .await;
    check(
        hub.publish(json!({"wiki": "MoinMaster", "action": "page_renamed", "page": "New", "user": "u"}))
            .await,
        400,
        Some("old_name"),
    )
    .await;
    check(hub.post_body("application/json", "{\"wiki\": ").await, 400, Some("body")).await;
    check(hub.post_body("application/json", b"{\"wiki\": \"\xff\xfe\"}".to_vec()).await, 400, Some("body"))
        .await;
    check(
        hub.post_body(
            "application/x-www-form-urlencoded",
            b"wiki=MoinMaster&action=SAVE&page=\xff&user=u".to_vec(),
        )
        .await,
        400,
        Some("body"),
    )
    .await;
    check(
        hub.post_body("application/x-www-form-urlencoded", "wiki=MoinMaster&action=SAVE&page=%FF&user=u")
            .await,
        400,
        Some("page"),
    )
    .await;
    check(hub.post_body("text/csv", "a,b").await, 415, None).await;
    check(client.post(&url).bearer_auth(TOKEN).json(&json!({"wiki": "MoinMaster", "action": "SAVE", "page": "P", "user": "u", "comment": "x".repeat(5000)})).send().await.unwrap(), 413, None).await;
    // Without a Content-Length the limit holds while reading.
    let chunks = futures_util::stream::iter((0..100).map(|_| Ok::<_, std::io::Error>(vec![b' '; 1024])));
    check(hub.post_body("application/json", reqwest::Body::wrap_stream(chunks)).await, 413, None).await;
    check(hub.publish(json!([])).await, 400, Some("body")).await;
    check(
        hub.publish(json!({"wiki": "MoinMaster", "action": "SAVE", "page": "P", "user": "u", "id": 7})).await,
        400,
        Some("id"),
    )
    .await;
    assert_eq!(hub.last_id().await, 0, "nothing was stored");
    let metrics = hub.get("/metrics").await.text().await.unwrap();
    assert!(metrics.contains("wikiwire_publish_rejected_total{reason=\"unauthorized\"} 2"), "{metrics}");
    assert!(metrics.contains("wikiwire_publish_rejected_total{reason=\"too_large\"} 2"), "{metrics}");
}

#[tokio::test]
async fn publishing_too_fast_gets_429_with_retry_after() {
    let hub = start(Options {
        limits: LimitsConfig { publish_rate: 0.5, publish_burst: 2.0 },
        ..Options::default()
    })
    .await;
    assert_eq!(hub.publish(json!([edit("A"), edit("B")])).await.status(), 201);
    let refused = hub.publish(edit("C")).await;
    assert_eq!(refused.status(), 429);
    assert_eq!(refused.headers()["retry-after"], "2");
    assert_eq!(hub.last_id().await, 2);
}

#[tokio::test]
async fn history_pages_with_a_cursor_and_filters() {
    let hub = start(Options::default()).await;
    let mut events: Vec<serde_json::Value> = (0..25).map(|n| edit(&format!("Page {n}"))).collect();
    events.push(json!({"wiki": "HelpWiki", "action": "SAVE", "page": "Help/Editing", "user": "Bob", "time": "2020-01-01T00:00:00Z"}));
    assert_eq!(hub.publish(json!(events)).await.status(), 201);

    let (_, first) = hub.get_json("/api/v1/events?limit=10").await;
    assert_eq!(first["events"].as_array().unwrap().len(), 10);
    assert_eq!(first["next"], 10);
    let (_, third) = hub.get_json("/api/v1/events?since=20&limit=10").await;
    let ids: Vec<u64> =
        third["events"].as_array().unwrap().iter().map(|e| e["id"].as_u64().unwrap()).collect();
    assert_eq!(ids, vec![21, 22, 23, 24, 25, 26]);
    assert_eq!(third["next"], serde_json::Value::Null);

    let (_, help) = hub.get_json("/api/v1/events?wiki=helpwiki&page=Help/*").await;
    assert_eq!(help["events"].as_array().unwrap().len(), 1);
    let (_, by_time) = hub.get_json("/api/v1/events?from=2019-12-31T00:00:00Z&to=1577923200").await;
    assert_eq!(by_time["events"][0]["page"], "Help/Editing");
    let (_, by_user) = hub.get_json("/api/v1/events?user=Bob&action=page_changed").await;
    assert_eq!(by_user["events"].as_array().unwrap().len(), 1);

    for (query, field) in [
        ("since=abc", "since"),
        ("limit=0", "limit"),
        ("limit=5000", "limit"),
        ("from=yesterday", "from"),
        ("colour=red", "colour"),
        ("page=re:(", "page"),
        ("action=Not+An+Action", "action"),
        ("since=1&since=2", "since"),
        ("page=%FF", "page"),
        ("page=%zz", "page"),
    ] {
        let (status, body) = hub.get_json(&format!("/api/v1/events?{query}")).await;
        assert_eq!((status, body["field"].as_str()), (400, Some(field)), "{query}: {body}");
    }
    let (status, body) = hub.get_json("/api/v1/events/999").await;
    assert_eq!(status, 404, "{body}");
    let (status, _) = hub.get_json("/api/v1/events/abc").await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn xml_history_at_changes_and_the_seed_url() {
    let hub = start(Options::default()).await;
    hub.publish(json!({"wiki": "MoinMaster", "action": "SAVE", "page": "A&B <C>", "user": "u", "comment": "bell\u{7}", "time": "2026-01-02T00:00:00Z"})).await;
    let response = hub.get("/?action=changes&from=2026-01-01T00:00:00Z&to=2026-01-03T00:00:00Z").await;
    assert_eq!(response.headers()["content-type"], "application/xml; charset=utf-8");
    let document = response.text().await.unwrap();
    assert!(
        document.contains("<changes from=\"2026-01-01T00:00:00.000Z\" to=\"2026-01-03T00:00:00.000Z\">"),
        "{document}"
    );
    assert!(document.contains("<page>A&amp;B &lt;C&gt;</page>"), "{document}");
    assert!(document.contains("<comment>bell\u{FFFD}</comment>"), "{document}");
    let same =
        hub.get("/changes?from=2026-01-01T00:00:00Z&to=2026-01-03T00:00:00Z").await.text().await.unwrap();
    assert_eq!(document, same);
    let (_, as_json) = hub.get_json("/changes?format=json").await;
    assert_eq!(as_json["events"][0]["page"], "A&B <C>");
    let empty = hub.get("/changes?from=2030-01-01T00:00:00Z").await.text().await.unwrap();
    assert!(!empty.contains("<change "));
    assert_eq!(hub.get("/changes?format=yaml").await.status(), 400);
}

#[tokio::test]
async fn description_blocks_and_atom_feeds() {
    let hub = start(Options::default()).await;
    hub.publish(edit("Help On/Editing")).await;
    hub.client
        .post(format!("{}/api/v1/events", hub.url))
        .bearer_auth(OTHER_TOKEN)
        .json(&json!({"wiki": "DokuWiki", "action": "SAVE", "page": "start", "user": "d"}))
        .send()
        .await
        .unwrap();

    let (_, list) = hub.get_json("/api/v1/wikis").await;
    let names: Vec<&str> =
        list["wikis"].as_array().unwrap().iter().map(|w| w["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["DokuWiki", "HelpWiki", "MoinMaster"]);
    let (status, moin) = hub.get_json("/api/v1/wikis/moinmaster").await;
    assert_eq!(status, 200);
    assert_eq!(moin["engine"], "moin");
    assert_eq!(moin["publisher"], "moin");
    assert_eq!(moin["links"]["diff"], "{base}{page}?action=diff&rev1={old_revision}&rev2={revision}");
    assert_eq!(moin["feed"], format!("{}/feeds/MoinMaster.atom", hub.url));
    assert_eq!(hub.get_json("/api/v1/wikis/Nowhere").await.0, 404);

    let (_, channels) = hub.get_json("/api/v1/channels").await;
    let names: Vec<&str> =
        channels["channels"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert!(names.contains(&"#MoinMaster.events") && names.contains(&"#antispam"), "{names:?}");
    let (status, antispam) = hub.get_json("/api/v1/channels/%23antispam").await;
    assert_eq!(status, 200);
    assert_eq!(antispam["filter"], "wiki=MoinMaster,DokuWiki&action=antispam_updated");
    assert_eq!(antispam["speakers"], json!(["moin", "doku"]));
    assert!(
        antispam["topic"]
            .as_str()
            .unwrap()
            .ends_with(&format!("| channel: {}/api/v1/channels/%23antispam", hub.url))
    );
    let (_, by_bare_name) = hub.get_json("/api/v1/channels/MoinMaster.events").await;
    assert_eq!(
        (by_bare_name["format"].as_str(), by_bare_name["filter"].as_str()),
        (Some("packed"), Some("wiki=MoinMaster"))
    );
    assert_eq!(hub.get_json("/api/v1/channels/%23nowhere").await.0, 404);

    let feed = hub.get("/feeds/MoinMaster.atom").await;
    assert_eq!(feed.headers()["content-type"], "application/atom+xml; charset=utf-8");
    let feed = feed.text().await.unwrap();
    assert!(feed.contains("<link rel=\"alternate\" href=\"https://master.example/Help%20On/Editing?action=diff&amp;rev1=1&amp;rev2=2\""), "{feed}");
    assert!(!feed.contains("DokuWiki"));
    let all = hub.get("/feeds/all.atom").await.text().await.unwrap();
    let newest = all.find("DokuWiki: [[start]]").unwrap();
    let older = all.find("MoinMaster: [[Help On/Editing]]").unwrap();
    assert!(newest < older, "newest first");
    assert_eq!(hub.get("/feeds/Nowhere.atom").await.status(), 404);
    assert_eq!(hub.get("/feeds/all.rss").await.status(), 404);
}

#[tokio::test]
async fn operations_endpoints_and_unknown_routes() {
    let hub = start(Options::default()).await;
    hub.publish(edit("A")).await;
    let (status, health) = hub.get_json("/healthz").await;
    assert_eq!((status, health["status"].as_str(), health["last_id"].as_u64()), (200, Some("ok"), Some(1)));
    let metrics = hub.get("/metrics").await;
    assert!(metrics.headers()["content-type"].to_str().unwrap().starts_with("text/plain; version=0.0.4"));
    let text = metrics.text().await.unwrap();
    assert!(
        text.contains("# TYPE wikiwire_events_published_total counter\nwikiwire_events_published_total 1"),
        "{text}"
    );
    assert!(text.contains("wikiwire_last_event_id 1"));
    let (status, body) = hub.get_json("/no/such/thing").await;
    assert_eq!((status, body["error"].as_str()), (404, Some("no such endpoint")));
    let delete = hub.client.delete(format!("{}/api/v1/events", hub.url)).send().await.unwrap();
    assert_eq!(delete.status(), 405);
    let index = hub.get("/").await;
    assert_eq!(index.headers()["access-control-allow-origin"], "*");
    let page = index.text().await.unwrap();
    assert!(page.contains("new EventSource(\"/api/v1/stream?\"") && page.contains("/feeds/all.atom"));
    assert!(!page.contains("http://") && !page.contains("https://"), "the page loads nothing from elsewhere");
}

#[tokio::test]
async fn links_from_the_description_block_on_request() {
    let hub = start(Options::default()).await;
    hub.publish(edit("Front Page")).await;
    let (_, plain) = hub.get_json("/api/v1/events").await;
    assert!(plain["events"][0].get("links").is_none(), "canonical JSON unless asked");
    let (status, linked) = hub.get_json("/api/v1/events?links=true").await;
    assert_eq!(status, 200);
    let links: Vec<(&str, &str)> = linked["events"][0]["links"]
        .as_array()
        .unwrap()
        .iter()
        .map(|link| (link["description"].as_str().unwrap(), link["url"].as_str().unwrap()))
        .collect();
    assert_eq!(
        links,
        vec![
            ("diff", "https://master.example/Front%20Page?action=diff&rev1=1&rev2=2"),
            ("page", "https://master.example/Front%20Page"),
            ("history", "https://master.example/Front%20Page?action=info"),
        ]
    );
    let (status, body) = hub.get_json("/api/v1/events?links=maybe").await;
    assert_eq!((status, body["field"].as_str()), (400, Some("links")));
}
