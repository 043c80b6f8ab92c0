//! The outbox dispatcher: items leave in order; with stream management an item is done when the
//! server acknowledges its stanza, without it a ping after a batch stands in; roster changes are
//! IQs, done when answered. Room lines wait until the bot is in the room.

use std::sync::Arc;
use std::time::Duration;

use tokio_xmpp::Stanza;
use tokio_xmpp::jid::{BareJid, Jid};
use tokio_xmpp::parsers::message::{Id, Lang, Message};
use tokio_xmpp::parsers::ping::Ping;
use tokio_xmpp::parsers::presence::Presence;
use tokio_xmpp::parsers::roster::{Item as RosterItem, Roster, Subscription as RosterSubscription};
use tokio_xmpp::stanzastream::{StanzaStage, StanzaState};
use wikiwire_event::{Event, Filter, Format, line};

use super::{Bot, Session, lock};
use crate::notification::Notification;
use crate::render;
use crate::state::Item;

/// Items read from the outbox at a time, and most items sent but not yet acknowledged.
const BATCH: usize = 200;
const IN_FLIGHT: usize = 1000;
/// Longest line sent to a room.
const MAX_ROOM_LINE: usize = 4096;

impl Bot {
    /// Sends the outbox, forever: items in order, each done when the server has taken it.
    pub async fn run_dispatch(self: Arc<Self>) {
        let mut session_changes = self.session.subscribe();
        let shutdown = self.stop.clone();
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
                // The last moment to find out that another node runs the bot now.
                if *self.session.borrow() != Some(session) || !self.lease.valid() {
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
                            batch.push((id, token));
                        }
                    }
                }
            }
            if !batch.is_empty() {
                // No stream management: an answered ping means everything before it arrived.
                let answered = self.ping().await;
                for (id, token) in batch {
                    if answered {
                        self.delivered(id).await;
                    } else if matches!(token.state(), StanzaState::Queued) {
                        // Never written to the broken stream: it goes out on the next one by
                        // itself; sending the item again would deliver it twice.
                        tokio::spawn(Arc::clone(self).await_next_stream(id, token));
                        continue;
                    }
                    lock(&self.in_flight).remove(&id);
                }
                if !answered {
                    return Ok(());
                }
            }
        }
    }

    /// A ping to the server, answered: everything sent before it on this stream arrived.
    async fn ping(&self) -> bool {
        let server = Jid::new(self.me.domain().as_str()).ok();
        self.xmpp.get(server, Ping).await.is_ok()
    }

    /// Without stream management: an item whose stanza was still queued when the stream broke
    /// stays in flight until the stream has written it on the next connection, then a ping
    /// confirms it. If that fails too, the outbox sends the item again.
    async fn await_next_stream(self: Arc<Self>, id: i64, mut token: tokio_xmpp::stanzastream::StanzaToken) {
        let sent = matches!(token.wait_for(StanzaStage::Sent).await, Some(StanzaState::Sent { .. }));
        if sent && self.ping().await {
            self.delivered(id).await;
        }
        lock(&self.in_flight).remove(&id);
        self.wake.notify_one();
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
