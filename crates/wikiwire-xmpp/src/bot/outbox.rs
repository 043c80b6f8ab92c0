//! The outbox dispatcher: items leave in order; with stream management an item is done when the
//! server acknowledges its stanza, without it a ping after a batch stands in; roster changes are
//! IQs, done when answered. Room lines wait until the bot is in the room.
//!
//! **What may be delivered twice.** An item the server has taken but the outbox still holds is
//! sent again by whoever runs the bot next (another node after a takeover, this one after a
//! crash). The dispatcher keeps that set small and bounded: at most [`IN_FLIGHT`] items are out
//! at a time, counted from the moment they are handed to the session until their removal from
//! the outbox has been committed; acknowledged items are removed in rounds (one transaction on
//! one node) by one task, so a short window costs no throughput. This holder itself never sends
//! an item twice: a removal that fails is retried, not forgotten, and an item removed while the
//! outbox was being read is not taken from that (older) reading, nor, in a cluster, from a
//! reading served by a replica that has not applied the removal yet.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio_xmpp::Stanza;
use tokio_xmpp::jid::{BareJid, Jid};
use tokio_xmpp::parsers::message::{Id, Lang, Message};
use tokio_xmpp::parsers::ping::Ping;
use tokio_xmpp::parsers::presence::Presence;
use tokio_xmpp::parsers::roster::{Item as RosterItem, Roster, Subscription as RosterSubscription};
use wikiwire_event::{Event, Filter, Format, line};

use super::{Bot, Session, lock};
use crate::notification::Notification;
use crate::render;
use crate::session::{Fate, Ticket};
use crate::state::Item;

/// Items sent between two pings without stream management, and read from the outbox at a time.
pub const BATCH: usize = 50;
/// Most items out at once: handed to the session and not yet removed from the outbox. This is
/// the most a takeover or a crash can deliver twice. Two batches, so that one is confirmed while
/// the next is on the wire.
pub const IN_FLIGHT: usize = 2 * BATCH;
/// Longest line sent to a room.
const MAX_ROOM_LINE: usize = 4096;
/// Waits between attempts to remove delivered items while the store does not answer.
const REMOVAL_RETRY: Duration = Duration::from_millis(250);
const REMOVAL_RETRY_MAX: Duration = Duration::from_secs(5);
/// How long removed items are not sent again where readings may lag behind removals (a
/// cluster): far longer than a NATS replica takes to apply a deletion its leader acknowledged.
const REMOVED_MEMORY: Duration = Duration::from_secs(30);

/// The items this holder has out.
#[derive(Default)]
pub(crate) struct Flight {
    /// Handed to the session, not yet removed from the outbox.
    out: HashSet<i64>,
    /// Removed, and when: a reading that began before, or a lagging replica, may still list them.
    removed: HashMap<i64, Instant>,
}

impl Flight {
    /// A reading of the outbox begins. Where readings see every removal committed before them
    /// (one node), what was removed can no longer be listed; elsewhere removed items are
    /// remembered for a while.
    fn reading(&mut self, sees_removals: bool) {
        if sees_removals {
            self.removed.clear();
        } else {
            self.removed.retain(|_, at| at.elapsed() < REMOVED_MEMORY);
        }
    }

    /// Whether an item of the reading is to be sent now.
    fn fresh(&self, id: i64) -> bool {
        !self.out.contains(&id) && !self.removed.contains_key(&id)
    }

    /// Its removal from the outbox is committed.
    fn removed(&mut self, id: i64) {
        self.out.remove(&id);
        self.removed.insert(id, Instant::now());
    }

    /// Not taken by the server: the outbox sends it again.
    fn returned(&mut self, id: i64) {
        self.out.remove(&id);
    }

    pub(crate) fn len(&self) -> usize {
        self.out.len()
    }
}

/// Delivered items on their way to removal.
pub type Removals = mpsc::Receiver<i64>;

