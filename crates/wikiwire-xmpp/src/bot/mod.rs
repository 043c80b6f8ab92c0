//! The bot itself: what it does with each stanza that arrives, and how the outbox reaches the
//! XMPP server.
//!
//! * **Incoming** (`handle`): presence tells which resources of a contact are online; each new
//!   resource is asked for its features (disco#info, answered from the entity-caps cache when
//!   its hash checks out), which decide how notifications are rendered for that contact.
//!   Subscription requests follow the configured policy. IQs the bot understands (disco#info,
//!   ping, roster pushes) are answered; others get `service-unavailable`. Messages are commands
//!   or search-form submissions, run by a few workers so a slow wiki holds up no stanza.
//! * **Outgoing** (`dispatch`): items leave the outbox in order. With stream management an item is
//!   done when the server acknowledges its stanza; when the stream is lost without resumption,
//!   unacknowledged items are sent again on the next stream. Without stream management a ping
//!   to the server after a batch stands in for the acknowledgement. Roster changes are IQs and
//!   are done when the server answers them.

use base64::Engine as _;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use tokio::sync::{Notify, mpsc, watch};
use tokio_util::sync::CancellationToken;
use tokio_xmpp::Stanza;
use tokio_xmpp::jid::{BareJid, Jid};
use tokio_xmpp::minidom::Element;
use tokio_xmpp::parsers::caps::{self, Caps};
use tokio_xmpp::parsers::disco::{DiscoInfoQuery, DiscoInfoResult, Identity};
use tokio_xmpp::parsers::iq::Iq;
use tokio_xmpp::parsers::message::{Lang, Message, MessageType};
use tokio_xmpp::parsers::muc::Muc;
use tokio_xmpp::parsers::muc::muc::History;
use tokio_xmpp::parsers::muc::user::{MucUser, Status as MucStatus};
use tokio_xmpp::parsers::ns;
use tokio_xmpp::parsers::presence::{Presence, Type as PresenceType};
use tokio_xmpp::parsers::stanza_error::{DefinedCondition, ErrorType, StanzaError};
use wikiwire_event::Filter;
use wikiwire_hub::Hub;
use wikiwire_store::Lease;

use crate::config::{RoomConfig, SubscriptionPolicy, XmppConfig};
use crate::i18n;
use crate::render::{self, Features};
use crate::session::{Incoming, Xmpp};
use crate::state::State;
use crate::wiki::Wiki;

pub mod outbox;
mod replies;

/// Commands waiting for a worker; past it, a user is told the bot is busy.
const COMMAND_QUEUE: usize = 256;
pub const COMMAND_WORKERS: usize = 4;

/// The stream the bot is on: a new generation after every reconnection that lost state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Session {
    pub generation: u64,
    pub stream_management: bool,
}

/// What the bot knows of its contacts' clients.
#[derive(Default)]
struct Contacts {
    /// Online resources per bare JID, with their features once known.
    online: HashMap<BareJid, HashMap<String, Option<Features>>>,
    /// What a contact's clients could do when last seen, for messages while they are away.
    last: HashMap<BareJid, Features>,
    /// Entity caps (XEP-0115) hash → features, filled only from answers whose hash checked out.
    caps: HashMap<Vec<u8>, Features>,
    /// The language a user last wrote in.
    languages: HashMap<BareJid, String>,
}

impl Contacts {
    /// Features every online client of the contact has (a message to a bare JID may reach any);
    /// when none is online, what was last known.
    fn features(&self, jid: &BareJid) -> Features {
        let known: Vec<Features> = self
            .online
            .get(jid)
            .into_iter()
            .flat_map(|resources| resources.values().flatten().copied())
            .collect();
        if known.is_empty() {
            return self.last.get(jid).copied().unwrap_or_default();
        }
        Features { forms: known.iter().all(|f| f.forms), oob: known.iter().all(|f| f.oob) }
    }

    fn known_resources(&self) -> i64 {
        self.online.values().flat_map(|resources| resources.values()).filter(|f| f.is_some()).count() as i64
    }
}

/// XEP-0045 §10.1.2: the owner takes the room's default configuration.
const INSTANT_ROOM: &str =
    "<query xmlns='http://jabber.org/protocol/muc#owner'><x xmlns='jabber:x:data' type='submit'/></query>";

