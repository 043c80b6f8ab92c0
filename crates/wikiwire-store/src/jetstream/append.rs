//! The node's one writer: group commit onto the stream.
//!
//! Why one task: it takes every append that is waiting when it starts a commit and sends them as
//! one JetStream atomic batch (all stored or none, contiguous sequences), so a node with many
//! publishers pays one round trip per group, as the SQLite writer pays one fsync. One batch is in
//! flight at a time, which keeps the node's own events in the order they were appended.
//!
//! Every draft carries a `Nats-Msg-Id` of its own, fixed for all its attempts, and keyed drafts
//! go to one subject per key with "this subject must be empty". That makes every outcome exact:
//!
//! | answer | meaning | ids |
//! |---|---|---|
//! | ack `{seq, count}` | stored now | `seq - count + 1 ..= seq` |
//! | ack `duplicate` (one draft) | an earlier attempt stored it | `seq` |
//! | 10201 (a batch) | an earlier attempt stored the batch | re-send its last message alone: `duplicate`, `seq` |
//! | 10071 | a key's subject holds an event | ours (our Msg-Id): stored earlier; another: a duplicate key |
//! | timeout, no responders, lost connection | unknown | send the same drafts again until `publish_timeout` |

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use async_nats::HeaderMap;
use bytes::Bytes;
use serde::Deserialize;
use tokio::sync::{mpsc, oneshot};
use wikiwire_event::{Draft, Event};

use super::Inner;
use super::apply::event_from_message;
use super::subjects::{self, codes};
use crate::groups::Groups;
use crate::{Appended, StoreError};

/// The server's limit on one atomic batch.
pub const MAX_BATCH: usize = 1000;
/// Appends queued for the writer before callers wait.
pub const QUEUE: usize = 1024;
/// How long an append waits for this node's replica before answering anyway.
pub const APPLY_WAIT: Duration = Duration::from_secs(5);
/// How long one attempt waits for the server's answer.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(3);

pub struct Request {
    pub drafts: Vec<Draft>,
    pub reply: oneshot::Sender<Result<Vec<Appended>, StoreError>>,
}

/// One draft on its way: where it goes and how it is known.
#[derive(Clone)]
struct Outgoing {
    subject: String,
    msg_id: String,
    keyed: bool,
    payload: Bytes,
}

/// What became of one draft of the group.
#[derive(Clone)]
enum Outcome {
    Pending,
    Stored(u64),
    /// Its key was already in the log: the event stored first.
    Duplicate(Arc<Event>),
    /// Same `(wiki, key)` as an earlier draft of this group: whatever became of that one.
    SameAs(usize),
}

pub async fn run(inner: Arc<Inner>, requests: mpsc::Receiver<Request>) {
    let mut writer = Writer::new(inner);
    let mut requests = Groups::new(requests);
    while let Some(first) = requests.first().await {
        // Only appends that fit whole join the group; the next one starts the next group.
        let group = requests.gather(
            first,
            MAX_BATCH,
            |request| request.drafts.len(),
            |_, filled, request| {
                if filled + request.drafts.len() <= MAX_BATCH { Ok(request) } else { Err(request) }
            },
        );
        writer.commit_group(group).await;
    }
}

struct Writer {
    inner: Arc<Inner>,
    /// Message ids: this node, this process, a counter; unique across the cluster and restarts.
    boot: String,
    counter: u64,
    /// Answers still to throw away (`JetStreamOptions::lose_answers`).
    lose: u32,
}

impl Writer {
    fn new(inner: Arc<Inner>) -> Writer {
        let boot = format!("{}.{}", inner.options.node, super::nonce());
        let lose = inner.options.lose_answers;
        Writer { inner, boot, counter: 0, lose }
    }

    fn next_id(&mut self) -> String {
        self.counter += 1;
        format!("{}.{}", self.boot, self.counter)
    }

    async fn commit_group(&mut self, group: Vec<Request>) {
        if group.is_empty() {
            return;
        }
        let drafts: Vec<&Draft> = group.iter().flat_map(|request| request.drafts.iter()).collect();
        let result = self.commit(&drafts).await;
        let mut offset = 0;
        for request in group {
            let count = request.drafts.len();
            let answer =
                result.as_ref().map(|all| all[offset..offset + count].to_vec()).map_err(Clone::clone);
            offset += count;
            let _ = request.reply.send(answer);
        }
    }

