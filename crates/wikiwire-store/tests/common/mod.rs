//! What the store's test files share: drafts from JSON, and many appends at once.

use std::sync::Arc;

use futures_util::future::join_all;
use serde_json::json;
use wikiwire_event::{Draft, Timestamp, fields};
use wikiwire_store::Store;

pub fn draft(value: serde_json::Value) -> Draft {
    let serde_json::Value::Object(map) = value else { panic!("object expected") };
    fields::parse_submission(map, Timestamp::now()).expect("valid test event")
}

pub fn edit(wiki: &str, page: &str) -> Draft {
    draft(json!({"wiki": wiki, "action": "page_changed", "page": page, "user": "Alice"}))
}

/// Appends `count` single edits at once, each from its own task, and asserts that they got the
/// ids 1 to `count`, each one once.
pub async fn append_concurrently<S: Store + ?Sized>(store: &Arc<S>, count: u64) {
    let tasks = (0..count).map(|index| {
        let store = Arc::clone(store);
        tokio::spawn(
            async move { store.append(vec![edit("A", &format!("P{index}"))]).await.unwrap()[0].event.id },
        )
    });
    let mut ids: Vec<u64> = join_all(tasks).await.into_iter().map(Result::unwrap).collect();
    ids.sort_unstable();
    assert_eq!(ids, (1..=count).collect::<Vec<_>>());
}