/// A command as it arrived: who sent it, and the message.
pub type CommandQueue = mpsc::Receiver<(Jid, Message)>;

/// A subscription in memory: its JID, its (wiki, pattern), and the filter compiled from them.
pub(crate) type Compiled = (String, (String, String), Filter);

pub struct Bot {
    pub(crate) hub: Arc<Hub>,
    /// This node runs the bot while it holds this lease (always, on one node).
    pub(crate) lease: Arc<Lease>,
    /// Ends everything of this run of the bot: the hub's shutdown, or the lease lost.
    pub(crate) stop: CancellationToken,
    /// Set when the run is about to stop cleanly: nothing more leaves the outbox.
    handing_over: CancellationToken,
    config: XmppConfig,
    pub(crate) state: State,
    xmpp: Xmpp,
    wiki: Option<Arc<Wiki>>,
    me: BareJid,
    rooms: HashSet<BareJid>,
    /// Rooms the bot is in on the current stream; lines for the others wait in the outbox.
    joined: Mutex<HashSet<BareJid>>,
    contacts: Mutex<Contacts>,
    pub(crate) wake: Arc<Notify>,
    session: watch::Sender<Option<Session>>,
    /// Outbox items handed to the session and not yet removed from the outbox.
    flight: Mutex<outbox::Flight>,
    /// Delivered items, to `run_removals`.
    removals: mpsc::Sender<i64>,
    subscriptions: Mutex<Vec<Compiled>>,
    commands: mpsc::Sender<(Jid, Message)>,
}

