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

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, mpsc, watch};
use tokio_xmpp::Stanza;
use tokio_xmpp::jid::{BareJid, Jid};
use tokio_xmpp::minidom::Element;
use tokio_xmpp::parsers::caps::{self, Caps};
use tokio_xmpp::parsers::data_forms::{DataForm, DataFormType};
use tokio_xmpp::parsers::disco::{DiscoInfoQuery, DiscoInfoResult, Identity};
use tokio_xmpp::parsers::iq::Iq;
use tokio_xmpp::parsers::message::{Id, Lang, Message, MessageType};
use tokio_xmpp::parsers::muc::Muc;
use tokio_xmpp::parsers::muc::muc::History;
use tokio_xmpp::parsers::muc::user::{MucUser, Status as MucStatus};
use tokio_xmpp::parsers::ns;
use tokio_xmpp::parsers::ping::Ping;
use tokio_xmpp::parsers::presence::{Presence, Type as PresenceType};
use tokio_xmpp::parsers::roster::{Item as RosterItem, Roster, Subscription as RosterSubscription};
use tokio_xmpp::parsers::stanza_error::{DefinedCondition, ErrorType, StanzaError};
use tokio_xmpp::stanzastream::{StanzaStage, StanzaState};
use wikiwire_event::{Event, Filter, Format, line};
use wikiwire_hub::Hub;
use wikiwire_hub::config::{SubscriptionPolicy, XmppConfig};

use crate::commands::{self, Command, ParseError};
use crate::i18n;
use crate::notification::Notification;
use crate::render::{self, Features};
use crate::session::{Incoming, Xmpp};
use crate::state::{Item, State, Subscription};
use crate::wiki::{Answer, Request, Wiki, WikiError};

/// Items read from the outbox at a time, and most items sent but not yet acknowledged.
const BATCH: usize = 200;
const IN_FLIGHT: usize = 1000;
/// Commands waiting for a worker; past it, a user is told the bot is busy.
const COMMAND_QUEUE: usize = 256;
pub const COMMAND_WORKERS: usize = 4;
/// Longest reply text, in bytes.
const MAX_REPLY: usize = 32 * 1024;
/// Longest line sent to a room.
const MAX_ROOM_LINE: usize = 4096;

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

pub struct Bot {
    pub(crate) hub: Arc<Hub>,
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
    /// Outbox ids sent and not yet acknowledged.
    in_flight: Mutex<HashSet<i64>>,
    subscriptions: Mutex<Vec<(String, Filter)>>,
    commands: mpsc::Sender<(Jid, Message)>,
}

impl Bot {
    pub fn new(
        hub: Arc<Hub>,
        config: XmppConfig,
        state: State,
        xmpp: Xmpp,
        wiki: Option<Arc<Wiki>>,
        wake: Arc<Notify>,
    ) -> Result<(Arc<Bot>, CommandQueue), String> {
        let me = BareJid::new(&config.jid).map_err(|error| format!("xmpp.jid: {error}"))?;
        let mut rooms = HashSet::new();
        for room in &config.rooms {
            rooms.insert(BareJid::new(&room.jid).map_err(|error| format!("xmpp.rooms: {error}"))?);
        }
        let (commands, queue) = mpsc::channel(COMMAND_QUEUE);
        let bot = Bot {
            hub,
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
            in_flight: Mutex::new(HashSet::new()),
            subscriptions: Mutex::new(Vec::new()),
            commands,
        };
        Ok((Arc::new(bot), queue))
    }

    fn metrics(&self) -> &wikiwire_hub::Metrics {
        self.hub.metrics()
    }

    /// Runs until the session ends: every report of the XMPP session.
    pub async fn run_incoming(self: Arc<Self>, mut incoming: mpsc::Receiver<Incoming>) {
        let mut generation = 0;
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
                    self.session.send_replace(Some(Session { generation, stream_management }));
                    self.wake.notify_one();
                }
                Incoming::Suspended => self.metrics().xmpp_connected.set(0),
                Incoming::Resumed => self.metrics().xmpp_connected.set(1),
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

