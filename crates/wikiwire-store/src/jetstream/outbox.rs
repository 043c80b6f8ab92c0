//! The Jabber bot's state in a cluster ([`Outbox`]), shared by every node, in bytes (the bot owns
//! the meaning).
//!
//! * **Outbox**: the stream `<stream>_BOT`, one message per item on `wikiwire.bot.out.<unique>`,
//!   removed when delivered. Any node stores items (the XML-RPC API answers on every node); the
//!   node that holds the bot's lease delivers them, oldest first.
//! * **Positions** of the bot's followers of the log, on `wikiwire.bot.pos.<name>` (one message
//!   per subject kept). Items and the position move together in one atomic batch, and the
//!   position only from the sequence this node read or wrote last (Expected-Last-Subject-
//!   Sequence): a node that lost the lease cannot write.
//! * **Table**: the bucket `<stream>_bot` (subscriptions, known JIDs, the session's records),
//!   each change a compare-and-set on the key's revision.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream::{self, consumer, kv, stream};
use async_trait::async_trait;
use bytes::Bytes;
use futures_util::StreamExt;
use tokio::sync::Notify;

use super::subjects::{self, codes};
use crate::StoreError;
use crate::outbox::{Outbox, check_key};

/// Subjects of the bot's stream.
const PREFIX: &str = "wikiwire.bot";
/// Most messages in one atomic batch (the server's limit is 1000).
const BATCH: usize = 1000;
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);

pub struct SharedOutbox {
    client: async_nats::Client,
    stream: stream::Stream,
    table: kv::Store,
    /// The sequence of each position's message as this node last read or wrote it.
    positions: Mutex<HashMap<String, u64>>,
    /// Names batches and message ids: unique per process.
    boot: String,
    counter: std::sync::atomic::AtomicU64,
}

impl SharedOutbox {
    pub(crate) async fn open(
        client: async_nats::Client,
        context: jetstream::Context,
        stream_name: &str,
        replicas: usize,
        node: &str,
    ) -> Result<SharedOutbox, StoreError> {
        let config = stream::Config {
            name: format!("{stream_name}_BOT"),
            subjects: vec![format!("{PREFIX}.out.*"), format!("{PREFIX}.pos.*")],
            retention: stream::RetentionPolicy::Limits,
            storage: stream::StorageType::File,
            num_replicas: replicas,
            max_messages_per_subject: 1,
            duplicate_window: Duration::from_secs(120),
            allow_direct: true,
            allow_atomic_publish: true,
            description: Some("wikiwire: the Jabber bot's outbox and positions".into()),
            ..Default::default()
        };
        let stream = context.get_or_create_stream(config).await.map_err(StoreError::unavailable)?;
        let table = context
            .create_or_update_key_value(super::bucket_config(
                &format!("{stream_name}_bot"),
                "wikiwire: the Jabber bot's subscriptions and known JIDs",
                replicas,
                Duration::ZERO,
            ))
            .await
            .map_err(StoreError::unavailable)?;
        let boot = format!("{node}-{}", super::nonce());
        Ok(SharedOutbox {
            client,
            stream,
            table,
            positions: Mutex::default(),
            boot,
            counter: std::sync::atomic::AtomicU64::new(0),
        })
    }

    fn next(&self) -> u64 {
        self.counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    }

    fn item_message(&self, payload: Bytes) -> (String, HeaderMap, Bytes) {
        let unique = format!("{}n{}", self.boot, self.next());
        let mut headers = HeaderMap::new();
        headers.insert(subjects::MSG_ID, unique.as_str());
        (format!("{PREFIX}.out.{unique}"), headers, payload)
    }

    /// Publishes messages as one atomic batch (or alone); returns the last one's sequence.
    async fn publish(&self, messages: Vec<(String, HeaderMap, Bytes)>) -> Result<u64, StoreError> {
        let last = messages.len();
        let batch_id = format!("{}b{}", self.boot, self.next());
        for (index, (subject, mut headers, payload)) in messages.into_iter().enumerate() {
            let sequence = index + 1;
            if last > 1 {
                headers.insert(subjects::BATCH_ID, batch_id.as_str());
                headers.insert(subjects::BATCH_SEQUENCE, sequence.to_string().as_str());
                if sequence == last {
                    headers.insert(subjects::BATCH_COMMIT, "1");
                }
            }
            if sequence == last || sequence == 1 {
                let request = async_nats::Request::new()
                    .headers(headers)
                    .payload(payload)
                    .timeout(Some(ATTEMPT_TIMEOUT));
                let reply =
                    self.client.send_request(subject, request).await.map_err(StoreError::unavailable)?;
                let answer = read_ack(&reply.payload)?;
                if sequence == last {
                    return answer.ok_or_else(|| StoreError::unavailable_msg("the stream gave no sequence"));
                }
            } else {
                self.client
                    .publish_with_headers(subject, headers, payload)
                    .await
                    .map_err(StoreError::unavailable)?;
            }
        }
        Err(StoreError::unavailable_msg("nothing to publish"))
    }
}