impl Bot {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        hub: Arc<Hub>,
        lease: Arc<Lease>,
        stop: CancellationToken,
        config: XmppConfig,
        state: State,
        xmpp: Xmpp,
        wiki: Option<Arc<Wiki>>,
        wake: Arc<Notify>,
    ) -> Result<(Arc<Bot>, CommandQueue, outbox::Removals), String> {
        // The account; a resource in `jid` is the session's, not part of who the bot is.
        let me = Jid::new(&config.jid).map_err(|error| format!("xmpp.jid: {error}"))?.to_bare();
        let mut rooms = HashSet::new();
        for room in &config.rooms {
            rooms.insert(BareJid::new(&room.jid).map_err(|error| format!("xmpp.rooms: {error}"))?);
        }
        let (commands, queue) = mpsc::channel(COMMAND_QUEUE);
        let (removals, removed) = outbox::removals();
        let bot = Bot {
            hub,
            lease,
            stop,
            handing_over: CancellationToken::new(),
            config,
            state,
            xmpp,
            wiki,
            me,
            rooms,
            joined: Mutex::new(HashSet::new()),
            contacts: Mutex::new(Contacts::default()),
            wake,
            session: watch::channel(None).0,
            flight: Mutex::new(outbox::Flight::default()),
            removals,
            subscriptions: Mutex::new(Vec::new()),
            commands,
        };
        Ok((Arc::new(bot), queue, removed))
    }

    fn metrics(&self) -> &wikiwire_hub::Metrics {
        self.hub.metrics()
    }

    /// Runs until the session ends: every report of the XMPP session.
    pub async fn run_incoming(self: Arc<Self>, mut incoming: mpsc::Receiver<Incoming>) {
        let mut generation = 0;
        // The session while the stream is broken: given back if the stream resumes.
        let mut suspended: Option<Session> = None;
        while let Some(report) = incoming.recv().await {
            match report {
                Incoming::Online { jid, stream_management } => {
                    generation += 1;
                    self.metrics().xmpp_connections.inc();
                    self.metrics().xmpp_connected.set(1);
                    {
                        let mut contacts = lock(&self.contacts);
                        contacts.online.clear();
                        self.metrics().xmpp_resources.set(0);
                    }
                    // A new stream is in no room until the room says so.
                    lock(&self.joined).clear();
                    if !stream_management {
                        tracing::warn!(
                            "the XMPP server offers no stream management (XEP-0198): pings stand in for acknowledgements"
                        );
                    }
                    tracing::info!(%jid, "bot online");
                    self.announce().await;
                    suspended = None;
                    self.session.send_replace(Some(Session { generation, stream_management }));
                    self.wake.notify_one();
                }
                Incoming::Suspended => {
                    self.metrics().xmpp_connected.set(0);
                    // Nothing is handed to a broken stream: what it queues goes out on the next
                    // stream by itself, and the outbox would send the same items again.
                    suspended = self.session.send_replace(None).or(suspended);
                }
                Incoming::Resumed => {
                    self.metrics().xmpp_connected.set(1);
                    if let Some(session) = suspended.take() {
                        self.session.send_replace(Some(session));
                        self.wake.notify_one();
                    }
                }
                Incoming::Stanza(stanza) => self.handle(*stanza).await,
            }
        }
        self.metrics().xmpp_connected.set(0);
        self.session.send_replace(None);
    }

    /// Presence and room joins on a new stream.
    async fn announce(&self) {
        self.xmpp.post(Presence::available()).await;
        for room in &self.config.rooms {
            self.join(room).await;
        }
    }

    async fn join(&self, room: &RoomConfig) {
        let Ok(to) = Jid::new(&format!("{}/{}", room.jid, room.nick)) else {
            tracing::error!(room = %room.jid, nick = %room.nick, "cannot join: not a valid room JID with this nick");
            return;
        };
        let mut muc = Muc::new().with_history(History::new().with_maxstanzas(0));
        if let Some(password) = &room.password {
            muc = muc.with_password(password.clone());
        }
        self.xmpp.post(Presence::available().with_to(to).with_payload(muc)).await;
    }

    /// Tries a room again after a while, on the same stream, unless the bot got in meanwhile.
    fn rejoin_later(self: &Arc<Self>, room: BareJid) {
        let bot = Arc::clone(self);
        let generation = self.session.borrow().map(|session| session.generation);
        tokio::spawn(async move {
            tokio::select! {
                _ = bot.stop.cancelled() => return,
                _ = tokio::time::sleep(bot.config.room_retry) => {}
            }
            let same_stream = bot.session.borrow().map(|session| session.generation) == generation;
            if same_stream
                && !lock(&bot.joined).contains(&room)
                && let Some(config) = bot
                    .config
                    .rooms
                    .iter()
                    .find(|config| BareJid::new(&config.jid).ok() == Some(room.clone()))
            {
                bot.join(config).await;
            }
        });
    }

    async fn handle(self: &Arc<Self>, stanza: Stanza) {
        match stanza {
            Stanza::Presence(presence) => self.presence(presence).await,
            Stanza::Iq(iq) => self.iq(iq).await,
            Stanza::Message(message) => self.message(message).await,
        }
    }

    async fn presence(self: &Arc<Self>, presence: Presence) {
        let Some(from) = presence.from.clone() else { return };
        let bare = from.to_bare();
        if bare == self.me {
            return;
        }
        if self.rooms.contains(&bare) {
            self.room_presence(bare, &presence).await;
            return;
        }
        match presence.type_ {
            PresenceType::Subscribe => self.subscription_request(bare).await,
            PresenceType::None => {
                let Some(resource) = from.resource().map(|resource| resource.to_string()) else { return };
                let caps = presence
                    .payloads
                    .iter()
                    .find(|payload| payload.is("c", ns::CAPS))
                    .and_then(|payload| Caps::try_from(payload.clone()).ok());
                let cached = caps.as_ref().and_then(|caps| lock(&self.contacts).caps.get(&caps.ver).copied());
                let new = {
                    let mut contacts = lock(&self.contacts);
                    let resources = contacts.online.entry(bare.clone()).or_default();
                    let new = !resources.contains_key(&resource) || cached.is_some();
                    if new {
                        resources.insert(resource.clone(), cached);
                    }
                    self.metrics().xmpp_resources.set(contacts.known_resources());
                    new
                };
                if new && cached.is_none() {
                    tokio::spawn(Arc::clone(self).discover(from, caps));
                }
            }
            PresenceType::Unavailable => {
                let mut contacts = lock(&self.contacts);
                let features = contacts.features(&bare);
                if let Some(resources) = contacts.online.get_mut(&bare) {
                    if let Some(resource) = from.resource() {
                        resources.remove(resource.as_str());
                    } else {
                        resources.clear();
                    }
                    if resources.is_empty() {
                        contacts.online.remove(&bare);
                        contacts.last.insert(bare, features);
                    }
                }
                self.metrics().xmpp_resources.set(contacts.known_resources());
            }
            _ => {}
        }
    }

    /// The room's answer to the bot's join (XEP-0045 §7.2): its own presence (status 110) means
    /// it is in; a room it has just made (201) is locked until configured, so the bot accepts
    /// the default configuration (an instant room, §10.1.2).
    async fn room_presence(self: &Arc<Self>, room: BareJid, presence: &Presence) {
        let statuses: Vec<MucStatus> = presence
            .payloads
            .iter()
            .filter(|payload| payload.is("x", ns::MUC_USER))
            .filter_map(|payload| MucUser::try_from(payload.clone()).ok())
            .flat_map(|user| user.status)
            .collect();
        let mine = statuses.contains(&MucStatus::SelfPresence);
        match presence.type_ {
            PresenceType::Error => {
                tracing::warn!(room = %room, retry_in = ?self.config.room_retry, "the room refused the bot; its lines wait in the outbox");
                lock(&self.joined).remove(&room);
                self.rejoin_later(room);
            }
            PresenceType::Unavailable if mine => {
                tracing::warn!(room = %room, retry_in = ?self.config.room_retry, "the bot is out of the room; its lines wait in the outbox");
                lock(&self.joined).remove(&room);
                self.rejoin_later(room);
            }
            PresenceType::None if mine => {
                if statuses.contains(&MucStatus::RoomHasBeenCreated) {
                    let query: Element = INSTANT_ROOM.parse().expect("a well-formed constant");
                    if let Err(error) = self.xmpp.set(Some(Jid::from(room.clone())), query).await {
                        tracing::warn!(room = %room, %error, "the new room did not take its default configuration");
                    }
                }
                tracing::info!(room = %room, "joined the room");
                lock(&self.joined).insert(room);
                self.wake.notify_one();
            }
            _ => {}
        }
    }

    /// Asks a new resource what it can show.
    async fn discover(self: Arc<Self>, from: Jid, caps: Option<Caps>) {
        let node = caps.as_ref().map(|caps| {
            format!("{}#{}", caps.node, base64::engine::general_purpose::STANDARD.encode(&caps.ver))
        });
        let answer = self.xmpp.get(Some(from.clone()), DiscoInfoQuery { node }).await;
        let info = match answer {
            Ok(Some(element)) => match DiscoInfoResult::try_from(element) {
                Ok(info) => info,
                Err(error) => {
                    tracing::debug!(%from, %error, "unreadable disco#info answer");
                    return;
                }
            },
            Ok(None) => return,
            Err(error) => {
                tracing::debug!(%from, %error, "no disco#info answer; plain text for this client");
                DiscoInfoResult {
                    node: None,
                    identities: vec![],
                    features: Default::default(),
                    extensions: vec![],
                }
            }
        };
        let features = Features {
            forms: info.features.contains(render::NS_DATA_FORMS),
            oob: info.features.contains(render::NS_OOB),
        };
        let mut contacts = lock(&self.contacts);
        if let Some(caps) = caps {
            let checked = caps::hash_caps(&caps::compute_disco(&info), caps.hash)
                .is_ok_and(|hash| hash.hash == caps.ver);
            if checked && contacts.caps.len() < 10_000 {
                contacts.caps.insert(caps.ver, features);
            }
        }
        let bare = from.to_bare();
        if let (Some(resources), Some(resource)) = (contacts.online.get_mut(&bare), from.resource())
            && let Some(slot) = resources.get_mut(resource.as_str())
        {
            *slot = Some(features);
        }
        contacts.last.insert(bare, features);
        self.metrics().xmpp_resources.set(contacts.known_resources());
        tracing::debug!(%from, forms = features.forms, oob = features.oob, "client features");
    }

    /// Someone asks to see the bot's presence: the configured policy answers.
    async fn subscription_request(&self, from: BareJid) {
        let accept = match self.config.subscription_policy {
            SubscriptionPolicy::Accept => true,
            SubscriptionPolicy::Reject => false,
            SubscriptionPolicy::Known => self.state.is_known(from.as_str()).await.unwrap_or(false),
        };
        tracing::info!(jid = %from, accept, "presence subscription request");
        if accept {
            self.xmpp.post(Presence::subscribed().with_to(from.clone())).await;
            // Subscribing back lets the bot see which clients the user has online.
            self.xmpp.post(Presence::subscribe().with_to(from)).await;
        } else {
            self.xmpp.post(Presence::new(PresenceType::Unsubscribed).with_to(from)).await;
        }
    }

    async fn iq(&self, iq: Iq) {
        let (from, id, payload, set) = match iq {
            Iq::Get { from, id, payload, .. } => (from, id, payload, false),
            Iq::Set { from, id, payload, .. } => (from, id, payload, true),
            // Answers were matched by the session; a stray one needs nothing.
            Iq::Result { .. } | Iq::Error { .. } => return,
        };
        let from_server = from
            .as_ref()
            .is_none_or(|from| from.to_bare() == self.me || from.as_str() == self.me.domain().as_str());
        let answer = if !set && payload.is("query", ns::DISCO_INFO) {
            Some(Element::from(self.disco_info()))
        } else if !set && payload.is("ping", ns::PING) {
            None
        } else if set && payload.is("query", ns::ROSTER) && from_server {
            // A roster push (RFC 6121 §2.1.6): acknowledged; the bot keeps no roster copy.
            None
        } else {
            let error = StanzaError::new(
                ErrorType::Cancel,
                DefinedCondition::ServiceUnavailable,
                "en",
                "not offered by this bot",
            );
            if let Some(to) = from {
                self.xmpp.post(Iq::from_error(id, error).with_to(to)).await;
            }
            return;
        };
        let result = Iq::Result { from: None, to: from, id, payload: answer };
        self.xmpp.post(result).await;
    }

    fn disco_info(&self) -> DiscoInfoResult {
        let features = [ns::DISCO_INFO, ns::PING, render::NS_DATA_FORMS, render::NS_OOB];
        DiscoInfoResult {
            node: None,
            identities: vec![Identity::new("client", "bot", "en", "wikiwire")],
            features: features.iter().map(|feature| (*feature).to_owned()).collect(),
            extensions: vec![],
        }
    }

    async fn message(&self, message: Message) {
        let Some(from) = message.from.clone() else { return };
        let bare = from.to_bare();
        if bare == self.me || self.rooms.contains(&bare) {
            return;
        }
        match message.type_ {
            MessageType::Error => {
                tracing::debug!(%from, "a message from the bot bounced");
                return;
            }
            MessageType::Groupchat | MessageType::Headline => return,
            MessageType::Chat | MessageType::Normal => {}
        }
        let has_body = !message.bodies.is_empty();
        let has_form = message.payloads.iter().any(|payload| payload.is("x", render::NS_DATA_FORMS));
        if !has_body && !has_form {
            // Chat states and receipts.
            return;
        }
        if let Some((Lang(lang), _)) = message.get_best_body(vec![])
            && !lang.is_empty()
        {
            let mut contacts = lock(&self.contacts);
            if contacts.languages.len() > 10_000 {
                contacts.languages.clear();
            }
            contacts.languages.insert(bare, lang.clone());
        }
        self.metrics().xmpp_commands.inc();
        if self.commands.try_send((from.clone(), message)).is_err() {
            tracing::warn!("commands arrive faster than they are answered; one was dropped");
        }
    }

    /// The language for a user: the wiki's, else the one they write in, else the configured one.
    pub(crate) async fn language(&self, jid: &BareJid) -> &'static str {
        if let Some(wiki) = &self.wiki
            && let Some(language) = wiki.language(jid.as_str()).await
        {
            return i18n::language(&language);
        }
        let written = lock(&self.contacts).languages.get(jid).cloned();
        i18n::language(written.as_deref().unwrap_or(&self.config.language))
    }
}

pub(crate) fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn features_are_what_every_online_client_has() {
        let mut contacts = Contacts::default();
        let jid = BareJid::new("u@x.test").unwrap();
        assert_eq!(contacts.features(&jid), Features::default());
        let resources = contacts.online.entry(jid.clone()).or_default();
        resources.insert("a".into(), Some(Features { forms: true, oob: true }));
        resources.insert("b".into(), None);
        assert_eq!(contacts.features(&jid), Features { forms: true, oob: true });
        contacts.online.get_mut(&jid).unwrap().insert("c".into(), Some(Features { forms: false, oob: true }));
        assert_eq!(contacts.features(&jid), Features { forms: false, oob: true });
        assert_eq!(contacts.known_resources(), 2);
    }
}