    async fn join(&self, room: &wikiwire_hub::config::RoomConfig) {
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
                _ = bot.hub.shutdown().cancelled() => return,
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
        let node = caps.as_ref().map(|caps| format!("{}#{}", caps.node, base64(&caps.ver)));
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

    /// A worker that runs commands from the queue.
    pub async fn run_commands(self: Arc<Self>, queue: Arc<tokio::sync::Mutex<CommandQueue>>) {
        let shutdown = self.hub.shutdown().clone();
        loop {
            let next = tokio::select! {
                _ = shutdown.cancelled() => return,
                next = async { queue.lock().await.recv().await } => next,
            };
            let Some((from, message)) = next else { return };
            let lang = self.language(&from.to_bare()).await;
            let reply = self.answer(&from, &message, lang).await;
            self.xmpp.post(reply).await;
        }
    }

    async fn answer(&self, from: &Jid, message: &Message, lang: &'static str) -> Message {
        if let Some(form) = message
            .payloads
            .iter()
            .find(|payload| payload.is("x", render::NS_DATA_FORMS))
            .and_then(|payload| DataForm::try_from(payload.clone()).ok())
            && form.type_ == DataFormType::Submit
            && form.form_type() == Some(render::SEARCH_FORM)
        {
            let value = |var: &str| {
                form.fields
                    .iter()
                    .find(|field| field.var.as_deref() == Some(var))
                    .and_then(|field| field.values.first().cloned())
                    .unwrap_or_default()
            };
            let flag = |var: &str| matches!(value(var).as_str(), "1" | "true");
            let query = value("query");
            if query.trim().is_empty() {
                return render::chat(
                    from.clone(),
                    &i18n::fill(lang, "usage", &[("usage", i18n::text(lang, "help.search"))]),
                );
            }
            let request = Request::Search {
                query,
                title: value("type") == "title",
                case: flag("case"),
                regexp: flag("regexp"),
            };
            return render::chat(from.clone(), &self.wiki_reply(from, &request, lang).await);
        }
        let body = message.get_best_body(vec![lang]).map(|(_, body)| body.clone()).unwrap_or_default();
        let text = match commands::parse(&body) {
            Ok(Command::Help(topic)) => self.help(topic.as_deref(), lang),
            Ok(Command::Ping) => i18n::text(lang, "pong").to_owned(),
            Ok(Command::SearchForm) => return render::search_form(from.clone(), lang),
            Ok(Command::Wiki(request)) => self.wiki_reply(from, &request, lang).await,
            Ok(Command::Subscribe { wiki, pages }) => {
                self.subscribe(&from.to_bare(), &wiki, pages, lang).await
            }
            Ok(Command::Unsubscribe { wiki, pages }) => {
                match self.state.unsubscribe(from.to_bare().as_str(), wiki.as_deref(), pages.as_deref()).await
                {
                    Ok(count) => {
                        self.load_subscriptions().await;
                        i18n::fill(lang, "unsubscribed", &[("count", &count.to_string())])
                    }
                    Err(error) => {
                        tracing::error!(%error, "cannot remove a subscription");
                        i18n::text(lang, "state_error").to_owned()
                    }
                }
            }
            Ok(Command::Subscriptions) => match self.state.subscriptions(Some(from.to_bare().as_str())).await
            {
                Ok(list) if list.is_empty() => i18n::text(lang, "no_subscriptions").to_owned(),
                Ok(list) => {
                    let mut text = i18n::text(lang, "subscriptions").to_owned();
                    for subscription in list {
                        text.push_str("\n• ");
                        text.push_str(&subscription.wiki);
                        if !subscription.pages.is_empty() {
                            text.push(' ');
                            text.push_str(&subscription.pages);
                        }
                    }
                    text
                }
                Err(error) => {
                    tracing::error!(%error, "cannot read subscriptions");
                    i18n::text(lang, "state_error").to_owned()
                }
            },
            Err(ParseError::Unknown(command)) => {
                i18n::fill(lang, "unknown_command", &[("command", &command)])
            }
            Err(ParseError::Usage(command)) => {
                i18n::fill(lang, "usage", &[("usage", i18n::text(lang, &format!("help.{command}")))])
            }
        };
        render::chat(from.clone(), &text)
    }

    fn help(&self, topic: Option<&str>, lang: &str) -> String {
        if let Some(topic) = topic
            && commands::COMMANDS.contains(&topic)
        {
            return i18n::text(lang, &format!("help.{topic}")).to_owned();
        }
        let name = self.wiki.as_ref().map_or(self.hub.public_url(), |wiki| wiki.url());
        let mut text = i18n::fill(lang, "help.intro", &[("wiki", name)]);
        for command in commands::COMMANDS {
            text.push_str("\n• ");
            text.push_str(i18n::text(lang, &format!("help.{command}")));
        }
        text
    }

    async fn wiki_reply(&self, from: &Jid, request: &Request, lang: &str) -> String {
        let Some(wiki) = &self.wiki else {
            return i18n::text(lang, "no_wiki").to_owned();
        };
        let command = match request {
            Request::Page(_) => "getpage",
            Request::PageHtml(_) => "getpagehtml",
            Request::AllPages => "getpagelist",
            Request::PageInfo(_) => "getpageinfo",
            Request::Search { .. } => "search",
            Request::Revert { .. } => "revertpage",
        };
        let answer = match wiki.request(from.to_bare().as_str(), request).await {
            Ok(answer) => answer,
            Err(WikiError::Fault(fault)) => return i18n::fill(lang, "wiki_error", &[("error", &fault)]),
            Err(WikiError::NotSupported) => {
                return i18n::fill(lang, "not_supported", &[("command", command)]);
            }
            Err(error) => return i18n::fill(lang, "wiki_unreachable", &[("error", &error.to_string())]),
        };
        let text = match (answer, request) {
            // DokuWiki answers a page that does not exist with an empty text.
            (Answer::Text(text), Request::Page(page) | Request::PageHtml(page)) if text.trim().is_empty() => {
                i18n::fill(lang, "empty_page", &[("page", page)])
            }
            (Answer::Text(text), _) => text,
            (Answer::Pages(pages), _) => {
                let mut text = i18n::fill(lang, "page_list", &[("count", &pages.len().to_string())]);
                for page in pages {
                    text.push('\n');
                    text.push_str(&page);
                }
                text
            }
            (Answer::Info(info), _) => i18n::fill(
                lang,
                "page_info",
                &[
                    ("page", &info.name),
                    ("version", &info.version),
                    ("author", &info.author),
                    ("date", &info.modified),
                ],
            ),
            (Answer::Hits(hits), Request::Search { query, .. }) if hits.is_empty() => {
                i18n::fill(lang, "search_nothing", &[("query", query)])
            }
            (Answer::Hits(hits), Request::Search { query, .. }) => {
                let mut text = i18n::fill(
                    lang,
                    "search_results",
                    &[("count", &hits.len().to_string()), ("query", query)],
                );
                for hit in hits {
                    text.push_str("\n• ");
                    text.push_str(&hit.page);
                    let context = hit.context.split_whitespace().collect::<Vec<_>>().join(" ");
                    if !context.is_empty() {
                        text.push_str(" — ");
                        text.push_str(&context);
                    }
                    if let Some(url) = hit.url {
                        text.push_str(" <");
                        text.push_str(&url);
                        text.push('>');
                    }
                }
                text
            }
            (Answer::Hits(_), _) => String::new(),
            (Answer::Reverted(done), Request::Revert { page, revision }) => {
                let key = if done { "reverted" } else { "revert_failed" };
                i18n::fill(lang, key, &[("page", page), ("revision", &revision.to_string())])
            }
            (Answer::Reverted(_), _) => String::new(),
        };
        cut(text, lang)
    }

    async fn subscribe(&self, jid: &BareJid, wiki: &str, pages: Option<String>, lang: &str) -> String {
        let publishers = self.hub.publishers();
        let Some(description) = publishers.wikis().iter().find(|known| known.name.eq_ignore_ascii_case(wiki))
        else {
            let names: Vec<&str> = publishers.wikis().iter().map(|known| known.name.as_str()).collect();
            return i18n::fill(lang, "no_such_wiki", &[("wiki", wiki), ("wikis", &names.join(", "))]);
        };
        let pattern = pages.unwrap_or_default();
        if !pattern.is_empty()
            && let Err(error) = Filter::from_pairs([("page", pattern.as_str())])
        {
            return i18n::fill(lang, "bad_pattern", &[("pattern", &pattern), ("error", &error.to_string())]);
        }
        let shown = if pattern.is_empty() { String::new() } else { format!(" ({pattern})") };
        let subscription =
            Subscription { jid: jid.to_string(), wiki: description.name.clone(), pages: pattern };
        match self.state.subscribe(subscription).await {
            Ok(added) => {
                self.load_subscriptions().await;
                let key = if added { "subscribed" } else { "already_subscribed" };
                i18n::fill(lang, key, &[("wiki", &description.name), ("pages", &shown)])
            }
            Err(error) => {
                tracing::error!(%error, "cannot store a subscription");
                i18n::text(lang, "state_error").to_owned()
            }
        }
    }

    /// Reads every subscription into memory, each as a filter.
    pub(crate) async fn load_subscriptions(&self) {
        match self.state.subscriptions(None).await {
            Ok(list) => {
                let compiled = list
                    .into_iter()
                    .filter_map(|subscription| {
                        let mut pairs = vec![("wiki", subscription.wiki.as_str())];
                        if !subscription.pages.is_empty() {
                            pairs.push(("page", subscription.pages.as_str()));
                        }
                        Filter::from_pairs(pairs).ok().map(|filter| (subscription.jid.clone(), filter))
                    })
                    .collect();
                *lock(&self.subscriptions) = compiled;
            }
            Err(error) => tracing::error!(%error, "cannot read subscriptions"),
        }
    }

    /// Who is to be told of `event`, each JID once.
    pub(crate) fn subscribers(&self, event: &Event) -> Vec<String> {
        let mut jids: Vec<String> = lock(&self.subscriptions)
            .iter()
            .filter(|(_, filter)| filter.matches(event))
            .map(|(jid, _)| jid.clone())
            .collect();
        jids.sort_unstable();
        jids.dedup();
        jids
    }

    /// Sends the outbox, forever: items in order, each done when the server has taken it.
    pub async fn run_dispatch(self: Arc<Self>) {
        let mut session_changes = self.session.subscribe();
        let shutdown = self.hub.shutdown().clone();
        loop {
            let session = *session_changes.borrow_and_update();
            if let Some(session) = session {
                match self.dispatch(session).await {
                    Ok(()) => {}
                    Err(error) => tracing::error!(%error, "cannot read the outbox"),
                }
            }
            if let Ok(length) = self.state.outbox_len().await {
                self.metrics().xmpp_outbox.set(length as i64);
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = self.wake.notified() => {}
                changed = session_changes.changed() => if changed.is_err() { return },
                // A safety net: anything whose acknowledgement was lost is looked at again.
                _ = tokio::time::sleep(Duration::from_secs(5)) => {}
            }
        }
    }

    /// Sends what is pending and not in flight.
    async fn dispatch(self: &Arc<Self>, session: Session) -> Result<(), crate::state::StateError> {
        loop {
            if lock(&self.in_flight).len() >= IN_FLIGHT {
                return Ok(());
            }
            let waiting: Vec<String> = {
                let joined = lock(&self.joined);
                self.rooms
                    .iter()
                    .filter(|room| !joined.contains(*room))
                    .map(|room| room.to_string())
                    .collect()
            };
            let pending = self.state.pending(BATCH + IN_FLIGHT, waiting).await?;
            let fresh: Vec<(i64, Item)> = {
                let in_flight = lock(&self.in_flight);
                pending.into_iter().filter(|(id, _)| !in_flight.contains(id)).take(BATCH).collect()
            };
            if fresh.is_empty() {
                return Ok(());
            }
            let mut batch = Vec::new();
            for (id, item) in fresh {
                if *self.session.borrow() != Some(session) {
                    return Ok(());
                }
                match item {
                    Item::RosterAdd { jid } => self.roster(id, &jid, true).await,
                    Item::RosterRemove { jid } => self.roster(id, &jid, false).await,
                    item => {
                        let Some(stanza) = self.render(id, item).await else {
                            // Unsendable (a JID that no longer parses): dropped, said in the log.
                            self.state.done(id).await?;
                            continue;
                        };
                        lock(&self.in_flight).insert(id);
                        let Some(token) = self.xmpp.send(stanza).await else {
                            lock(&self.in_flight).remove(&id);
                            return Ok(());
                        };
                        if session.stream_management {
                            tokio::spawn(Arc::clone(self).await_ack(id, token));
                        } else {
                            batch.push(id);
                        }
                    }
                }
            }
            if !batch.is_empty() {
                // No stream management: an answered ping means everything before it arrived.
                let server = Jid::new(self.me.domain().as_str()).ok();
                let answered = self.xmpp.get(server, Ping).await;
                for id in batch {
                    if answered.is_ok() {
                        self.delivered(id).await;
                    }
                    lock(&self.in_flight).remove(&id);
                }
                if answered.is_err() {
                    return Ok(());
                }
            }
        }
    }

    async fn await_ack(self: Arc<Self>, id: i64, mut token: tokio_xmpp::stanzastream::StanzaToken) {
        let state = token.wait_for(StanzaStage::Acked).await;
        if matches!(state, Some(StanzaState::Acked { .. })) {
            self.delivered(id).await;
        } else {
            tracing::debug!(id, "a stanza was not acknowledged; it will be sent again");
        }
        lock(&self.in_flight).remove(&id);
        self.wake.notify_one();
    }

    async fn delivered(&self, id: i64) {
        match self.state.done(id).await {
            Ok(()) => self.metrics().xmpp_delivered.inc(),
            Err(error) => {
                tracing::error!(%error, id, "cannot mark an outbox item done; it may be sent twice")
            }
        }
    }

    /// A roster change: done when the server answers (or refuses for good).
    async fn roster(&self, id: i64, jid: &str, add: bool) {
        let Ok(bare) = BareJid::new(jid) else {
            let _ = self.state.done(id).await;
            return;
        };
        let item = RosterItem {
            jid: bare.clone(),
            name: None,
            subscription: if add { RosterSubscription::None } else { RosterSubscription::Remove },
            ask: Default::default(),
            groups: vec![],
            approved: None,
        };
        match self.xmpp.set(None, Roster { ver: None, items: vec![item] }).await {
            Ok(_) => {
                if add {
                    // Pre-approve their subscription to the bot and ask for theirs (RFC 6121 §3).
                    self.xmpp.post(Presence::subscribed().with_to(bare.clone())).await;
                    self.xmpp.post(Presence::subscribe().with_to(bare.clone())).await;
                }
                tracing::info!(jid = %bare, add, "roster changed");
                self.delivered(id).await;
            }
            Err(crate::session::IqError::Refused(condition)) => {
                tracing::warn!(jid = %bare, add, %condition, "the server refused a roster change");
                let _ = self.state.done(id).await;
            }
            Err(error) => tracing::debug!(jid = %bare, %error, "roster change not answered; will try again"),
        }
    }

    async fn render(&self, id: i64, item: Item) -> Option<Stanza> {
        let stanza_id = format!("ww-{id}");
        match item {
            Item::Notification { to, notification } => {
                let bare = BareJid::new(&to).ok()?;
                let lang = self.language(&bare).await;
                let features = lock(&self.contacts).features(&bare);
                Some(render::notification(Jid::from(bare), &stanza_id, &notification, features, lang).into())
            }
            Item::Event { to, event } => {
                let bare = BareJid::new(&to).ok()?;
                let event = match Event::from_json(&event) {
                    Ok(event) => event,
                    Err(error) => {
                        tracing::error!(%error, "an outbox event does not read back");
                        return None;
                    }
                };
                let lang = self.language(&bare).await;
                let features = lock(&self.contacts).features(&bare);
                let wiki = self.hub.publishers().wiki(&event.wiki);
                let notification = Notification::from_event(&event, wiki, lang);
                Some(render::notification(Jid::from(bare), &stanza_id, &notification, features, lang).into())
            }
            Item::Room { room, text } => {
                let room = BareJid::new(&room).ok()?;
                let mut message = Message::groupchat(Some(Jid::from(room)));
                message.id = Some(Id(stanza_id));
                message.bodies.insert(Lang(String::new()), text);
                Some(message.into())
            }
            Item::RosterAdd { .. } | Item::RosterRemove { .. } => None,
        }
    }

    /// Renders an event for a room.
    pub(crate) fn room_line(&self, event: &Event, filter: &Filter) -> String {
        let wiki = self.hub.publishers().wiki(&event.wiki);
        line::render(event, wiki, Format::Text, filter.single_wiki().is_none(), MAX_ROOM_LINE)
    }
}

fn cut(text: String, lang: &str) -> String {
    if text.len() <= MAX_REPLY {
        return text;
    }
    let kept = wikiwire_event::text::cut_at_boundary(&text, MAX_REPLY);
    let more = text.len() - kept.len();
    format!("{kept}\n{}", i18n::fill(lang, "truncated", &[("bytes", &more.to_string())]))
}

fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = (u32::from(chunk[0]) << 16)
            | (u32::from(*chunk.get(1).unwrap_or(&0)) << 8)
            | u32::from(*chunk.get(2).unwrap_or(&0));
        for index in 0..4 {
            if index <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * index) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

pub(crate) fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_of_caps_hashes() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
    }

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
