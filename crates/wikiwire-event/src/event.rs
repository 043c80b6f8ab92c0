//! `Event`: one change on one wiki, as stored, numbered and delivered (SPEC §2.1).
//!
//! A `Draft` is an event that passed validation but has no id yet; only the store turns a draft
//! into an `Event`, so an `Event` anywhere else always carries the id the log gave it.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{Map, Value};

use crate::{Action, Timestamp};

/// A link to the change, e.g. the diff, with a human description.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Link {
    pub url: String,
    pub description: String,
}

/// One change on one wiki. Optional text fields are `None`, never `Some("")`: validation turns
/// empty strings into absence, which keeps every encoding a faithful round trip.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// Assigned by the store: strictly increasing, never reused. Zero only inside a `Draft`.
    pub id: u64,
    pub time: Timestamp,
    pub wiki: String,
    pub action: Action,
    pub page: Option<String>,
    pub user: Option<String>,
    pub comment: Option<String>,
    pub revision: Option<String>,
    pub old_revision: Option<String>,
    pub old_name: Option<String>,
    pub file: Option<String>,
    pub size: Option<u64>,
    pub minor: bool,
    pub bot: bool,
    pub urls: Vec<Link>,
    /// Idempotency key: a second event with the same `(wiki, key)` is not stored again.
    pub key: Option<String>,
    /// Every field a publisher sent that the model does not name, kept verbatim.
    pub extra: BTreeMap<String, String>,
    /// The object the wiki sent, whole, when an ingest adapter keeps it (MediaWiki's RCFeed
    /// datagram, at most [`crate::mediawiki::MAX_DATAGRAM`] bytes): stored beside the event, never
    /// part of its canonical JSON; outputs that speak the wiki's own format (`/v2/stream`) start
    /// from it.
    pub source: Option<Arc<Map<String, Value>>>,
}

impl Event {
    /// A minimal event, for builders and tests; fill the optional fields afterwards.
    pub fn new(wiki: &str, action: Action, time: Timestamp) -> Event {
        Event {
            id: 0,
            time,
            wiki: wiki.to_owned(),
            action,
            page: None,
            user: None,
            comment: None,
            revision: None,
            old_revision: None,
            old_name: None,
            file: None,
            size: None,
            minor: false,
            bot: false,
            urls: Vec::new(),
            key: None,
            extra: BTreeMap::new(),
            source: None,
        }
    }

    /// The page name, or "" for actions without a page (user_created, custom actions).
    pub fn page_or_empty(&self) -> &str {
        self.page.as_deref().unwrap_or("")
    }

    pub fn user_or_empty(&self) -> &str {
        self.user.as_deref().unwrap_or("")
    }
}

/// A validated event that the store has not numbered yet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Draft(Event);

impl Draft {
    /// Only validation makes drafts; see [`crate::fields::parse`].
    pub(crate) fn new(mut event: Event) -> Draft {
        event.id = 0;
        Draft(event)
    }

    pub fn event(&self) -> &Event {
        &self.0
    }

    /// A committed event to be stored again under a log that numbers it anew (moving a log from
    /// one store to another); it was validated when it was first published.
    pub fn from_committed(event: Event) -> Draft {
        Draft::new(event)
    }

    pub fn wiki(&self) -> &str {
        &self.0.wiki
    }

    pub fn key(&self) -> Option<&str> {
        self.0.key.as_deref()
    }

    /// Spells the wiki name as its publisher's configuration does; names compare without ASCII
    /// case, so only the case can change.
    pub fn respell_wiki(&mut self, canonical: &str) {
        if self.0.wiki.eq_ignore_ascii_case(canonical) {
            canonical.clone_into(&mut self.0.wiki);
        }
    }

    /// The store's half of the contract: the committed event carries the id it was stored under.
    pub fn commit(self, id: u64) -> Event {
        let mut event = self.0;
        event.id = id;
        event
    }
}
