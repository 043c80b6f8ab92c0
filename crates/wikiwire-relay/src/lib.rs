//! A relay (SPEC §6): the hub connects to another IRC network as a client and posts the events
//! of a filter to a channel there, paced, resuming after the last event it delivered.
//!
//! Delivery is confirmed before the position moves: after each PRIVMSG the relay sends a PING,
//! and servers answer commands in order, so the PONG means the line was taken. The position
//! (`Store::cursor`, named after the relay) therefore survives an outage of the network or a
//! restart of the hub; only the one line in flight when a connection broke can be sent twice.
//! When the other end is a wikiwire hub, the relay publishes instead: packed events in the
//! submission form with an idempotency key, so even that line is not stored twice.
//!
//! A relay runs once even when every node of a cluster configures it: it holds the lease
//! `relay.<name>` while it runs ([`wikiwire_store::Lease`]), checks it before every line, and
//! moves its cursor only from the revision it wrote last. Taking over, a node first claims the
//! cursor (writes it again), so a deposed holder that wakes up cannot move it: its write fails
//! and it stops. On one node the lease is granted at once; the code path is the same.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use wikiwire_client::connection::SPEAKING_PREFIXES;
use wikiwire_client::{Auth, ClientError, Connection, Login, TlsSettings};
use wikiwire_event::{Event, FieldError, Filter, Format, line, packed};
use wikiwire_hub::metrics::GaugeGuard;
use wikiwire_hub::{FollowError, Hub, Item, Lag};
use wikiwire_irc_wire::IrcTarget;
use wikiwire_irc_wire::numeric::code;
use wikiwire_irc_wire::wire::{Line, Request};
use wikiwire_store::{Lease, StoreError};

pub mod config;

pub use config::{Config, RelayAuth};

