//! The channels of the hub's directory (`wikiwire_hub::channels`), fixed at start, with their
//! members; and, for an `[[rcfeed]]` with `channels = "from-prefix"`, `mediawiki` channels made
//! by the first change whose datagram names them (irc.wikimedia.org's `#en.wikipedia`), at most
//! `irc.max_prefix_channels`, each carrying one wiki of the publisher whose feed named it.
//! Listeners cannot create channels.
//!
//! Membership is owned here: a channel holds its members, a client only the indices of its
//! channels in the directory (no reference back, so no cycle), and the connection's
//! [`crate::server::Release`] guard takes a client out of every channel when it ends, however it
//! ends.
//! Each channel knows who may speak in it (its publishers, always present and voiced) and who
//! listens (members, whom other listeners never see).

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock, RwLockReadGuard};

use wikiwire_event::{Filter, Format};
use wikiwire_hub::ChannelSpec;
use wikiwire_irc_wire::names::check_channel_name;

use crate::client::Client;

#[derive(Debug)]
pub struct Channel {
    /// Its place in the directory: what a client keeps of the channels it joined.
    pub index: usize,
    /// Its name, format, filter, topic and speakers (its publishers, voiced members here).
    pub spec: ChannelSpec,
    /// Made from an RCFeed prefix (not declared): the wiki it carries.
    pub prefix_wiki: Option<String>,
    members: RwLock<HashMap<u64, Arc<Client>>>,
}

impl Channel {
    fn new(index: usize, spec: &ChannelSpec) -> Channel {
        Channel { index, spec: spec.clone(), prefix_wiki: None, members: RwLock::new(HashMap::new()) }
    }

    /// Whether a live event is said here: it passes the filter, and a `mediawiki` channel leaves
    /// out what MediaWiki's own IRC feed leaves out (category membership changes).
    pub fn carries(&self, event: &wikiwire_event::Event) -> bool {
        self.spec.filter.matches(event)
            && (self.spec.format != Format::Mediawiki || wikiwire_event::mediawiki::on_irc(event))
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
        self.spec.speakers.len() + self.read().len()
    }

    pub fn may_speak(&self, publisher: &str) -> bool {
        self.spec.speakers.iter().any(|speaker| speaker.eq_ignore_ascii_case(publisher))
    }

    fn read(&self) -> RwLockReadGuard<'_, HashMap<u64, Arc<Client>>> {
        // Poisoning only means a panic while inserting or removing one entry.
        self.members.read().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<u64, Arc<Client>>> {
        self.members.write().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Why a change's prefix made no channel.
#[derive(Debug, PartialEq, Eq)]
pub enum PrefixRefusal {
    /// Not a channel name this server allows.
    Name,
    /// `irc.max_prefix_channels` are made already.
    Full,
    /// Another wiki made it first: one prefix channel carries one wiki.
    OtherWiki,
}

/// A channel to make from a prefix: its name, the wiki it carries, who speaks there, and its
/// topic (asked only when the channel is made).
pub struct PrefixChannel<'a> {
    pub name: &'a str,
    pub wiki: &'a str,
    pub publisher: &'a str,
    pub topic: &'a dyn Fn() -> String,
}

#[derive(Debug, Default)]
pub struct Channels {
    list: Vec<Arc<Channel>>,
    /// Channels made from prefixes, in the order made; their indices follow `list`'s. Slots are
    /// set once and never emptied, so `get` hands out references without a lock.
    made: Box<[OnceLock<Arc<Channel>>]>,
    /// How many `made` slots are set (stored after the slot is).
    made_count: AtomicUsize,
    /// Made channels by folded name; also the lock that makes one at a time.
    made_names: Mutex<HashMap<String, usize>>,
}

impl Channels {
    /// The channels of the hub's directory, each with room for members, and room for
    /// `max_made` channels made from prefixes.
    pub fn new(specs: &[ChannelSpec], max_made: usize) -> Channels {
        Channels {
            list: specs.iter().enumerate().map(|(index, spec)| Arc::new(Channel::new(index, spec))).collect(),
            made: (0..max_made).map(|_| OnceLock::new()).collect(),
            made_count: AtomicUsize::new(0),
            made_names: Mutex::default(),
        }
    }

    /// The channel at `index` of the directory.
    pub fn get(&self, index: usize) -> Option<&Arc<Channel>> {
        match index.checked_sub(self.list.len()) {
            None => self.list.get(index),
            Some(made) => self.made.get(made)?.get(),
        }
    }

    /// Channel names compare without ASCII case (CASEMAPPING=ascii).
    pub fn find(&self, name: &str) -> Option<&Arc<Channel>> {
        if let Some(channel) = self.list.iter().find(|channel| channel.spec.name.eq_ignore_ascii_case(name)) {
            return Some(channel);
        }
        if self.made.is_empty() {
            return None;
        }
        let index = *self.names().get(&name.to_ascii_lowercase())?;
        self.made.get(index)?.get()
    }

