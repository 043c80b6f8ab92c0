//! The publish path and following the log, over a real SQLite store.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio_util::sync::CancellationToken;
use wikiwire_event::{Draft, Filter, Timestamp, fields};
use wikiwire_hub::config::{LimitsConfig, PublisherConfig};
use wikiwire_hub::{FollowError, Hub, Item, Lag, PublishError, Publishers, token};
use wikiwire_store::{Retention, SqliteOptions, SqliteStore, Store};

const TOKEN: &str = "wwt_test-token-of-enough-length";

fn edit(wiki: &str, page: &str) -> Draft {
    let serde_json::Value::Object(map) = json!({"wiki": wiki, "action": "SAVE", "page": page, "user": "u"})
    else {
        unreachable!()
    };
    fields::parse_submission(map, Timestamp::now()).unwrap()
}

fn hub(directory: &tempfile::TempDir, bus_capacity: usize, limits: LimitsConfig) -> Arc<Hub> {
    let mut options = SqliteOptions::new(directory.path().join("events.sqlite"));
    options.bus_capacity = bus_capacity;
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(options).unwrap());
    let publishers = Publishers::new(
        &[PublisherConfig {
            name: "moin".into(),
            token: None,
            token_hash: Some(token::format_hash(&token::hash(TOKEN))),
            wikis: vec!["MoinMaster".into(), "Other".into()],
            base_url: None,
            engine: Default::default(),
            links: Default::default(),
            allow_weak_token: false,
        }],
        &limits,
    )
    .unwrap();
    Hub::new(store, publishers, Vec::new(), "http://hub.test".into(), CancellationToken::new())
}

async fn next_event(follower: &mut wikiwire_hub::Follower) -> u64 {
    match tokio::time::timeout(Duration::from_secs(10), follower.next())
        .await
        .expect("an event in time")
        .unwrap()
    {
        Item::Event(event) => event.id,
        Item::Gap { from, to } => panic!("unexpected gap {from}..={to}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_then_live_with_no_gap_and_no_duplicate() {
    let directory = tempfile::tempdir().unwrap();
    let hub = hub(&directory, 4096, LimitsConfig::default());
    let publisher = hub.publishers().by_token(TOKEN).unwrap();
    for n in 0..300 {
        hub.publish(&publisher, vec![edit("MoinMaster", &format!("P{n}"))]).await.unwrap();
    }
    let mut follower = hub.follow(Some(0), Filter::all(), Lag::Resume).await.unwrap();
    let writer = {
        let hub = Arc::clone(&hub);
        let publisher = Arc::clone(&publisher);
        tokio::spawn(async move {
            for n in 0..700 {
                hub.publish(&publisher, vec![edit("MoinMaster", &format!("Q{n}"))]).await.unwrap();
            }
        })
    };
    for expected in 1..=1000 {
        assert_eq!(next_event(&mut follower).await, expected);
    }
    writer.await.unwrap();
}

#[tokio::test]
async fn a_lagging_follower_resumes_from_the_store_or_ends() {
    let directory = tempfile::tempdir().unwrap();
    let hub = hub(&directory, 8, LimitsConfig::default());
    let publisher = hub.publishers().by_token(TOKEN).unwrap();
    let mut resuming = hub.follow(None, Filter::all(), Lag::Resume).await.unwrap();
    let mut ending = hub.follow(None, Filter::all(), Lag::End).await.unwrap();
    for n in 0..100 {
        hub.publish(&publisher, vec![edit("MoinMaster", &format!("P{n}"))]).await.unwrap();
    }
    for expected in 1..=100 {
        assert_eq!(next_event(&mut resuming).await, expected);
    }
    assert!(matches!(ending.next().await, Err(FollowError::Lagged)));
    assert!(hub.metrics().followers_lagged.get() >= 2);
}

#[tokio::test]
async fn filters_apply_to_history_and_live_alike() {
    let directory = tempfile::tempdir().unwrap();
    let hub = hub(&directory, 4096, LimitsConfig::default());
    let publisher = hub.publishers().by_token(TOKEN).unwrap();
    hub.publish(
        &publisher,
        vec![edit("MoinMaster", "Help/A"), edit("Other", "Help/B"), edit("MoinMaster", "X")],
    )
    .await
    .unwrap();
    let filter = Filter::parse("wiki=MoinMaster&page=Help/*").unwrap();
    let mut follower = hub.follow(Some(0), filter, Lag::Resume).await.unwrap();
    assert_eq!(next_event(&mut follower).await, 1);
    hub.publish(&publisher, vec![edit("Other", "Help/C"), edit("MoinMaster", "Help/D")]).await.unwrap();
    assert_eq!(next_event(&mut follower).await, 5);
}

#[tokio::test]
async fn a_cursor_older_than_retention_gets_a_gap_first() {
    let directory = tempfile::tempdir().unwrap();
    let hub = hub(&directory, 4096, LimitsConfig::default());
    let publisher = hub.publishers().by_token(TOKEN).unwrap();
    hub.publish(&publisher, (0..30).map(|n| edit("MoinMaster", &format!("P{n}"))).collect()).await.unwrap();
    while hub.store().prune(Retention { max_events: Some(10), max_age: None }).await.unwrap() > 0 {}
    let mut follower = hub.follow(Some(5), Filter::all(), Lag::Resume).await.unwrap();
    assert_eq!(follower.next().await.unwrap(), Item::Gap { from: 6, to: 20 });
    assert_eq!(next_event(&mut follower).await, 21);
}

#[tokio::test]
async fn publishers_speak_only_for_their_wikis_and_within_their_rate() {
    let directory = tempfile::tempdir().unwrap();
    let hub = hub(&directory, 4096, LimitsConfig { publish_rate: 1.0, publish_burst: 3.0 });
    let publisher = hub.publishers().by_token(TOKEN).unwrap();
    assert!(hub.publishers().by_token("wwt_wrong").is_none());
    assert!(hub.publishers().authenticate("MOIN", TOKEN).is_some());
    assert!(hub.publishers().authenticate("moin", "nope").is_none());

    let refused = hub.publish(&publisher, vec![edit("MoinMaster", "A"), edit("Stranger", "B")]).await;
    assert!(matches!(refused, Err(PublishError::NotYourWiki { index: 1, .. })));
    assert_eq!(hub.store().bounds().await.unwrap().last_id, 0, "nothing stored");

    let respelled = hub.publish(&publisher, vec![edit("moinmaster", "A")]).await.unwrap();
    assert_eq!(respelled[0].event.wiki, "MoinMaster");
    hub.publish(&publisher, vec![edit("MoinMaster", "B"), edit("MoinMaster", "C")]).await.unwrap();
    let limited = hub.publish(&publisher, vec![edit("MoinMaster", "D")]).await;
    assert!(matches!(limited, Err(PublishError::RateLimited { .. })), "{limited:?}");
    assert_eq!(hub.metrics().rejected_rate.get(), 1);
}