#[async_trait]
impl Outbox for SharedOutbox {
    /// Stores items durably (in batches of up to 1000, each all or none).
    async fn enqueue(&self, items: Vec<Bytes>) -> Result<(), StoreError> {
        for chunk in items.chunks(BATCH) {
            let messages = chunk.iter().map(|item| self.item_message(item.clone())).collect();
            self.publish(messages).await?;
        }
        Ok(())
    }

    /// Stores items and moves the position `name` to `id` in one atomic batch, from the
    /// sequence this node last saw (`StoreError::Conflict` when another node wrote it since).
    async fn enqueue_at(&self, items: Vec<Bytes>, name: &str, id: u64) -> Result<(), StoreError> {
        if items.len() >= BATCH {
            let (first, rest) = items.split_at(items.len() - (BATCH - 1));
            self.enqueue(first.to_vec()).await?;
            return Box::pin(self.enqueue_at(rest.to_vec(), name, id)).await;
        }
        let expected =
            self.positions.lock().ok().and_then(|positions| positions.get(name).copied()).unwrap_or(0);
        let mut messages: Vec<_> = items.into_iter().map(|item| self.item_message(item)).collect();
        let mut headers = HeaderMap::new();
        headers.insert(subjects::EXPECTED_LAST_SUBJECT_SEQUENCE, expected.to_string().as_str());
        messages.push((position_subject(name), headers, Bytes::from(id.to_string())));
        let sequence = self.publish(messages).await.map_err(|error| match error {
            StoreError::Conflict(_) => {
                StoreError::Conflict(format!("the bot's position {name:?} was moved by another node"))
            }
            other => other,
        })?;
        if let Ok(mut positions) = self.positions.lock() {
            positions.insert(name.to_owned(), sequence);
        }
        Ok(())
    }

    /// Where the follower `name` stands (and this node remembers the sequence to write from).
    async fn position(&self, name: &str) -> Result<Option<u64>, StoreError> {
        let found = self.stream.direct_get_last_for_subject(position_subject(name)).await;
        let (id, sequence) = match found {
            Ok(message) => {
                let id = std::str::from_utf8(&message.payload).ok().and_then(|text| text.parse::<u64>().ok());
                let id =
                    id.ok_or_else(|| StoreError::backend_msg(format!("bot position {name:?} is not an id")))?;
                (Some(id), message.sequence)
            }
            Err(error) if error.kind() == stream::DirectGetErrorKind::NotFound => (None, 0),
            Err(error) => return Err(StoreError::unavailable(error)),
        };
        if let Ok(mut positions) = self.positions.lock() {
            positions.insert(name.to_owned(), sequence);
        }
        Ok(id)
    }

    /// Items after `after`, oldest first, at most `limit`, each with its sequence.
    async fn pending(&self, after: u64, limit: usize) -> Result<Vec<(u64, Bytes)>, StoreError> {
        let mut items = Vec::new();
        if limit == 0 {
            return Ok(items);
        }
        // A throwaway reader from the oldest item after `after` on; delivered items were deleted.
        let consumer = self
            .stream
            .create_consumer(consumer::pull::Config {
                filter_subject: format!("{PREFIX}.out.*"),
                deliver_policy: consumer::DeliverPolicy::ByStartSequence {
                    start_sequence: after.saturating_add(1),
                },
                ack_policy: consumer::AckPolicy::None,
                inactive_threshold: Duration::from_secs(30),
                ..Default::default()
            })
            .await
            .map_err(StoreError::unavailable)?;
        let mut messages = consumer
            .fetch()
            // Returns at once with what is there (a fetch does not wait for more).
            .max_messages(limit)
            .messages()
            .await
            .map_err(StoreError::unavailable)?;
        while let Some(message) = messages.next().await {
            let message = message.map_err(unavailable_boxed)?;
            let sequence = message.info().map_err(unavailable_boxed)?.stream_sequence;
            items.push((sequence, message.payload.clone()));
        }
        Ok(items)
    }

    /// An item was delivered.
    async fn done(&self, sequence: u64) -> Result<(), StoreError> {
        match self.stream.delete_message(sequence).await {
            Ok(_) => Ok(()),
            // Already gone (removed by the node that held the lease before, or by a retry whose
            // first answer was lost). The server says so with 10037 or 10043, or with a failed
            // delete (10057) of "no message found" or "sequence … not found".
            Err(error) if already_gone(&error) => Ok(()),
            Err(error) => Err(StoreError::unavailable(error)),
        }
    }

    /// The deletions go out together (each is its own request to the stream's leader).
    async fn done_many(&self, ids: Vec<u64>) -> Result<(), StoreError> {
        let deletions = ids.into_iter().map(|id| self.done(id));
        futures_util::future::join_all(deletions).await.into_iter().collect()
    }

