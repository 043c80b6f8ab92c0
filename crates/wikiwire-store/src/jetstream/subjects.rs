//! Names in NATS: the stream's subjects (one per wiki for keyless events, one per key for keyed
//! ones), message ids, and the headers the append protocol uses.

use sha2::{Digest, Sha256};

/// `Nats-Msg-Id`: the server drops a second message with the same id inside the duplicate window;
/// the append path uses it to make its own retries harmless.
pub const MSG_ID: &str = "Nats-Msg-Id";
/// The server refuses a message whose subject already holds a message at another sequence: with
/// `0`, "only if this subject is empty", which makes one subject per key a uniqueness check.
pub const EXPECTED_LAST_SUBJECT_SEQUENCE: &str = "Nats-Expected-Last-Subject-Sequence";
/// ADR-50 atomic batches: all messages of one batch are stored together or not at all.
pub const BATCH_ID: &str = "Nats-Batch-Id";
pub const BATCH_SEQUENCE: &str = "Nats-Batch-Sequence";
pub const BATCH_COMMIT: &str = "Nats-Batch-Commit";

/// JetStream error codes the append path acts on.
pub mod codes {
    /// Wrong last sequence: a keyed subject already holds an event.
    pub const WRONG_LAST_SEQUENCE: u64 = 10071;
    /// The same, without the sequence in its text: what the server answers when the check fails
    /// while an atomic batch is staged (seen when two nodes publish one key at the same moment).
    pub const WRONG_LAST_SEQUENCE_CONSTANT: u64 = 10164;
    /// A re-sent atomic batch whose message ids the stream has seen: it committed before.
    pub const BATCH_DUPLICATE_MSG_ID: u64 = 10201;
}

/// The subject of an event: `<prefix>.<wiki>.n` without a key, `<prefix>.<wiki>.k.<sha256(key)>`
/// with one. Wiki names compare without ASCII case (as in SQLite), so they are lowercased; a name
/// that is not a plain NATS token is hex-encoded (configured wiki names always are plain).
pub fn event_subject(prefix: &str, wiki: &str, key: Option<&str>) -> String {
    let wiki = wiki_token(wiki);
    match key {
        None => format!("{prefix}.{wiki}.n"),
        Some(key) => format!("{prefix}.{wiki}.k.{}", hex::encode(Sha256::digest(key.as_bytes()))),
    }
}

fn wiki_token(wiki: &str) -> String {
    let plain = !wiki.is_empty()
        && wiki.bytes().all(|byte| byte.is_ascii_alphanumeric() || byte == b'_' || byte == b'-');
    if plain { wiki.to_ascii_lowercase() } else { format!("x{}", hex::encode(wiki.to_ascii_lowercase())) }
}

/// A KV key for a named cursor: names are free text, KV keys are not.
pub fn cursor_key(name: &str) -> String {
    format!("cursor.{}", hex::encode(Sha256::digest(name.as_bytes())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_share_a_subject_whatever_the_wiki_case() {
        assert_eq!(
            event_subject("e", "MoinMaster", Some("r1")),
            event_subject("e", "moinmaster", Some("r1"))
        );
        assert_ne!(event_subject("e", "moin", Some("r1")), event_subject("e", "moin", Some("r2")));
        assert_eq!(event_subject("e", "Moin", None), "e.moin.n");
    }

    #[test]
    fn odd_wiki_names_stay_one_token() {
        let subject = event_subject("e", "a.b *>", None);
        assert_eq!(subject.split('.').count(), 3, "{subject}");
        assert!(!subject.contains(['*', '>', ' ']));
    }
}
