//! `Server`: the state every connection shares — settings, the channel directory, and the
//! registry of nicks, publisher sessions and connection counts. The registry is one mutex held
//! only for map updates; nothing awaits while holding it.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio_util::task::TaskTracker;
use wikiwire_event::{Event, Format};
use wikiwire_hub::config::{RcFeedChannels, RcFeedConfig};
use wikiwire_hub::{Hub, Publisher};

use crate::Config;
use crate::channels::{Channel, Channels, PrefixChannel, PrefixRefusal};
use crate::client::Client;
use crate::turns::{Turn, Turns};

/// The history service's nick (SPEC §3): reserved like a publisher's.
pub const HISTSERV: &str = "HistServ";
/// Who speaks in `mediawiki` channels under `wikimedia_compat`: irc.wikimedia.org's bot, as
/// `rc-pmtpa!rc-pmtpa@<server name>` (ircstream's `botid`). Reserved like a publisher's nick.
pub const WIKIMEDIA_SPEAKER: &str = "rc-pmtpa";

pub struct Settings {
    pub server_name: String,
    pub network: String,
    pub version: String,
    pub created: String,
    pub created_unix: i64,
    pub motd: Vec<String>,
    pub limits: Config,
}

impl Settings {
    /// `nick!nick@publisher.<server>`: how a publisher appears, connected or not.
    pub fn publisher_mask(&self, publisher: &str) -> String {
        format!("{publisher}!{publisher}@publisher.{}", self.server_name)
    }

    pub fn listener_host(&self) -> String {
        format!("listener.{}", self.server_name)
    }

    pub fn histserv_mask(&self) -> String {
        format!("{HISTSERV}!{HISTSERV}@services.{}", self.server_name)
    }

    /// Whether `channel` is spoken by [`WIKIMEDIA_SPEAKER`] instead of its publishers.
    pub fn wikimedia_speaks(&self, channel: &Channel) -> bool {
        self.limits.wikimedia_compat && channel.spec.format == Format::Mediawiki
    }

    pub fn wikimedia_mask(&self) -> String {
        format!("{WIKIMEDIA_SPEAKER}!{WIKIMEDIA_SPEAKER}@{}", self.server_name)
    }

    /// The nicks shown as `channel`'s voiced members (NAMES, WHO).
    pub fn shown_speakers<'a>(&self, channel: &'a Channel) -> Vec<&'a str> {
        if self.wikimedia_speaks(channel) {
            vec![WIKIMEDIA_SPEAKER]
        } else {
            channel.spec.speakers.iter().map(String::as_str).collect()
        }
    }
}

/// Why a nick cannot be had.
#[derive(Debug, PartialEq, Eq)]
pub enum NickRefusal {
    InUse,
    Reserved,
}

#[derive(Default)]
struct Registry {
    /// Registered nicks, folded.
    nicks: HashMap<String, Arc<Client>>,
    /// The one connection speaking for each publisher, by folded name.
    sessions: HashMap<String, Arc<Client>>,
    per_ip: HashMap<IpAddr, usize>,
    connections: usize,
    /// Registered clients, and the most there have been at once (LUSERS). Not `nicks.len()`:
    /// listeners may share a nick (`wikimedia_compat`).
    users: usize,
    max_users: usize,
    /// Registered clients with user mode `+i`.
    invisible: usize,
}

/// What LUSERS tells (Modern IRC, RPL_LUSERCLIENT to RPL_GLOBALUSERS).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Counts {
    pub users: usize,
    pub invisible: usize,
    pub max_users: usize,
    pub connections: usize,
}

pub struct Server {
    pub hub: Arc<Hub>,
    pub settings: Settings,
    pub channels: Channels,
    /// HistServ's DCC offers.
    pub dcc: Arc<crate::dcc::Offers>,
    /// Row-by-row history queries: one at a time per address.
    pub turns: Arc<Turns>,
    /// Publishers whose `[[rcfeed]]` makes channels from prefixes.
    prefix_publishers: Vec<String>,
    registry: Mutex<Registry>,
    next_id: AtomicU64,
    /// Connection tasks; shutdown waits for their goodbyes.
    pub tracker: TaskTracker,
}

/// A connection's nick, publisher session and channel memberships, given back when dropped: at
/// the end of the connection, and also if a handler panics (the channels would otherwise keep
/// the client alive and its nick taken).
pub struct Release<'a> {
    pub server: &'a Server,
    pub client: &'a Arc<Client>,
}

impl Drop for Release<'_> {
    fn drop(&mut self) {
        self.client.close("Connection closed");
        self.server.release(self.client);
    }
}

/// A connection's place in the counts, given back when dropped.
pub struct Admission {
    server: Arc<Server>,
    ip: IpAddr,
}

impl Drop for Admission {
    fn drop(&mut self) {
        let mut registry = self.server.registry();
        registry.connections -= 1;
        if let Some(count) = registry.per_ip.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                registry.per_ip.remove(&self.ip);
            }
        }
        drop(registry);
        self.server.hub.metrics().irc_connections.dec();
    }
}