/// Most events in one window to a wikiwire hub.
const WINDOW: usize = 100;
/// How long the server may take to answer the PING after a line.
const ACK_TIMEOUT: Duration = Duration::from_secs(60);
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// How long, after joining a moderated channel, services have to voice us.
const VOICE_WAIT: Duration = Duration::from_secs(10);
/// A session that lasted this long resets the backoff.
const STABLE: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
enum RelayError {
    #[error(transparent)]
    Irc(#[from] ClientError),
    #[error("the store: {0}")]
    Store(#[from] StoreError),
    #[error("following the log: {0}")]
    Follow(#[from] FollowError),
    #[error("kicked from {0}")]
    Kicked(String),
    #[error("cannot send to {channel}: {reason}")]
    CannotSend { channel: String, reason: String },
    #[error("no acknowledgement from the server within {0:?}")]
    NoAck(Duration),
    #[error("this node no longer holds the relay's lease")]
    LeaseLost,
}

/// A relay the configuration describes but that cannot be made (`config check` refuses these
/// first): shown as the URL's or the filter's own error.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// `IrcTarget::parse` says why in words; it has no error of its own to keep.
    #[error("{0}")]
    Url(String),
    #[error(transparent)]
    Filter(#[from] FieldError),
}

pub struct Relay {
    hub: Arc<Hub>,
    config: Config,
    target: IrcTarget,
    filter: Filter,
}

impl Relay {
    /// From checked configuration.
    pub fn new(hub: Arc<Hub>, config: Config) -> Result<Relay, SetupError> {
        let target = IrcTarget::parse(&config.url).map_err(SetupError::Url)?;
        let filter = Filter::parse(&config.filter)?;
        Ok(Relay { hub, config, target, filter })
    }

    /// Relays until the hub shuts down: takes the relay's lease, then runs sessions (reconnecting
    /// with backoff) for as long as it holds it; a lost lease is waited for again.
    pub async fn run(self) {
        let shutdown = self.hub.shutdown().clone();
        let leases = self.hub.store().leases();
        // The cursor's name ("relay:<url>") names the job too.
        let lease_name = self.config.cursor_name();
        loop {
            let Some(lease) = leases.acquire(&lease_name, &shutdown).await else { return };
            tracing::info!(relay = %self.target, lease = %lease_name, "this node runs the relay");
            self.hold(&lease, &shutdown).await;
            if shutdown.is_cancelled() {
                return;
            }
            tracing::warn!(relay = %self.target, "the relay's lease was lost: this node stopped relaying");
        }
    }

    /// Sessions while the lease holds.
    async fn hold(&self, lease: &Lease, shutdown: &CancellationToken) {
        let mut failures = 0u32;
        loop {
            let started = Instant::now();
            let result = self.session(lease, shutdown).await;
            if shutdown.is_cancelled() || !lease.valid() || matches!(result, Err(RelayError::LeaseLost)) {
                return;
            }
            if started.elapsed() > STABLE {
                failures = 0;
            }
            let delay = Duration::from_secs(1u64 << failures.min(6)).min(MAX_BACKOFF);
            failures += 1;
            self.hub.metrics().relay_failures.inc();
            match result {
                Ok(()) => return,
                Err(error) => {
                    tracing::warn!(relay = %self.target, %error, retry_in = ?delay, "relay session ended")
                }
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = lease.lost() => return,
                _ = tokio::time::sleep(delay) => {}
            }
        }
    }

    fn login(&self) -> Login {
        let account = self.config.account.clone().unwrap_or_else(|| self.config.nick.clone());
        let password = self.config.password.clone().unwrap_or_default();
        let auth = match self.config.auth() {
            RelayAuth::Sasl => Auth::Sasl { account, password },
            RelayAuth::Pass => Auth::Pass(password),
            RelayAuth::Nickserv => Auth::NickServ { account, password },
            RelayAuth::None => Auth::None,
        };
        Login {
            nick: self.config.nick.clone(),
            user: "wikiwire".into(),
            realname: "wikiwire relay".into(),
            auth,
        }
    }

    async fn session(&self, lease: &Lease, shutdown: &CancellationToken) -> Result<(), RelayError> {
        let tls = TlsSettings { ca_file: self.config.ca_file.clone() };
        // Asked for only where offered; a wikiwire hub offers it, and windows need it.
        let mut connection =
            Connection::open(&self.target, &self.login(), &["labeled-response"], &tls).await?;
        if matches!(self.config.auth(), RelayAuth::Nickserv) {
            // Services may need a moment before a channel that wants identified users lets us in.
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
        let channel = self.target.channel.clone();
        let joined = connection.join(&channel, self.target.key.as_deref()).await?;
        // Listeners trust only a moderated channel (SPEC §6): moderate it if we may.
        let operator = joined
            .members
            .iter()
            .any(|(prefixes, nick)| prefixes.contains('@') && nick.eq_ignore_ascii_case(&connection.nick));
        if operator && !joined.modes.contains('m') {
            connection.send(&Line::new("MODE").param(channel.clone()).param("+mnt")).await?;
        }
        // In a moderated channel of a network with services, ChanServ voices us a moment after
        // we join: speaking before that would only be refused.
        let speaking = joined.members.iter().any(|(prefixes, nick)| {
            nick.eq_ignore_ascii_case(&connection.nick)
                && prefixes.chars().any(|c| SPEAKING_PREFIXES.contains(c))
        });
        if joined.modes.contains('m') && !speaking && !connection.is_wikiwire() {
            wait_for_voice(&mut connection, &channel).await?;
        }
        // What the others see before our text: `:nick!user@host PRIVMSG #channel :`.
        let mask = joined
            .mask
            .clone()
            .unwrap_or_else(|| format!("{}!~wikiwire@{}", connection.nick, "h".repeat(63)));
        let budget = 510usize.saturating_sub(1 + mask.len() + " PRIVMSG ".len() + channel.len() + 2);
        let publishing = connection.is_wikiwire();
        let name = self.config.cursor_name();
        let store = self.hub.store();
        // Claim the cursor: from here on, a node that ran the relay before cannot move it.
        let (after, mut revision) = match store.cursor(&name).await? {
            Some(cursor) => (cursor.id, self.move_cursor(lease, cursor.id, cursor.revision).await?),
            None => {
                // A new relay starts at the end of the log; from then on nothing is missed.
                let last = store.bounds().await?.last_id;
                (last, self.move_cursor(lease, last, 0).await?)
            }
        };
        let mut follower = self.hub.follow(Some(after), self.filter.clone(), Lag::Resume).await?;
        let _connected = GaugeGuard::new(Arc::clone(self.hub.metrics()), |metrics| &metrics.relay_connected);
        tracing::info!(relay = %self.target, nick = %connection.nick, after, publishing, "relay joined");
        let interval = Duration::from_secs_f64(1.0 / self.config.rate);
        // To a wikiwire hub, what is waiting goes in windows: the other hub commits a window's
        // lines together and answers each by its label; `rate` then paces windows, not lines.
        let labelled = publishing && connection.has_cap("labeled-response");
        let window = if labelled { WINDOW } else { 1 };
        let mut next_send = Instant::now();
        let mut held: Option<Item> = None;
        loop {
            let item = match held.take() {
                Some(item) => item,
                None => tokio::select! {
                _ = shutdown.cancelled() => {
                    let _ = connection.send(&Line::new("QUIT").text("the hub is shutting down")).await;
                    return Ok(());
                }
                _ = lease.lost() => {
                    let _ = connection.send(&Line::new("QUIT").text("another hub node runs this relay now")).await;
                    return Err(RelayError::LeaseLost);
                }
                    item = follower.next() => item?,
                    message = connection.next() => {
                        observe(&message?, &channel, &connection.nick)?;
                        continue;
                    }
                },
            };
            let event = match item {
                Item::Event(event) => event,
                Item::Gap { from, to } => {
                    tracing::warn!(relay = %self.target, from, to, "events removed by retention, or unreadable, before the relay sent them");
                    revision = self.move_cursor(lease, to, revision).await?;
                    continue;
                }
            };
            // What else is already waiting, up to a window (a gap waits for the next turn).
            let mut events = vec![event];
            while events.len() < window {
                match follower.next().now_or_never() {
                    Some(Ok(Item::Event(event))) => events.push(event),
                    Some(Ok(gap)) => {
                        held = Some(gap);
                        break;
                    }
                    Some(Err(error)) => return Err(error.into()),
                    None => break,
                }
            }
            // Paced: the network must not take us for a flood.
            while Instant::now() < next_send {
                tokio::select! {
                    _ = tokio::time::sleep_until(next_send) => {}
                    message = connection.next() => observe(&message?, &channel, &connection.nick)?,
                }
            }
            let lines = Lines { events: &events, channel: &channel, budget, publishing, labelled };
            self.deliver(&mut connection, lease, lines).await?;
            next_send = Instant::now() + interval;
            let last = events.last().expect("a window holds an event").id;
            revision = self.move_cursor(lease, last, revision).await?;
            self.hub.metrics().relay_lines.add(events.len() as u64);
        }
    }

    /// An event as a publisher's line for another wikiwire hub: the submission form, keyed.
    fn submission(&self, event: &Event, budget: usize) -> String {
        // Another hub assigns its own id; the key makes a repeat harmless.
        let mut submission = event.clone();
        submission.key.get_or_insert_with(|| format!("relayed:{}", event.id));
        let packed = packed::encode_submission_within(&submission, budget);
        if !packed.complete {
            tracing::warn!(relay = %self.target, event = event.id, "event too long for one line: relayed without its optional fields");
        }
        packed.text
    }

    /// Moves the cursor from the revision this holder wrote last. A line already delivered is
    /// worth waiting for: while the lease holds, a log that is out of reach for a moment (a NATS
    /// failover) is tried again rather than the session ended, which would send the line twice.
    /// Another writer means another node runs the relay now: stop.
    async fn move_cursor(&self, lease: &Lease, id: u64, revision: u64) -> Result<u64, RelayError> {
        let store = self.hub.store();
        let name = self.config.cursor_name();
        let mut pause = Duration::from_millis(100);
        loop {
            match store.set_cursor(&name, id, revision).await {
                Ok(revision) => return Ok(revision),
                Err(StoreError::Conflict(reason)) => {
                    tracing::warn!(relay = %self.target, %reason, "the relay's cursor was moved by another node");
                    return Err(RelayError::LeaseLost);
                }
                Err(StoreError::Unavailable { reason, .. }) if lease.valid() => {
                    tracing::debug!(relay = %self.target, %reason, "the cursor cannot be written yet");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(1));
                }
                Err(error) => return Err(error.into()),
            }
        }
    }

    /// Sends events (in id order) and waits until the other side has taken them: their lines,
    /// then one PING; servers answer in order, so the PONG means every line before it was
    /// answered. Labelled lines (a window to a wikiwire hub) get their FAILs placed by label;
    /// otherwise a FAIL stands for the one line sent. A line refused for good is skipped (logged);
    /// from the first line the other side asks to send later, the rest is sent again after a
    /// pause (to a wikiwire hub the keys make a repeat of a line it took harmless).
    async fn deliver(
        &self,
        connection: &mut Connection,
        lease: &Lease,
        lines: Lines<'_>,
    ) -> Result<(), RelayError> {
        let Lines { events, channel, budget, publishing, labelled } = lines;
        let texts: Vec<String> = events.iter().map(|event| self.text(event, budget, publishing)).collect();
        let mut start = 0;
        while start < events.len() {
            // The last moment to find out that another node took over: nothing is sent after it.
            if !lease.valid() {
                let _ =
                    connection.send(&Line::new("QUIT").text("another hub node runs this relay now")).await;
                return Err(RelayError::LeaseLost);
            }
            let window = &events[start..];
            for (event, text) in window.iter().zip(&texts[start..]) {
                let mut line = Line::new("PRIVMSG");
                if labelled {
                    line = line.tag("label", Some(format!("ww{}", event.id)));
                }
                connection.send(&line.param(channel).text(text.clone())).await?;
            }
            let token = format!("wwrelay{}", window[window.len() - 1].id);
            connection.send(&Line::new("PING").text(token.clone())).await?;
            let Answers { mut by_label, unlabelled } = self.acknowledged(connection, channel, &token).await?;
            let mut outcomes: Vec<Outcome> =
                window.iter().map(|event| by_label.remove(&event.id).unwrap_or(Outcome::Taken)).collect();
            if let Some(outcome) = unlabelled {
                outcomes[0] = match (window.len(), outcome) {
                    (1, outcome) => outcome,
                    // It cannot be placed: the whole window is sent again, later.
                    (_, Outcome::Refused(reason) | Outcome::Later(reason)) => {
                        Outcome::Later(format!("a refusal without a label: {reason}"))
                    }
                    (_, Outcome::Taken) => Outcome::Taken,
                };
            }
            let mut later = None;
            for (index, (event, outcome)) in window.iter().zip(outcomes).enumerate() {
                match outcome {
                    Outcome::Taken => {}
                    Outcome::Refused(reason) => {
                        tracing::error!(relay = %self.target, event = event.id, %reason, "the other hub refused the event; skipping it");
                    }
                    Outcome::Later(reason) => {
                        tracing::warn!(relay = %self.target, event = event.id, %reason, "the other hub asks to wait");
                        later = Some(index);
                        break;
                    }
                }
            }
            let Some(index) = later else { return Ok(()) };
            start += index;
            tokio::time::sleep(Duration::from_secs(5)).await;
        }
        Ok(())
    }

    /// The line for an event: a publisher's submission to another wikiwire hub, or a rendered
    /// line in the relay's format.
    fn text(&self, event: &Event, budget: usize, publishing: bool) -> String {
        if publishing {
            return self.submission(event, budget);
        }
        let wiki = self.hub.publishers().wiki(&event.wiki);
        let show_wiki = self.filter.single_wiki().is_none() && self.config.format != Format::Packed;
        line::render(event, wiki, self.config.format, show_wiki, budget)
    }

    /// The answers up to the PONG of `token`: FAILs by the event id of their label (a labelled
    /// answer of several lines comes in a batch, placed through the batch's reference), and the
    /// last FAIL without a label. A line with no FAIL was taken.
    async fn acknowledged(
        &self,
        connection: &mut Connection,
        channel: &str,
        token: &str,
    ) -> Result<Answers, RelayError> {
        let deadline = Instant::now() + ACK_TIMEOUT;
        let mut answers = Answers { by_label: HashMap::new(), unlabelled: None };
        let mut batches: HashMap<String, String> = HashMap::new();
        loop {
            let message = tokio::time::timeout_at(deadline, connection.next())
                .await
                .map_err(|_| RelayError::NoAck(ACK_TIMEOUT))??;
            match message.verb.as_str() {
                "PONG" if message.params.last().is_some_and(|last| last == token) => return Ok(answers),
                "BATCH" => {
                    if let (Some(reference), Some(label)) =
                        (message.param(0).and_then(|r| r.strip_prefix('+')), message.tag("label"))
                    {
                        batches.insert(reference.to_owned(), label.to_owned());
                    }
                }
                "FAIL" if message.param(0) == Some("PRIVMSG") => {
                    let reason = message.params.last().cloned().unwrap_or_default();
                    let outcome = match message.param(1) {
                        Some("RATE_LIMITED" | "TEMPORARILY_UNAVAILABLE") => Outcome::Later(reason),
                        _ => Outcome::Refused(reason),
                    };
                    let label = message
                        .tag("label")
                        .or_else(|| batches.get(message.tag("batch")?).map(String::as_str));
                    match label.and_then(|label| label.strip_prefix("ww")?.parse::<u64>().ok()) {
                        Some(id) => {
                            answers.by_label.insert(id, outcome);
                        }
                        None => answers.unlabelled = Some(outcome),
                    }
                }
                code::ERR_CANNOTSENDTOCHAN
                    if message.param(1).is_some_and(|target| target.eq_ignore_ascii_case(channel)) =>
                {
                    return Err(RelayError::CannotSend {
                        channel: channel.to_owned(),
                        reason: message.params.last().cloned().unwrap_or_default(),
                    });
                }
                _ => observe(&message, channel, &connection.nick)?,
            }
        }
    }
}

/// What `deliver` sends: events, where, within what length, and how.
struct Lines<'a> {
    events: &'a [Arc<Event>],
    channel: &'a str,
    budget: usize,
    /// To a wikiwire hub: submissions, not rendered text.
    publishing: bool,
    /// Each line labelled with its event (the other side offers labeled-response).
    labelled: bool,
}

/// The other side's answers to the lines before a PONG.
struct Answers {
    by_label: HashMap<u64, Outcome>,
    unlabelled: Option<Outcome>,
}

enum Outcome {
    Taken,
    Refused(String),
    Later(String),
}

/// Reacts to what the network says meanwhile: a KICK ends the session (rejoin after backoff).
/// Waits (a while) until someone — services, mostly — gives us voice or better in `channel`.
async fn wait_for_voice(connection: &mut Connection, channel: &str) -> Result<(), RelayError> {
    let deadline = Instant::now() + VOICE_WAIT;
    loop {
        let Ok(message) = tokio::time::timeout_at(deadline, connection.next()).await else {
            tracing::warn!(%channel, "not voiced in a moderated channel: lines will be refused until we are");
            return Ok(());
        };
        let message = message?;
        observe(&message, channel, &connection.nick)?;
        if gives_voice(&message, channel, &connection.nick) {
            return Ok(());
        }
    }
}

/// Whether a MODE line gives `nick` voice or better in `channel`.
fn gives_voice(message: &Request, channel: &str, nick: &str) -> bool {
    message.verb == "MODE"
        && message.param(0).is_some_and(|target| target.eq_ignore_ascii_case(channel))
        && message.mode_changes().into_iter().any(|(adding, mode, argument)| {
            adding
                && "qaohv".contains(mode)
                && argument.is_some_and(|target| target.eq_ignore_ascii_case(nick))
        })
}

fn observe(message: &Request, channel: &str, nick: &str) -> Result<(), RelayError> {
    let kicked = message.verb == "KICK"
        && message.param(0).is_some_and(|target| target.eq_ignore_ascii_case(channel))
        && message.param(1).is_some_and(|target| target.eq_ignore_ascii_case(nick));
    if kicked {
        return Err(RelayError::Kicked(channel.to_owned()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::gives_voice;
    use wikiwire_irc_wire::wire::Request;

    #[test]
    fn voice_is_read_from_mode_lines() {
        let voiced = |line: &str| gives_voice(&Request::parse(line).unwrap(), "#feed", "wikirelay");
        assert!(voiced(":ChanServ!s@h MODE #feed +v :wikirelay"));
        assert!(voiced(":op!o@h MODE #FEED +bo x!*@* wikirelay"));
        assert!(!voiced(":op!o@h MODE #feed +v someone"));
        assert!(!voiced(":op!o@h MODE #feed -v wikirelay"));
        assert!(!voiced(":op!o@h MODE #other +v wikirelay"));
        assert!(!voiced(":op!o@h MODE #feed +kv wikirelay other"), "the key takes the first argument");
    }
}