    /// Stores the drafts as one batch and says what became of each, in order.
    async fn commit(&mut self, drafts: &[&Draft]) -> Result<Vec<Appended>, StoreError> {
        let prefix = self.inner.options.subject_prefix.clone();
        let mut outcomes = vec![Outcome::Pending; drafts.len()];
        let mut outgoing = Vec::with_capacity(drafts.len());
        let mut first_of_key: HashMap<(String, String), usize> = HashMap::new();
        for (index, draft) in drafts.iter().enumerate() {
            if let Some(key) = draft.key() {
                match first_of_key.entry((draft.wiki().to_ascii_lowercase(), key.to_owned())) {
                    std::collections::hash_map::Entry::Occupied(first) => {
                        outcomes[index] = Outcome::SameAs(*first.get());
                        continue;
                    }
                    std::collections::hash_map::Entry::Vacant(slot) => {
                        slot.insert(index);
                    }
                }
            }
            outgoing.push((
                index,
                Outgoing {
                    subject: subjects::event_subject(&prefix, draft.wiki(), draft.key()),
                    msg_id: self.next_id(),
                    keyed: draft.key().is_some(),
                    payload: Bytes::from(draft.event().to_stored_json()),
                },
            ));
        }
        self.send(&mut outgoing, &mut outcomes).await?;
        let resolve = |index: usize| -> Result<Appended, StoreError> {
            let mut index = index;
            while let Outcome::SameAs(first) = outcomes[index] {
                index = first;
            }
            match &outcomes[index] {
                Outcome::Stored(id) => {
                    Ok(Appended { event: Arc::new(drafts[index].clone().commit(*id)), duplicate: false })
                }
                Outcome::Duplicate(event) => Ok(Appended { event: Arc::clone(event), duplicate: true }),
                Outcome::Pending | Outcome::SameAs(_) => {
                    Err(StoreError::backend_msg("an append ended without an outcome for every event"))
                }
            }
        };
        (0..drafts.len())
            .map(|index| {
                let appended = resolve(index)?;
                // A draft that repeats a key of its own group is a duplicate of what that became.
                Ok(if matches!(outcomes[index], Outcome::SameAs(_)) {
                    Appended { duplicate: true, ..appended }
                } else {
                    appended
                })
            })
            .collect()
    }

