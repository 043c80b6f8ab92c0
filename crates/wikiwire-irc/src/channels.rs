//! The channels of the hub's directory (`wikiwire_hub::channels`), fixed at start, with their
//! members. Listeners cannot create channels.
//!
//! Membership is owned here: a channel holds its members, a client only the indices of its
//! channels in the directory (no reference back, so no cycle), and the connection's
//! [`crate::server::Release`] guard takes a client out of every channel when it ends, however it
//! ends.
//! Each channel knows who may speak in it (its publishers, always present and voiced) and who
//! listens (members, whom other listeners never see).

use std::collections::HashMap;
use std::sync::{Arc, RwLock, RwLockReadGuard};

use wikiwire_event::{Filter, Format};
use wikiwire_hub::ChannelSpec;

use crate::client::Client;

#[derive(Debug)]
pub struct Channel {
    /// Its place in the directory: what a client keeps of the channels it joined.
    pub index: usize,
    pub name: String,
    pub format: Format,
    pub filter: Filter,
    pub topic: String,
    /// Publishers whose events this channel may carry: they are its voiced members.
    pub speakers: Vec<String>,
    /// Prefix readable lines with the wiki name: the channel carries several wikis.
    pub show_wiki: bool,
    members: RwLock<HashMap<u64, Arc<Client>>>,
}

impl Channel {
    fn new(index: usize, spec: &ChannelSpec) -> Channel {
        Channel {
            index,
            name: spec.name.clone(),
            format: spec.format,
            filter: spec.filter.clone(),
            topic: spec.topic.clone(),
            speakers: spec.speakers.clone(),
            show_wiki: spec.show_wiki,
            members: RwLock::new(HashMap::new()),
        }
    }
    /// Whether a live event is said here: it passes the filter, and a `mediawiki` channel leaves
    /// out what MediaWiki's own IRC feed leaves out (category membership changes).
    pub fn carries(&self, event: &wikiwire_event::Event) -> bool {
        self.filter.matches(event)
            && (self.format != Format::Mediawiki || wikiwire_event::mediawiki::on_irc(event))
    }

    /// Adds a listener; false if it was already there.
    pub fn join(&self, client: &Arc<Client>) -> bool {
        self.write().insert(client.id, Arc::clone(client)).is_none()
    }

    pub fn part(&self, id: u64) -> bool {
        self.write().remove(&id).is_some()
    }

    pub fn is_member(&self, id: u64) -> bool {
        self.read().contains_key(&id)
    }

    /// Listeners, for fan-out: held only while pushing into queues, never across a socket write.
    pub fn members(&self) -> RwLockReadGuard<'_, HashMap<u64, Arc<Client>>> {
        self.read()
    }

    /// Everyone in the channel: its publishers and its listeners.
    pub fn population(&self) -> usize {
        self.speakers.len() + self.read().len()
    }

    pub fn may_speak(&self, publisher: &str) -> bool {
        self.speakers.iter().any(|speaker| speaker.eq_ignore_ascii_case(publisher))
    }

    fn read(&self) -> RwLockReadGuard<'_, HashMap<u64, Arc<Client>>> {
        // Poisoning only means a panic while inserting or removing one entry.
        self.members.read().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<u64, Arc<Client>>> {
        self.members.write().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[derive(Debug, Default)]
pub struct Channels {
    list: Vec<Arc<Channel>>,
}

impl Channels {
    /// The channels of the hub's directory, each with room for members.
    pub fn new(specs: &[ChannelSpec]) -> Channels {
        Channels {
            list: specs.iter().enumerate().map(|(index, spec)| Arc::new(Channel::new(index, spec))).collect(),
        }
    }

    /// The channel at `index` of the directory.
    pub fn get(&self, index: usize) -> Option<&Arc<Channel>> {
        self.list.get(index)
    }

    /// Channel names compare without ASCII case (CASEMAPPING=ascii).
    pub fn find(&self, name: &str) -> Option<&Arc<Channel>> {
        self.list.iter().find(|channel| channel.name.eq_ignore_ascii_case(name))
    }

    /// Channels in the directory (LUSERS).
    pub fn count(&self) -> usize {
        self.list.len()
    }

    pub fn all(&self) -> &[Arc<Channel>] {
        &self.list
    }
}