    /// Items waiting.
    async fn waiting(&self) -> Result<u64, StoreError> {
        let mut subjects = self
            .stream
            .info_with_subjects(format!("{PREFIX}.pos.*"))
            .await
            .map_err(StoreError::unavailable)?;
        let messages = subjects.info.state.messages;
        let mut positions = 0;
        while subjects.next().await.is_some() {
            positions += 1;
        }
        Ok(messages.saturating_sub(positions))
    }

    /// Wakes `wake` whenever any node stores an item.
    async fn notify_on_items(&self, wake: Arc<Notify>) -> Result<(), StoreError> {
        let mut subscriber =
            self.client.subscribe(format!("{PREFIX}.out.*")).await.map_err(StoreError::unavailable)?;
        tokio::spawn(async move {
            while subscriber.next().await.is_some() {
                wake.notify_one();
            }
        });
        Ok(())
    }

    fn reads_its_removals(&self) -> bool {
        false
    }

    /// A value and its revision.
    async fn table_get(&self, key: &str) -> Result<Option<(Bytes, u64)>, StoreError> {
        check_key(key)?;
        let entry = self.table.entry(key).await.map_err(StoreError::unavailable)?;
        Ok(entry
            .filter(|entry| entry.operation == kv::Operation::Put)
            .map(|entry| (entry.value, entry.revision)))
    }

    /// Writes `value` if the key is still at `revision` (0: absent); `Conflict` otherwise.
    async fn table_put(&self, key: &str, value: Bytes, revision: u64) -> Result<u64, StoreError> {
        check_key(key)?;
        let conflict = || StoreError::Conflict(format!("{key} changed meanwhile"));
        if revision == 0 {
            return self.table.create(key, value).await.map_err(|error| match error.kind() {
                kv::CreateErrorKind::AlreadyExists => conflict(),
                _ => StoreError::unavailable(error),
            });
        }
        self.table.update(key, value, revision).await.map_err(|error| match error.kind() {
            kv::UpdateErrorKind::WrongLastRevision => conflict(),
            _ => StoreError::unavailable(error),
        })
    }

    async fn table_delete(&self, key: &str) -> Result<(), StoreError> {
        check_key(key)?;
        self.table.delete(key).await.map_err(StoreError::unavailable)
    }

    /// Keys starting with `prefix`.
    async fn table_keys(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        let mut keys = match self.table.keys().await {
            Ok(keys) => keys,
            Err(error) => return Err(StoreError::unavailable(error)),
        };
        let mut found = Vec::new();
        while let Some(key) = keys.next().await {
            let key = key.map_err(StoreError::unavailable)?;
            if key.starts_with(prefix) {
                found.push(key);
            }
        }
        found.sort();
        Ok(found)
    }
}

fn already_gone(error: &stream::DeleteMessageError) -> bool {
    use async_nats::jetstream::ErrorCode;
    match error.kind() {
        stream::DeleteMessageErrorKind::JetStream(error) => {
            error.error_code() == ErrorCode::NO_MESSAGE_FOUND
                || error.error_code() == ErrorCode::SEQUENCE_NOT_FOUND
                || (error.error_code() == ErrorCode::STREAM_MESSAGE_DELETE_FAILED
                    && error.to_string().contains(" found"))
        }
        _ => false,
    }
}

fn position_subject(name: &str) -> String {
    format!("{PREFIX}.pos.{}", hex::encode(name))
}

#[derive(serde::Deserialize)]
struct Ack {
    seq: Option<u64>,
    error: Option<AckError>,
}

#[derive(serde::Deserialize)]
struct AckError {
    #[serde(default)]
    err_code: u64,
    #[serde(default)]
    description: String,
}

/// `Unavailable` for the boxed errors async_nats hands out for messages.
fn unavailable_boxed(error: Box<dyn std::error::Error + Send + Sync>) -> StoreError {
    let (reason, cause) = crate::with_shared_cause(None, error.into());
    StoreError::Unavailable { reason, cause }
}

/// The stream's answer: a sequence, nothing (a batch's first message), or an error.
fn read_ack(payload: &[u8]) -> Result<Option<u64>, StoreError> {
    if payload.is_empty() {
        return Ok(None);
    }
    let ack: Ack = serde_json::from_slice(payload).map_err(StoreError::unavailable)?;
    match ack.error {
        Some(error)
            if matches!(error.err_code, codes::WRONG_LAST_SEQUENCE | codes::WRONG_LAST_SEQUENCE_CONSTANT) =>
        {
            Err(StoreError::Conflict(error.description))
        }
        Some(error) => {
            Err(StoreError::unavailable_msg(format!("{} ({})", error.description, error.err_code)))
        }
        None => Ok(ack.seq),
    }
}