pub(crate) fn removals() -> (mpsc::Sender<i64>, Removals) {
    // Never more than IN_FLIGHT ids exist to send; the bound only keeps that visible.
    mpsc::channel(IN_FLIGHT)
}

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

    /// Removes delivered items from the outbox, in rounds: whatever was acknowledged while the
    /// last round was being committed goes in the next one. A failed removal is tried again
    /// (with a growing pause) until it succeeds or this run of the bot ends: the items stay out,
    /// so this holder never sends them again. When the run ends (shutdown, or the lease lost),
    /// what was delivered is removed once more before the task goes: the next holder would send
    /// it again.
    pub async fn run_removals(self: Arc<Self>, mut removals: Removals) {
        let mut round = Vec::with_capacity(IN_FLIGHT);
        let mut last = false;
        while !last {
            round.clear();
            tokio::select! {
                received = removals.recv_many(&mut round, IN_FLIGHT) => if received == 0 { return },
                _ = self.stop.cancelled() => {
                    while let Ok(id) = removals.try_recv() {
                        round.push(id);
                    }
                    if round.is_empty() {
                        return;
                    }
                    last = true;
                }
            }
            let mut pause = REMOVAL_RETRY;
            loop {
                match self.state.done_many(round.clone()).await {
                    Ok(()) => break,
                    Err(error) if last || self.stop.is_cancelled() => {
                        tracing::warn!(%error, items = round.len(),
                            "delivered items left in the outbox: the next run of the bot sends them again");
                        return;
                    }
                    Err(error) => {
                        tracing::warn!(%error, items = round.len(), retry_in = ?pause,
                            "cannot remove delivered items from the outbox yet");
                    }
                }
                tokio::select! {
                    _ = self.stop.cancelled() => {}
                    _ = tokio::time::sleep(pause) => {}
                }
                pause = (pause * 2).min(REMOVAL_RETRY_MAX);
            }
            {
                let mut flight = lock(&self.flight);
                for id in &round {
                    flight.removed(*id);
                }
            }
            self.metrics().xmpp_delivered.add(round.len() as u64);
            self.wake.notify_one();
        }
    }

    /// An item the server has taken: removed from the outbox by `run_removals`.
    async fn delivered(&self, id: i64) {
        if self.removals.send(id).await.is_err() {
            // The run is ending; the item stays out until it does.
            tracing::debug!(id, "delivered item not removed: the bot is stopping");
        }
    }

    /// Before a clean stop: sends nothing more, and waits (at most `within`, and only while a
    /// session is up to answer) until what is out has been taken by the server and removed from
    /// the outbox, so that the next holder does not send it again.
    pub async fn hand_over(&self, within: Duration) {
        self.handing_over.cancel();
        let deadline = tokio::time::Instant::now() + within;
        while lock(&self.flight).len() > 0
            && self.session.borrow().is_some()
            && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let left = lock(&self.flight).len();
        if left > 0 {
            tracing::info!(items = left, "stopping with items out: the next run of the bot sends them again");
        }
    }

    /// Sends what is pending and not in flight.
    async fn dispatch(self: &Arc<Self>, session: Session) -> Result<(), crate::state::StateError> {
        loop {
            if self.handing_over.is_cancelled() {
                return Ok(());
            }
            let room = IN_FLIGHT.saturating_sub(lock(&self.flight).len()).min(BATCH);
            if room == 0 {
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
            lock(&self.flight).reading(self.state.reads_its_removals());
            let pending = self.state.pending(BATCH + IN_FLIGHT, waiting).await?;
            let fresh: Vec<(i64, Item)> = {
                let flight = lock(&self.flight);
                pending.into_iter().filter(|(id, _)| flight.fresh(*id)).take(room).collect()
            };
            if fresh.is_empty() {
                return Ok(());
            }
            let mut batch = Vec::new();
            let mut rendered = Vec::new();
            for (id, item) in fresh {
                // The last moment to find out that another node runs the bot now.
                if *self.session.borrow() != Some(session) || !self.lease.valid() {
                    break;
                }
                match item {
                    Item::RosterAdd { ref jid } | Item::RosterRemove { ref jid } => {
                        // A roster change waits for its answer: what was rendered goes first.
                        if !self.hand(session, &mut rendered, &mut batch).await {
                            break;
                        }
                        self.roster(id, jid, matches!(item, Item::RosterAdd { .. })).await;
                    }
                    item => match self.render(id, item).await {
                        Some(stanza) => {
                            lock(&self.flight).out.insert(id);
                            rendered.push((stanza, id));
                        }
                        // Unsendable (a JID that no longer parses): dropped, said in the log.
                        None => self.state.done(id).await?,
                    },
                }
            }
            self.hand(session, &mut rendered, &mut batch).await;
            if batch.is_empty() {
                if *self.session.borrow() != Some(session) || !self.lease.valid() {
                    return Ok(());
                }
                continue;
            }
            // No stream management: an answered ping means everything before it arrived, if it
            // was answered on the stream that carried the batch (a new stream, one generation
            // on, proves nothing of what the broken one took).
            let same_stream = || *self.session.borrow() == Some(session);
            let answered = same_stream() && self.ping().await && same_stream();
            for (id, token) in batch {
                if answered {
                    self.delivered(id).await;
                } else if token.fate() == Fate::Queued {
                    // Never written to the broken stream: it goes out on the next one by
                    // itself; sending the item again would deliver it twice.
                    tokio::spawn(Arc::clone(self).await_next_stream(id, token));
                } else {
                    lock(&self.flight).returned(id);
                }
            }
            if !answered {
                return Ok(());
            }
        }
    }

    /// Hands rendered items to the session in one go (one stream record for all of them),
    /// unless the session or the lease has gone meanwhile: then they stay in the outbox.
    async fn hand(
        self: &Arc<Self>,
        session: Session,
        rendered: &mut Vec<(Stanza, i64)>,
        batch: &mut Vec<(i64, Ticket)>,
    ) -> bool {
        if rendered.is_empty() {
            return true;
        }
        let items = std::mem::take(rendered);
        let ids: Vec<i64> = items.iter().map(|(_, id)| *id).collect();
        // The last moment to find out that another node runs the bot now.
        let current = *self.session.borrow() == Some(session) && self.lease.valid();
        let tickets = if current { self.xmpp.send_items(items).await } else { None };
        let Some(tickets) = tickets else {
            let mut flight = lock(&self.flight);
            for id in ids {
                flight.returned(id);
            }
            return false;
        };
        for (id, ticket) in ids.into_iter().zip(tickets) {
            if session.stream_management {
                tokio::spawn(Arc::clone(self).await_ack(id, ticket));
            } else {
                batch.push((id, ticket));
            }
        }
        true
    }

    /// A ping to the server, answered: everything sent before it on this stream arrived.
    async fn ping(&self) -> bool {
        let server = Jid::new(self.me.domain().as_str()).ok();
        self.xmpp.get(server, Ping).await.is_ok()
    }

    /// Without stream management: an item whose stanza was still queued when the stream broke
    /// stays in flight until the stream has written it on the next connection, then a ping
    /// confirms it. If that fails too, the outbox sends the item again.
    async fn await_next_stream(self: Arc<Self>, id: i64, mut token: Ticket) {
        let sent = token.wait(&[Fate::Written, Fate::Lost]).await == Fate::Written;
        if sent && self.ping().await {
            self.delivered(id).await;
        } else {
            lock(&self.flight).returned(id);
            self.wake.notify_one();
        }
    }

    async fn await_ack(self: Arc<Self>, id: i64, mut token: Ticket) {
        if token.wait(&[Fate::Taken, Fate::Lost]).await == Fate::Taken {
            self.delivered(id).await;
        } else {
            tracing::debug!(id, "a stanza was not acknowledged; it will be sent again");
            lock(&self.flight).returned(id);
            self.wake.notify_one();
        }
    }

    /// A roster change: done when the server answers (or refuses for good).
    async fn roster(&self, id: i64, jid: &str, add: bool) {
        let Ok(bare) = BareJid::new(jid) else {
            let _ = self.state.done(id).await;
            return;
        };
        lock(&self.flight).out.insert(id);
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
                self.delivered(id).await;
            }
            Err(error) => {
                tracing::debug!(jid = %bare, %error, "roster change not answered; will try again");
                lock(&self.flight).returned(id);
            }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_item_removed_while_the_outbox_is_read_is_not_sent_again() {
        let mut flight = Flight::default();
        flight.out.insert(7);
        flight.out.insert(8);
        // A reading begins; item 7's removal commits while it runs, so the reading lists it.
        flight.reading(true);
        flight.removed(7);
        assert!(!flight.fresh(7), "listed by a reading older than its removal");
        assert!(!flight.fresh(8), "still out");
        assert!(flight.fresh(9));
        assert_eq!(flight.len(), 1);
        // In a cluster a replica may still list 7 in the next reading.
        flight.reading(false);
        assert!(!flight.fresh(7), "remembered where readings lag");
        // On one node the next reading began after the removal: the store no longer lists 7.
        flight.reading(true);
        assert!(flight.fresh(7));
        flight.returned(8);
        assert!(flight.fresh(8), "not taken by the server: sent again");
        assert_eq!(flight.len(), 0);
    }
}
