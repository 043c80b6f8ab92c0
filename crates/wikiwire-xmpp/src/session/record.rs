//! Stream management (XEP-0198) bookkeeping, without I/O: the numbered queue of stanzas the
//! server has not acknowledged yet, and the record a holder writes before its outbox items leave.
//!
//! **The record** is what the next holder of the bot (another node after a takeover, this node
//! after a crash) needs to finish the dead holder's stream exactly once: the stream's resumption
//! id, the count of the server's stanzas the holder acknowledged (the `h` to resume with), and
//! which stanza number carried which outbox item. The server's answer to `<resume/>`
//! (`<resumed h/>`, or `<failed h/>` for a stream it no longer keeps) counts the dead holder's
//! stanzas it took: the items among them are done, the others are sent again.
//!
//! It is written, fenced by its revision, before any stanza carrying an item leaves, so every
//! item on the wire is in it under its true number. Items acknowledged since are pruned at the
//! next write; a stale entry only names an item that is already done (outbox ids are never given
//! to another item).

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

/// Where the record lives in the bot's state (its small fenced table).
pub const KEY: &str = "stream";

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// The server's resumption id; none when the stream cannot be resumed.
    pub previd: Option<String>,
    /// The full JID the stream is bound to.
    pub jid: String,
    /// Stanzas received from the server and acknowledged to it: the `h` to resume with.
    pub inbound: u32,
    /// Outbox items on the stream not known to be acknowledged: (stanza number, item id).
    pub items: Vec<(u32, i64)>,
}

impl Record {
    pub fn to_bytes(&self) -> bytes::Bytes {
        bytes::Bytes::from(serde_json::to_vec(self).expect("a record serializes"))
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Record, serde_json::Error> {
        serde_json::from_slice(bytes)
    }

    /// The items of stanzas the server says it handled (`h` of them in all), and the rest.
    pub fn split(&self, h: u32) -> (Vec<i64>, Vec<i64>) {
        let (taken, left): (Vec<_>, Vec<_>) = self.items.iter().partition(|(number, _)| covers(h, *number));
        (taken.into_iter().map(|(_, id)| id).collect(), left.into_iter().map(|(_, id)| id).collect())
    }
}

/// Whether a count of `h` handled stanzas includes stanza `number` (counted from 1; counts wrap
/// at 2^32, XEP-0198 §4).
pub fn covers(h: u32, number: u32) -> bool {
    h.wrapping_sub(number) < 1 << 31
}

/// Stanzas sent and not yet acknowledged, numbered from `acked + 1`.
#[derive(Debug)]
pub struct Unacked<T> {
    acked: u32,
    queue: VecDeque<T>,
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("the server acknowledged {h} stanzas, but only {sent} were sent")]
pub struct TooHigh {
    pub h: u32,
    pub sent: u32,
}

impl<T> Unacked<T> {
    /// A stream whose server has handled `acked` of our stanzas.
    pub fn new(acked: u32) -> Unacked<T> {
        Unacked { acked, queue: VecDeque::new() }
    }

    /// Stanzas sent on the stream so far.
    pub fn sent(&self) -> u32 {
        self.acked.wrapping_add(self.queue.len() as u32)
    }

    /// A stanza leaves: its number.
    pub fn push(&mut self, value: T) -> u32 {
        self.queue.push_back(value);
        self.sent()
    }

    /// The server has handled `h` stanzas: those newly covered, oldest first. An `h` below the
    /// last one is old news (nothing); one above what was sent is the server's mistake.
    pub fn ack(&mut self, h: u32) -> Result<Vec<T>, TooHigh> {
        let newly = h.wrapping_sub(self.acked);
        if newly >= 1 << 31 {
            return Ok(Vec::new());
        }
        if newly as usize > self.queue.len() {
            return Err(TooHigh { h, sent: self.sent() });
        }
        self.acked = h;
        Ok(self.queue.drain(..newly as usize).collect())
    }

    /// Each waiting stanza with its number, oldest first.
    pub fn iter(&self) -> impl Iterator<Item = (u32, &T)> {
        self.queue.iter().enumerate().map(|(index, value)| (self.acked.wrapping_add(index as u32 + 1), value))
    }

    /// Everything still waiting, oldest first (the stream is gone).
    pub fn drain(&mut self) -> Vec<T> {
        self.queue.drain(..).collect()
    }

    pub fn len(&self) -> usize {
        self.queue.len()
    }

    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_server_count_splits_the_record() {
        let record = Record {
            previd: Some("x".into()),
            jid: "bot@x/r".into(),
            inbound: 3,
            items: vec![(4, 10), (5, 11), (7, 12)],
        };
        assert_eq!(record.split(3), (vec![], vec![10, 11, 12]));
        assert_eq!(record.split(5), (vec![10, 11], vec![12]));
        assert_eq!(record.split(9), (vec![10, 11, 12], vec![]));
        assert_eq!(Record::from_bytes(&record.to_bytes()).unwrap(), record);
    }

    #[test]
    fn counts_wrap() {
        assert!(covers(2, 1));
        assert!(covers(2, 2));
        assert!(!covers(2, 3));
        assert!(covers(1, u32::MAX), "stanza 2^32 - 1 is before the count wrapped to 1");
        assert!(!covers(u32::MAX, 1));
    }

    #[test]
    fn acknowledgements_release_in_order_and_are_checked() {
        let mut unacked = Unacked::new(10);
        assert_eq!(unacked.push('a'), 11);
        assert_eq!(unacked.push('b'), 12);
        assert_eq!(unacked.push('c'), 13);
        assert_eq!(
            unacked.iter().map(|(n, v)| (n, *v)).collect::<Vec<_>>(),
            vec![(11, 'a'), (12, 'b'), (13, 'c')]
        );
        assert_eq!(unacked.ack(12), Ok(vec!['a', 'b']));
        assert_eq!(unacked.ack(11), Ok(vec![]), "an older count is old news");
        assert_eq!(unacked.ack(14), Err(TooHigh { h: 14, sent: 13 }));
        assert_eq!(unacked.ack(13), Ok(vec!['c']));
        assert!(unacked.is_empty());
    }

    proptest! {
        /// Whatever the acknowledgements, every stanza is released once, in order, and the queue
        /// numbers what is left from the last count.
        #[test]
        fn every_stanza_is_released_once_in_order(start in any::<u32>(), steps in proptest::collection::vec((0u8..5, 0u32..8), 0..60)) {
            let mut unacked = Unacked::new(start);
            let mut pushed = 0u32;
            let mut released = Vec::new();
            for (pushes, back) in steps {
                for _ in 0..pushes {
                    let number = unacked.push(pushed);
                    prop_assert_eq!(number, start.wrapping_add(pushed + 1));
                    pushed += 1;
                }
                // Any count from somewhat before the last one to what was sent.
                let h = unacked.sent().wrapping_sub(back);
                if let Ok(values) = unacked.ack(h) {
                    released.extend(values);
                }
                for (number, value) in unacked.iter() {
                    prop_assert_eq!(number, start.wrapping_add(*value + 1));
                }
            }
            released.extend(unacked.ack(unacked.sent()).unwrap());
            prop_assert_eq!(released, (0..pushed).collect::<Vec<_>>());
        }
    }
}