    /// Sends until every outgoing draft has an outcome, or `publish_timeout` runs out.
    async fn send(
        &mut self,
        outgoing: &mut Vec<(usize, Outgoing)>,
        outcomes: &mut [Outcome],
    ) -> Result<(), StoreError> {
        let deadline = Instant::now() + self.inner.options.publish_timeout;
        let mut delay = Duration::from_millis(50);
        let mut batch_number = 0u64;
        while !outgoing.is_empty() {
            if let Some(reason) = self.inner.fatal() {
                return Err(StoreError::unavailable_msg(reason));
            }
            if self.inner.is_closed() {
                return Err(StoreError::Closed);
            }
            batch_number += 1;
            let mut attempt = self.attempt(outgoing, batch_number).await;
            if self.lose > 0 && matches!(attempt, Attempt::Stored { .. }) {
                self.lose -= 1;
                attempt = Attempt::Unknown("answer thrown away (fault injection)".into());
            }
            let retry_reason = match attempt {
                Attempt::Stored { last, count, duplicate } => {
                    if count != outgoing.len() as u64 {
                        return Err(StoreError::backend_msg(format!(
                            "the stream stored {count} events of a batch of {}",
                            outgoing.len()
                        )));
                    }
                    let first = last + 1 - count;
                    if !duplicate {
                        self.check_ids(first, last).await?;
                    }
                    stored_from(first, outgoing, outcomes);
                    return Ok(());
                }
                Attempt::BatchSeenBefore => match self.resend_last_alone(outgoing).await {
                    Ok(last) => {
                        self.inner.resolved.fetch_add(1, Ordering::Relaxed);
                        stored_from(last + 1 - outgoing.len() as u64, outgoing, outcomes);
                        return Ok(());
                    }
                    Err(reason) => reason,
                },
                Attempt::KeyHeld => match self.resolve_keys(outgoing, outcomes).await {
                    Ok(true) => return Ok(()),
                    // Duplicates dropped: send the rest at once.
                    Ok(false) => continue,
                    Err(reason) => reason,
                },
                Attempt::Refused(reason) => return Err(StoreError::unavailable_msg(reason)),
                Attempt::Unknown(reason) => reason,
            };
            self.inner.retries.fetch_add(1, Ordering::Relaxed);
            if Instant::now() + delay >= deadline {
                return Err(StoreError::unavailable_msg(format!(
                    "the stream did not confirm within {:?}: {retry_reason}",
                    self.inner.options.publish_timeout
                )));
            }
            tracing::debug!(reason = %retry_reason, "append not confirmed; sending the same events again");
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_millis(1000));
        }
        Ok(())
    }

    /// A stream that hands out an id this node has already applied is either answering a retry
    /// whose first attempt was stored and applied meanwhile (a new leader does not always say
    /// `duplicate`), or is not the stream the node follows. The stream's creation time tells.
    async fn check_ids(&self, first: u64, last: u64) -> Result<(), StoreError> {
        let applied = *self.inner.applied.borrow();
        if first > applied {
            return Ok(());
        }
        let info = self
            .inner
            .stream
            .get_info()
            .await
            .map_err(|error| StoreError::unavailable_in("cannot ask the stream who it is", error))?;
        if super::created_micros(&info) == self.inner.created {
            return Ok(());
        }
        let reason = format!(
            "the stream stored events as {first}..={last}, but this node has already applied {applied}: \
             the stream was made again behind the hub's back"
        );
        self.inner.set_fatal(reason.clone());
        Err(StoreError::unavailable_msg(reason))
    }

    async fn attempt(&self, outgoing: &[(usize, Outgoing)], batch_number: u64) -> Attempt {
        let client = &self.inner.client;
        if outgoing.len() == 1 {
            let (_, message) = &outgoing[0];
            return answer(client.send_request(message.subject.clone(), request(message, None)).await);
        }
        let batch_id = format!("{}.{}.b{batch_number}", self.boot, self.counter);
        let batch_id = if batch_id.len() > 64 {
            // The server takes at most 64 characters; the tail of the id is what makes it unique.
            batch_id[batch_id.len() - 64..].to_owned()
        } else {
            batch_id
        };
        let last = outgoing.len();
        for (position, (_, message)) in outgoing.iter().enumerate() {
            let sequence = position + 1;
            let batch = Some((batch_id.as_str(), sequence, sequence == last));
            if sequence == 1 || sequence == last {
                // The first answer tells that the server took the batch; the last, its fate.
                let reply = client.send_request(message.subject.clone(), request(message, batch)).await;
                if sequence == last {
                    return answer(reply);
                }
                match answer(reply) {
                    Attempt::Unknown(reason) if reason.is_empty() => {}
                    other => return other,
                }
            } else {
                let headers = headers(message, batch);
                if let Err(error) = client
                    .publish_with_headers(message.subject.clone(), headers, message.payload.clone())
                    .await
                {
                    return Attempt::Unknown(format!("cannot send: {error}"));
                }
            }
        }
        Attempt::Unknown("empty batch".into())
    }

    /// After 10201 the batch is in the stream; its last message, sent again alone with its
    /// Msg-Id, is answered `duplicate` with its sequence.
    async fn resend_last_alone(&self, outgoing: &[(usize, Outgoing)]) -> Result<u64, String> {
        let (_, last) = outgoing.last().ok_or("empty batch")?;
        let plain = Outgoing { keyed: false, ..last.clone() };
        match answer(self.inner.client.send_request(plain.subject.clone(), request(&plain, None)).await) {
            Attempt::Stored { last: sequence, .. } => Ok(sequence),
            Attempt::KeyHeld | Attempt::BatchSeenBefore => Err("unexpected answer to a lone re-send".into()),
            Attempt::Refused(reason) | Attempt::Unknown(reason) => Err(reason),
        }
    }

    /// After 10071: reads the newest event of every key subject of the batch. One of ours means
    /// an earlier attempt stored the whole batch; another's means that draft is a duplicate.
    /// Returns true when every draft has an outcome.
    async fn resolve_keys(
        &self,
        outgoing: &mut Vec<(usize, Outgoing)>,
        outcomes: &mut [Outcome],
    ) -> Result<bool, String> {
        self.inner.resolved.fetch_add(1, Ordering::Relaxed);
        let mut duplicates = Vec::new();
        for (position, (index, message)) in outgoing.iter().enumerate() {
            if !message.keyed {
                continue;
            }
            let held = match self.inner.stream.direct_get_last_for_subject(message.subject.clone()).await {
                Ok(held) => held,
                Err(error) if error.to_string().contains("not found") => continue,
                Err(error) => return Err(format!("cannot read a key's event: {error}")),
            };
            let ours =
                held.headers.get(subjects::MSG_ID).is_some_and(|value| value.as_str() == message.msg_id);
            if ours {
                // Atomic batches are contiguous: the whole batch follows from one member.
                stored_from(held.sequence - position as u64, outgoing, outcomes);
                return Ok(true);
            }
            let prefix = &self.inner.options.subject_prefix;
            let event = event_from_message(prefix, &held.subject, &held.payload, held.sequence)
                .map_err(|error| error.to_string())?;
            duplicates.push((*index, Arc::new(event)));
        }
        if duplicates.is_empty() {
            // The holder expired between the refusal and the read: send again.
            return Err("a key was held, and then no longer".into());
        }
        for (index, event) in duplicates {
            outcomes[index] = Outcome::Duplicate(event);
            outgoing.retain(|(candidate, _)| *candidate != index);
        }
        Ok(outgoing.is_empty())
    }
}