pub fn fold(nick: &str) -> String {
    nick.to_ascii_lowercase()
}

impl Server {
    /// `rcfeeds`: the hub's RCFeed listeners, whose prefixes may make channels.
    pub fn new(hub: Arc<Hub>, config: &Config, rcfeeds: &[RcFeedConfig]) -> Arc<Server> {
        let prefix_publishers: Vec<String> = rcfeeds
            .iter()
            .filter(|feed| feed.channels == RcFeedChannels::FromPrefix)
            .map(|feed| feed.publisher.clone())
            .collect();
        let made = if prefix_publishers.is_empty() { 0 } else { config.max_prefix_channels };
        let channels = Channels::new(hub.channels(), made);
        let now = wikiwire_event::Timestamp::now();
        let motd = match &config.motd {
            Some(text) => text.lines().map(str::to_owned).collect(),
            None => Vec::new(),
        };
        Arc::new(Server {
            settings: Settings {
                server_name: config.server_name.clone(),
                network: config.network.clone(),
                version: format!("wikiwire-{}", env!("CARGO_PKG_VERSION")),
                created: now.to_string(),
                created_unix: now.millis() / 1000,
                motd,
                limits: config.clone(),
            },
            channels,
            dcc: crate::dcc::Offers::new(config, Arc::clone(hub.metrics())),
            turns: Arc::default(),
            prefix_publishers,
            hub,
            registry: Mutex::new(Registry::default()),
            next_id: AtomicU64::new(1),
            tracker: TaskTracker::new(),
        })
    }

