//! A hub on a real socket (port 0) over a real SQLite file, for the HTTP tests.
// Shared by several test binaries, each of which uses only part of it.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use wikiwire_hub::config::{LimitsConfig, PublisherConfig};
use wikiwire_hub::{Hub, Publishers, token};
use wikiwire_store::{SqliteOptions, SqliteStore, Store};

pub const TOKEN: &str = "wwt_moin-publisher-token-for-tests";
pub const OTHER_TOKEN: &str = "wwt_dokuwiki-publisher-token-for-tests";

pub struct TestHub {
    pub url: String,
    pub hub: Arc<Hub>,
    pub client: reqwest::Client,
    _directory: tempfile::TempDir,
}

pub struct Options {
    pub bus_capacity: usize,
    pub limits: LimitsConfig,
    pub max_body: usize,
    pub heartbeat: Duration,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            bus_capacity: 4096,
            limits: LimitsConfig::default(),
            max_body: 64 * 1024,
            heartbeat: Duration::from_secs(15),
        }
    }
}

pub async fn start(options: Options) -> TestHub {
    let directory = tempfile::tempdir().unwrap();
    let mut store_options = SqliteOptions::new(directory.path().join("events.sqlite"));
    store_options.bus_capacity = options.bus_capacity;
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(store_options).unwrap());
    let publisher =
        |name: &str, token_text: &str, wikis: &[&str], engine: &str, base: &str| PublisherConfig {
            name: name.into(),
            token: None,
            token_hash: Some(token::format_hash(&token::hash(token_text))),
            wikis: wikis.iter().map(|wiki| (*wiki).to_owned()).collect(),
            base_url: Some(base.into()),
            engine: serde_json::from_value(serde_json::Value::String(engine.into())).unwrap(),
            links: Default::default(),
            allow_weak_token: false,
        };
    let publishers = Publishers::new(
        &[
            publisher("moin", TOKEN, &["MoinMaster", "HelpWiki"], "moin", "https://master.example/"),
            publisher("doku", OTHER_TOKEN, &["DokuWiki"], "dokuwiki", "https://doku.example/"),
        ],
        &options.limits,
    )
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address: SocketAddr = listener.local_addr().unwrap();
    let url = format!("http://{address}");
    let channels = vec![wikiwire_hub::config::ChannelConfig {
        name: "#antispam".into(),
        format: wikiwire_event::Format::Text,
        filter: "wiki=MoinMaster,DokuWiki&action=antispam_updated".into(),
        topic: None,
    }];
    let channels =
        wikiwire_hub::channels::directory(&publishers, &channels, wikiwire_event::Format::Text, &url)
            .unwrap();
    let hub = Hub::new(store, publishers, channels, url.clone(), CancellationToken::new());
    let state = wikiwire_http::AppState {
        hub: Arc::clone(&hub),
        max_body: options.max_body,
        heartbeat: options.heartbeat,
        body_timeout: Duration::from_secs(30),
        renders: Default::default(),
        streams: Default::default(),
    };
    tokio::spawn(wikiwire_http::serve(listener, state));
    TestHub { url, hub, client: reqwest::Client::new(), _directory: directory }
}

impl TestHub {
    pub async fn publish(&self, body: serde_json::Value) -> reqwest::Response {
        self.client
            .post(format!("{}/api/v1/events", self.url))
            .bearer_auth(TOKEN)
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    /// Publishes a raw body of the given content type with the publisher's token.
    pub async fn post_body(&self, content_type: &str, body: impl Into<reqwest::Body>) -> reqwest::Response {
        self.client
            .post(format!("{}/api/v1/events", self.url))
            .bearer_auth(TOKEN)
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .unwrap()
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client.get(format!("{}{path}", self.url)).send().await.unwrap()
    }

    pub async fn get_json(&self, path: &str) -> (u16, serde_json::Value) {
        let response = self.get(path).await;
        let status = response.status().as_u16();
        (status, response.json().await.unwrap())
    }

    pub async fn last_id(&self) -> u64 {
        self.hub.store().bounds().await.unwrap().last_id
    }
}

pub fn edit(page: &str) -> serde_json::Value {
    serde_json::json!({"wiki": "MoinMaster", "action": "SAVE", "page": page, "user": "Alice", "revision": "2", "old_revision": "1"})
}