/// The whole batch is in the stream from `first` on (atomic batches are contiguous, in order).
fn stored_from(first: u64, outgoing: &mut Vec<(usize, Outgoing)>, outcomes: &mut [Outcome]) {
    for (offset, (index, _)) in outgoing.drain(..).enumerate() {
        outcomes[index] = Outcome::Stored(first + offset as u64);
    }
}

enum Attempt {
    /// `duplicate`: an earlier attempt of this one draft stored it (its Msg-Id was known).
    Stored {
        last: u64,
        count: u64,
        duplicate: bool,
    },
    BatchSeenBefore,
    KeyHeld,
    /// The server said no for a reason that waiting will not change.
    Refused(String),
    /// No answer, or one that means "try again"; empty for the server's plain "go on".
    Unknown(String),
}

#[derive(Deserialize)]
struct Reply {
    #[serde(default)]
    seq: Option<u64>,
    #[serde(default)]
    duplicate: bool,
    #[serde(default)]
    count: Option<u64>,
    #[serde(default)]
    error: Option<ApiError>,
}

#[derive(Deserialize)]
struct ApiError {
    #[serde(default)]
    code: u16,
    #[serde(default)]
    err_code: u64,
    #[serde(default)]
    description: String,
}

fn answer(reply: Result<async_nats::Message, async_nats::RequestError>) -> Attempt {
    let message = match reply {
        Ok(message) => message,
        Err(error) => return Attempt::Unknown(error.to_string()),
    };
    if message.payload.is_empty() {
        // A status without a body (no responders, 503) or the plain answer to a batch's first message.
        return match message.status {
            Some(status) if status.as_u16() >= 300 => Attempt::Unknown(format!("status {status}")),
            _ => Attempt::Unknown(String::new()),
        };
    }
    let reply: Reply = match serde_json::from_slice(&message.payload) {
        Ok(reply) => reply,
        Err(error) => return Attempt::Unknown(format!("unreadable answer: {error}")),
    };
    if let Some(error) = reply.error {
        return match error.err_code {
            codes::WRONG_LAST_SEQUENCE | codes::WRONG_LAST_SEQUENCE_CONSTANT => Attempt::KeyHeld,
            codes::BATCH_DUPLICATE_MSG_ID => Attempt::BatchSeenBefore,
            // 503s and the cluster's own hiccups (no quorum, leader change) pass.
            _ if error.code == 503 || error.code == 408 || error.code >= 500 => {
                Attempt::Unknown(format!("{} ({})", error.description, error.err_code))
            }
            _ => Attempt::Refused(format!(
                "the stream refused the events: {} ({})",
                error.description, error.err_code
            )),
        };
    }
    match reply.seq {
        Some(last) => Attempt::Stored { last, count: reply.count.unwrap_or(1), duplicate: reply.duplicate },
        None => Attempt::Unknown(String::new()),
    }
}

fn headers(message: &Outgoing, batch: Option<(&str, usize, bool)>) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(subjects::MSG_ID, message.msg_id.as_str());
    if message.keyed {
        headers.insert(subjects::EXPECTED_LAST_SUBJECT_SEQUENCE, "0");
    }
    if let Some((id, sequence, commit)) = batch {
        headers.insert(subjects::BATCH_ID, id);
        headers.insert(subjects::BATCH_SEQUENCE, sequence.to_string().as_str());
        if commit {
            headers.insert(subjects::BATCH_COMMIT, "1");
        }
    }
    headers
}

fn request(message: &Outgoing, batch: Option<(&str, usize, bool)>) -> async_nats::Request {
    async_nats::Request::new()
        .headers(headers(message, batch))
        .payload(message.payload.clone())
        .timeout(Some(ATTEMPT_TIMEOUT))
}