    /// Channels in the directory (LUSERS).
    pub fn count(&self) -> usize {
        self.list.len() + self.made_count.load(Ordering::Acquire)
    }

    /// Channels made from prefixes.
    pub fn made(&self) -> usize {
        self.made_count.load(Ordering::Acquire)
    }

    /// Every channel: the declared ones, then those made from prefixes.
    pub fn all(&self) -> impl Iterator<Item = &Arc<Channel>> {
        let made = self.made_count.load(Ordering::Acquire);
        self.list.iter().chain(self.made[..made].iter().filter_map(OnceLock::get))
    }

    /// The channel a change's prefix names, made on first use. `Ok(None)` when a declared
    /// channel has that name: it carries what its filter says, and nothing is made.
    pub fn from_prefix(&self, wanted: PrefixChannel<'_>) -> Result<Option<&Arc<Channel>>, PrefixRefusal> {
        check_channel_name(wanted.name).map_err(|_| PrefixRefusal::Name)?;
        if self.list.iter().any(|channel| channel.spec.name.eq_ignore_ascii_case(wanted.name)) {
            return Ok(None);
        }
        let mut names = self.names();
        let folded = wanted.name.to_ascii_lowercase();
        if let Some(&index) = names.get(&folded) {
            let channel = self.made.get(index).and_then(OnceLock::get).ok_or(PrefixRefusal::Full)?;
            return if channel.prefix_wiki.as_deref() == Some(wanted.wiki) {
                Ok(Some(channel))
            } else {
                Err(PrefixRefusal::OtherWiki)
            };
        }
        let slot = names.len();
        let Some(cell) = self.made.get(slot) else { return Err(PrefixRefusal::Full) };
        let filter = Filter::parse(&format!("wiki={}", wanted.wiki)).map_err(|_| PrefixRefusal::Name)?;
        let channel = Arc::new(Channel {
            index: self.list.len() + slot,
            spec: ChannelSpec {
                name: wanted.name.to_owned(),
                format: Format::Mediawiki,
                filter,
                topic: (wanted.topic)(),
                speakers: vec![wanted.publisher.to_owned()],
                show_wiki: false,
            },
            prefix_wiki: Some(wanted.wiki.to_owned()),
            members: RwLock::new(HashMap::new()),
        });
        // Only this function sets slots, one at a time under `names`: the slot is empty.
        let _ = cell.set(channel);
        names.insert(folded, slot);
        self.made_count.store(slot + 1, Ordering::Release);
        Ok(cell.get())
    }

    fn names(&self) -> std::sync::MutexGuard<'_, HashMap<String, usize>> {
        // Poisoning only means a panic between two plain map operations.
        self.made_names.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wanted<'a>(name: &'a str, wiki: &'a str) -> PrefixChannel<'a> {
        PrefixChannel { name, wiki, publisher: "wmf", topic: &|| "Recent changes".to_owned() }
    }

    #[test]
    fn prefix_channels_are_made_once_bounded_and_one_wiki_each() {
        let declared = ChannelSpec {
            name: "#declared".into(),
            format: Format::Text,
            filter: Filter::all(),
            topic: String::new(),
            speakers: vec![],
            show_wiki: true,
        };
        let channels = Channels::new(&[declared], 2);
        assert!(matches!(channels.from_prefix(wanted("#DECLARED", "enwiki")), Ok(None)));
        assert_eq!(channels.from_prefix(wanted("no hash", "enwiki")).err(), Some(PrefixRefusal::Name));
        let made = channels.from_prefix(wanted("#en.wikipedia", "enwiki")).unwrap().unwrap();
        assert_eq!(
            (made.index, made.spec.format, made.spec.speakers.as_slice()),
            (1, Format::Mediawiki, &["wmf".to_owned()][..])
        );
        let again = channels.from_prefix(wanted("#EN.wikipedia", "enwiki")).unwrap().unwrap();
        assert!(Arc::ptr_eq(made, again));
        assert_eq!(
            channels.from_prefix(wanted("#en.wikipedia", "dewiki")).err(),
            Some(PrefixRefusal::OtherWiki)
        );
        channels.from_prefix(wanted("#de.wikipedia", "dewiki")).unwrap().unwrap();
        assert_eq!(channels.from_prefix(wanted("#fr.wikipedia", "frwiki")).err(), Some(PrefixRefusal::Full));
        assert_eq!(channels.count(), 3);
        let names: Vec<&str> = channels.all().map(|channel| channel.spec.name.as_str()).collect();
        assert_eq!(names, ["#declared", "#en.wikipedia", "#de.wikipedia"]);
        assert_eq!(channels.find("#De.Wikipedia").map(|channel| channel.index), Some(2));
        assert_eq!(channels.get(2).map(|channel| channel.spec.name.as_str()), Some("#de.wikipedia"));
        assert!(channels.get(3).is_none() && channels.find("#fr.wikipedia").is_none());
    }
}
