//! The channel directory, fixed at start: `#<wiki>` (readable lines) and `#<wiki>.events`
//! (packed) for every wiki, plus the configured channels. Listeners cannot create channels.
//! Each channel knows who may speak in it (its publishers, always present and voiced) and who
//! listens (members, whom other listeners never see).

use std::collections::HashMap;
use std::sync::{Arc, RwLock, RwLockReadGuard};

use wikiwire_event::{Filter, Format};
use wikiwire_hub::Publishers;
use wikiwire_hub::config::ChannelConfig;

use crate::client::Client;

#[derive(Debug)]
pub struct Channel {
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
    fn new(name: String, format: Format, filter: Filter, topic: String, publishers: &Publishers) -> Channel {
        let speakers = publishers
            .all()
            .iter()
            .filter(|publisher| publisher.wikis.iter().any(|wiki| filter.allows_wiki(wiki)))
            .map(|publisher| publisher.name.clone())
            .collect();
        let show_wiki = filter.single_wiki().is_none();
        Channel { name, format, filter, topic, speakers, show_wiki, members: RwLock::new(HashMap::new()) }
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
    /// Builds the directory; `config check` has already validated names and filters.
    pub fn build(
        publishers: &Publishers,
        configured: &[ChannelConfig],
        wiki_format: Format,
        public_url: &str,
    ) -> Result<Channels, String> {
        let mut list = Vec::new();
        for wiki in publishers.wikis() {
            let name = &wiki.name;
            let filter = Filter::parse(&format!("wiki={name}")).map_err(|error| error.to_string())?;
            let description = format!("{public_url}/api/v1/wikis/{name}");
            list.push(Arc::new(Channel::new(
                format!("#{name}"),
                wiki_format,
                filter.clone(),
                format!("Recent changes of {name} | description: {description}"),
                publishers,
            )));
            list.push(Arc::new(Channel::new(
                format!("#{name}.events"),
                Format::Packed,
                filter,
                format!("Events of {name}, packed (form-urlencoded, id first) | description: {description}"),
                publishers,
            )));
        }
        for channel in configured {
            let filter = Filter::parse(&channel.filter)
                .map_err(|error| format!("{}: filter: {error}", channel.name))?;
            let topic = channel.topic.clone().unwrap_or_else(|| {
                let what =
                    if filter.is_all() { "all events".to_owned() } else { format!("events where {filter}") };
                format!("{what} ({}) | descriptions: {public_url}/api/v1/wikis", channel.format.name())
            });
            list.push(Arc::new(Channel::new(
                channel.name.clone(),
                channel.format,
                filter,
                topic,
                publishers,
            )));
        }
        Ok(Channels { list })
    }

    /// Channel names compare without ASCII case (CASEMAPPING=ascii).
    pub fn find(&self, name: &str) -> Option<&Arc<Channel>> {
        self.list.iter().find(|channel| channel.name.eq_ignore_ascii_case(name))
    }

    pub fn all(&self) -> &[Arc<Channel>] {
        &self.list
    }
}