    fn registry(&self) -> MutexGuard<'_, Registry> {
        self.registry.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Counts a new connection, or says which limit refuses it.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Admission, &'static str> {
        let limits = &self.settings.limits;
        let mut registry = self.registry();
        if registry.connections >= limits.max_clients {
            return Err("Server is full");
        }
        let from_ip = registry.per_ip.get(&ip).copied().unwrap_or(0);
        if limits.max_per_ip > 0 && from_ip >= limits.max_per_ip {
            return Err("Too many connections from your address");
        }
        registry.connections += 1;
        *registry.per_ip.entry(ip).or_default() += 1;
        drop(registry);
        self.hub.metrics().irc_connections.inc();
        Ok(Admission { server: Arc::clone(self), ip })
    }

    /// The address's turn for a history query whose filter is matched row by row (see
    /// [`crate::turns`]); `None` for an indexed one, which never waits.
    pub async fn scan_turn(&self, ip: IpAddr, filter: &wikiwire_event::Filter) -> Option<Turn> {
        if !filter.needs_row_scan() {
            return None;
        }
        let (turn, waited) = self.turns.take(ip).await;
        if waited {
            self.hub.metrics().irc_history_waits.inc();
        }
        Some(turn)
    }

    pub fn next_client_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// A registered client by nick.
    pub fn client_by_nick(&self, nick: &str) -> Option<Arc<Client>> {
        self.registry().nicks.get(&fold(nick)).cloned()
    }

    /// The connection speaking for a publisher, if one is logged in.
    pub fn session(&self, publisher: &str) -> Option<Arc<Client>> {
        self.registry().sessions.get(&fold(publisher)).cloned()
    }

    /// Publishers' names and HistServ belong to them alone; so does `rc-pmtpa` under
    /// `wikimedia_compat`.
    pub fn reserved(&self, nick: &str) -> bool {
        nick.eq_ignore_ascii_case(HISTSERV)
            || (self.settings.limits.wikimedia_compat && nick.eq_ignore_ascii_case(WIKIMEDIA_SPEAKER))
            || self.hub.publishers().by_name(nick).is_some()
    }

    /// Listeners may share a nick (SPEC §8, `wikimedia_compat`): as on irc.wikimedia.org, where
    /// bots run many connections under one name. They cannot see each other, so nothing a nick
    /// addresses is ambiguous; publishers' nicks stay theirs alone ([`Server::reserved`]).
    fn shared_nicks(&self) -> bool {
        self.settings.limits.wikimedia_compat
    }

    /// Whether `nick` is free for this client right now (before it registers or changes nick).
    pub fn check_nick(&self, client: &Client, nick: &str) -> Result<(), NickRefusal> {
        if self.shared_nicks() {
            return Ok(());
        }
        match self.registry().nicks.get(&fold(nick)) {
            Some(holder) if holder.id != client.id => Err(NickRefusal::InUse),
            _ => Ok(()),
        }
    }

    /// Completes registration under `nick`. A publisher's earlier session is displaced and
    /// returned, to be closed by the caller.
    pub fn register(
        &self,
        client: &Arc<Client>,
        nick: &str,
        account: Option<&Publisher>,
    ) -> Result<Option<Arc<Client>>, NickRefusal> {
        let folded = fold(nick);
        let mut registry = self.registry();
        let displaced = match account {
            Some(publisher) => {
                let displaced = registry.sessions.insert(fold(&publisher.name), Arc::clone(client));
                if let Some(old) = &displaced {
                    registry.nicks.remove(&fold(&old.nick()));
                }
                displaced
            }
            None => {
                if self.reserved(nick) {
                    return Err(NickRefusal::Reserved);
                }
                if self.shared_nicks() {
                    // Shared nicks are held by no one: only publishers are found by nick.
                    registry.users += 1;
                    registry.max_users = registry.max_users.max(registry.users);
                    return Ok(None);
                }
                if registry.nicks.get(&folded).is_some_and(|holder| holder.id != client.id) {
                    return Err(NickRefusal::InUse);
                }
                None
            }
        };
        registry.nicks.insert(folded, Arc::clone(client));
        registry.users += 1;
        registry.max_users = registry.max_users.max(registry.users);
        Ok(displaced)
    }

    /// A registered listener's nick change.
    pub fn rename(&self, client: &Arc<Client>, old: &str, new: &str) -> Result<(), NickRefusal> {
        if self.reserved(new) {
            return Err(NickRefusal::Reserved);
        }
        if self.shared_nicks() {
            return Ok(());
        }
        let mut registry = self.registry();
        if registry.nicks.get(&fold(new)).is_some_and(|holder| holder.id != client.id) {
            return Err(NickRefusal::InUse);
        }
        if registry.nicks.get(&fold(old)).is_some_and(|holder| holder.id == client.id) {
            registry.nicks.remove(&fold(old));
        }
        registry.nicks.insert(fold(new), Arc::clone(client));
        Ok(())
    }

    /// Forgets a client that is gone: its nick and session, if still its own, its channels and
    /// its place in the counts. Called once per connection (by [`Release`]).
    pub fn release(&self, client: &Arc<Client>) {
        let (nick, account, channels, registered, invisible) = {
            let mut state = client.state();
            let channels = std::mem::take(&mut state.channels);
            (state.nick.clone(), state.account.clone(), channels, state.registered, state.invisible)
        };
        for channel in channels.into_iter().filter_map(|index| self.channels.get(index)) {
            channel.part(client.id);
        }
        let mut registry = self.registry();
        if registered {
            registry.users -= 1;
            if invisible {
                registry.invisible -= 1;
            }
        }
        if registry.nicks.get(&fold(&nick)).is_some_and(|holder| holder.id == client.id) {
            registry.nicks.remove(&fold(&nick));
        }
        if let Some(publisher) = account {
            let key = fold(&publisher.name);
            if registry.sessions.get(&key).is_some_and(|holder| holder.id == client.id) {
                registry.sessions.remove(&key);
            }
        }
    }

    /// Whether some `[[rcfeed]]` makes channels from prefixes.
    pub fn makes_prefix_channels(&self) -> bool {
        !self.prefix_publishers.is_empty()
    }

    /// The channel a change's RCFeed prefix names (`[[rcfeed]] channels = "from-prefix"`), made
    /// on its first change; only for the wikis of a publisher whose feed asked for it, so no
    /// one else can make channels by sending an `mw_channel` field.
    pub fn prefix_channel(&self, event: &Event) -> Option<&Arc<Channel>> {
        let prefix = event.extra.get(wikiwire_event::mediawiki::CHANNEL_EXTRA)?;
        let publisher = &self.hub.publishers().wiki(&event.wiki)?.publisher;
        if !self.prefix_publishers.iter().any(|name| name.eq_ignore_ascii_case(publisher)) {
            return None;
        }
        // The topic of the wiki's own channel, which carries the same events.
        let topic = || {
            self.hub
                .channel(&format!("#{}", event.wiki))
                .map_or_else(|| format!("Recent changes of {}", event.wiki), |spec| spec.topic.clone())
        };
        let wanted = PrefixChannel { name: prefix, wiki: &event.wiki, publisher, topic: &topic };
        let metrics = self.hub.metrics();
        match self.channels.from_prefix(wanted) {
            Ok(channel) => {
                metrics.irc_prefix_channels.set(self.channels.made() as i64);
                channel
            }
            Err(refusal) => {
                metrics.irc_prefix_refused.inc();
                static REFUSED: wikiwire_hub::LogGate =
                    wikiwire_hub::LogGate::new(std::time::Duration::from_secs(60));
                if let Some(also) = REFUSED.admit() {
                    let why = match refusal {
                        PrefixRefusal::Name => "not a channel name",
                        PrefixRefusal::Full => "irc.max_prefix_channels reached",
                        PrefixRefusal::OtherWiki => "another wiki's channel",
                    };
                    tracing::warn!(channel = %prefix, wiki = %event.wiki, why, also, "IRC: no channel made from an RCFeed prefix");
                }
                None
            }
        }
    }

    /// A registered client's `+i` was set (`true`) or cleared.
    pub fn invisible_changed(&self, invisible: bool) {
        let mut registry = self.registry();
        if invisible {
            registry.invisible += 1;
        } else {
            registry.invisible -= 1;
        }
    }

    pub fn counts(&self) -> Counts {
        let registry = self.registry();
        Counts {
            users: registry.users,
            invisible: registry.invisible,
            max_users: registry.max_users,
            connections: registry.connections,
        }
    }
}
