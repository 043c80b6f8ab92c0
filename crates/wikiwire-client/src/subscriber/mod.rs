//! `Subscriber`: seed 1's "typical client" as a library. Join the channel, get what the local
//! cursor has not seen from history, then follow the channel live — merged by id, so no gap, no
//! duplicate, in order. Only trusted publishers count: the channel must be moderated (+m) and the
//! speaker voiced (and, with `trust`, named); with account-tag the account must agree.
//!
//! The live connection is only a signal and a fast path: history is the truth. A line that cannot
//! be decoded, a `more=1` line, a lost connection, or a live buffer that grows too big while
//! catching up all lead back to history from the last id handed out.
//!
//! History comes from the hub's HTTP API when its address is known and answers; otherwise, when
//! the server offers `draft/chathistory`, over the IRC connection itself (`CHATHISTORY AFTER`, in
//! pages of the server's limit), so a listener that can only reach IRC misses nothing either.
//! Over IRC an event too long for its line's tag cannot be had whole: it is skipped with a warning.
//!
//! | module | owns |
//! |---|---|
//! | this one | `Subscriber`: the state machine (connect, catch up, follow, fail and back off) and the merge by id |
//! | [`trust`] | who may speak for the channel, followed through mode and membership changes |
//! | [`live`] | the live session's task (the connection's one reader), decoding lines, sorting `chathistory` batches |
//! | [`history`] | the sources of history pages behind [`history::History`]: HTTP, and CHATHISTORY over IRC |

mod history;
mod live;
mod trust;

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use wikiwire_event::{Event, Filter, WikiDescription, api};
use wikiwire_irc_wire::IrcTarget;

use crate::connection::{Auth, ClientError, Connection, Login, TlsSettings};
use crate::cursor::CursorFile;
use history::{Entry, History, HttpHistory, IrcHistory};
use live::{HistoryRequest, Live, chathistory_limit, follow};
use trust::Trust;

#[doc(hidden)]
pub use live::fuzz_server_line;

const MAX_BACKOFF: Duration = Duration::from_secs(60);

#[derive(Clone, Debug)]
pub struct Options {
    pub irc: IrcTarget,
    /// The hub's HTTP address; found in a wikiwire channel's topic when not given.
    pub http: Option<String>,
    /// Where the cursor is kept between runs.
    pub state: Option<PathBuf>,
    /// Where to start when there is no saved cursor (0: everything); `None`: from now.
    pub since: Option<u64>,
    /// Publishers to trust; empty: the channel's voiced speakers.
    pub trust: Vec<String>,
    /// Narrows what is delivered (and what history is asked for).
    pub filter: Filter,
    pub nick: String,
    pub tls: TlsSettings,
}

#[derive(Debug, thiserror::Error)]
pub enum SubscriberError {
    #[error("not trusted: {0}")]
    Untrusted(String),
    #[error(
        "no history to catch up from: pass --http, or join a wikiwire channel (its topic has it) on a server that offers draft/chathistory"
    )]
    NoHttp,
    #[error("cursor file: {0}")]
    State(#[from] std::io::Error),
    #[error(transparent)]
    Irc(ClientError),
    #[error("HTTP: {0}")]
    Http(String),
    #[error("CHATHISTORY: {0}")]
    History(String),
}

impl SubscriberError {
    /// Errors that waiting will not cure.
    fn fatal(&self) -> bool {
        match self {
            SubscriberError::Untrusted(_) | SubscriberError::NoHttp | SubscriberError::State(_) => true,
            SubscriberError::Irc(error) => matches!(
                error,
                ClientError::Auth(_) | ClientError::Join { .. } | ClientError::Tls(_) | ClientError::Nick(_)
            ),
            SubscriberError::Http(_) | SubscriberError::History(_) => false,
        }
    }
}

struct Session {
    receiver: mpsc::UnboundedReceiver<Live>,
    backlog: Arc<AtomicUsize>,
    task: JoinHandle<()>,
    /// Set when history is read over IRC (HTTP unknown or unreachable).
    history: Option<IrcHistory>,
}

impl Drop for Session {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub struct Subscriber {
    options: Options,
    cursor_file: Option<CursorFile>,
    /// Every id up to here is handed out, queued in `ready`, or known not to be for us.
    horizon: u64,
    /// False until a start point is known (no saved cursor, no `since`: the log's end at join).
    started: bool,
    /// The channel was found trustworthy once: losing +m later (a restarted IRCd re-creates the
    /// channel, and services lock its modes again a moment later) is waited out, not fatal.
    trusted_once: bool,
    ready: VecDeque<Event>,
    catching_up: bool,
    /// The log's last id when this catch-up began (for progress reports).
    target: u64,
    /// The hub's HTTP API (history, single events, description blocks), when its address is known.
    hub: HttpHistory,
    /// What is delivered: the channel's filter (from the hub) narrowed by the caller's.
    query: Filter,
    session: Option<Session>,
    failures: u32,
    wikis: HashMap<String, WikiDescription>,
}

impl Subscriber {
    /// Reads the saved cursor, if any; nothing connects until `next`.
    pub fn open(options: Options) -> Result<Subscriber, SubscriberError> {
        let cursor_file = options.state.clone().map(CursorFile::new);
        let saved = match &cursor_file {
            Some(file) => file.load()?,
            None => None,
        };
        let start = saved.or(options.since);
        Ok(Subscriber {
            cursor_file,
            horizon: start.unwrap_or(0),
            started: start.is_some(),
            trusted_once: false,
            ready: VecDeque::new(),
            catching_up: true,
            target: 0,
            hub: HttpHistory::new(options.http.as_deref())?,
            query: options.filter.clone(),
            session: None,
            failures: 0,
            wikis: HashMap::new(),
            options,
        })
    }

    /// The wiki's description block, for rendering links.
    pub fn wiki(&self, name: &str) -> Option<&WikiDescription> {
        self.wikis.get(&name.to_ascii_lowercase())
    }

    /// Events still queued: how far behind the live end this subscriber is, roughly.
    pub fn queued(&self) -> usize {
        self.ready.len()
    }

    /// Whether history is being read (as opposed to following live).
    pub fn catching_up(&self) -> bool {
        self.catching_up || !self.ready.is_empty()
    }

    /// While history is read: how far (the id reached) of how far to go (the log's last id
    /// when catching up began). `None` when following live.
    pub fn progress(&self) -> Option<(u64, u64)> {
        (self.catching_up && self.target > 0).then_some((self.horizon.min(self.target), self.target))
    }

    /// The next event, in id order, each once. Reconnects and catches up by itself; returns an
    /// error only for what waiting cannot cure (authentication, trust, the cursor file).
    pub async fn next(&mut self) -> Result<Event, SubscriberError> {
        loop {
            if let Some(event) = self.ready.pop_front() {
                return Ok(event);
            }
            if self.session.is_none() {
                self.connect().await?;
                continue;
            }
            if self.catching_up {
                if let Err(error) = self.catch_up().await {
                    self.fail(error).await?;
                }
                continue;
            }
            let item = match self.session.as_mut() {
                Some(session) => session.receiver.recv().await,
                None => continue,
            };
            if let Some(session) = &self.session {
                session.backlog.fetch_sub(1, Ordering::Relaxed);
            }
            match item {
                Some(Live::Event(event)) => self.accept(*event),
                // Over IRC, history brings the event (as far as its line carries it).
                Some(Live::Fetch(id)) if id > self.horizon && self.irc_history() => self.catching_up = true,
                Some(Live::Fetch(id)) if id > self.horizon => match self.hub.event(id).await {
                    Ok(event) => self.accept(event),
                    Err(_) => self.catching_up = true,
                },
                Some(Live::Fetch(_)) => {}
                Some(Live::Poke) => self.catching_up = true,
                Some(Live::Untrusted(reason)) => self.fail(SubscriberError::Untrusted(reason)).await?,
                Some(Live::Lost(reason)) => {
                    self.fail(SubscriberError::Irc(ClientError::Closed(reason))).await?
                }
                None => {
                    self.fail(SubscriberError::Irc(ClientError::Closed("live session ended".into()))).await?
                }
            }
        }
    }

    fn irc_history(&self) -> bool {
        self.session.as_ref().is_some_and(|session| session.history.is_some())
    }

    /// Saves `id` as handled: a restart resumes after it. Atomic (rename), not fsynced per call.
    pub fn commit(&self, id: u64) -> Result<(), SubscriberError> {
        if let Some(file) = &self.cursor_file {
            file.save(id, &self.options.irc.to_string(), false)?;
        }
        Ok(())
    }

    /// Saves `id` durably (fsync), for shutdown.
    pub fn commit_durably(&self, id: u64) -> Result<(), SubscriberError> {
        if let Some(file) = &self.cursor_file {
            file.save(id, &self.options.irc.to_string(), true)?;
        }
        Ok(())
    }

    fn accept(&mut self, event: Event) {
        if event.id > self.horizon {
            self.horizon = event.id;
            if self.query.matches(&event) {
                self.ready.push_back(event);
            }
        }
    }

    /// Drops the session after a transient failure and waits before the next attempt; fatal
    /// errors are returned.
    async fn fail(&mut self, error: SubscriberError) -> Result<(), SubscriberError> {
        let passing = self.trusted_once && matches!(error, SubscriberError::Untrusted(_));
        if error.fatal() && !passing {
            return Err(error);
        }
        self.session = None;
        let delay = Duration::from_secs(1u64 << self.failures.min(6)).min(MAX_BACKOFF);
        self.failures += 1;
        tracing::warn!(%error, retry_in = ?delay, "subscriber lost its connection");
        tokio::time::sleep(delay).await;
        Ok(())
    }

    async fn connect(&mut self) -> Result<(), SubscriberError> {
        loop {
            match self.try_connect().await {
                Ok(()) => return Ok(()),
                Err(error) => self.fail(error).await?,
            }
        }
    }

    async fn try_connect(&mut self) -> Result<(), SubscriberError> {
        let login = Login {
            nick: self.options.nick.clone(),
            user: "wikiwire".into(),
            realname: "wikiwire listen".into(),
            auth: Auth::None,
        };
        let wanted = ["message-tags", "account-tag", "server-time", "batch", "draft/chathistory"];
        let irc = self.options.irc.clone();
        let mut connection =
            Connection::open(&irc, &login, &wanted, &self.options.tls).await.map_err(SubscriberError::Irc)?;
        let joined = connection.join(&irc.channel, irc.key.as_deref()).await.map_err(SubscriberError::Irc)?;
        // Seed 1: "clients should check the mode of the channel".
        if !joined.modes.trim_start_matches('+').contains('m') {
            return Err(SubscriberError::Untrusted(format!(
                "{} is not moderated (modes {}): anyone could speak there",
                irc.channel, joined.modes
            )));
        }
        self.trusted_once = true;
        if self.hub.base.is_none() {
            self.hub.base = joined.topic.as_deref().and_then(http_from_topic);
        }
        let trust = Trust::new(&self.options.trust, &joined, connection.has_cap("account-tag"));
        let history_limit = chathistory_limit(&connection);
        let over_http = match self.hub.base.clone() {
            Some(base) => match self.read_hub(&base).await {
                Ok(()) => true,
                Err(error) if history_limit.is_some() => {
                    tracing::warn!(%error, "the hub's HTTP API does not answer: catching up over IRC");
                    false
                }
                Err(error) => return Err(error),
            },
            None if history_limit.is_some() => false,
            None => return Err(SubscriberError::NoHttp),
        };
        let (sender, receiver) = mpsc::unbounded_channel();
        let backlog = Arc::new(AtomicUsize::new(0));
        let (history, requests) = match history_limit.filter(|_| !over_http) {
            Some(limit) => {
                let (history, task) = IrcHistory::new(limit);
                (Some(history), Some(task))
            }
            None => (None, None),
        };
        let task = tokio::spawn(follow(
            connection,
            irc.channel.clone(),
            trust,
            sender,
            Arc::clone(&backlog),
            requests,
        ));
        self.session = Some(Session { receiver, backlog, task, history });
        if !over_http {
            // The channel's filter is applied by the server; ours narrows further.
            self.query = self.options.filter.clone();
            let latest = match self.session.as_mut().and_then(|session| session.history.as_mut()) {
                Some(history) => history.ask(HistoryRequest::Latest).await?,
                None => Vec::new(),
            };
            self.target = latest.iter().rev().find_map(Live::id).unwrap_or(0);
        }
        if !self.started {
            self.horizon = self.target;
            self.started = true;
        }
        self.catching_up = true;
        self.failures = 0;
        match &self.hub.base {
            Some(base) if over_http => {
                tracing::info!(channel = %irc.channel, http = %base, after = self.horizon, "subscribed")
            }
            _ => {
                tracing::info!(channel = %irc.channel, after = self.horizon, "subscribed (history over IRC)")
            }
        }
        Ok(())
    }

    /// What the hub's HTTP API tells a new session: the channel's filter, the wikis' description
    /// blocks (once), the log's last id.
    async fn read_hub(&mut self, base: &str) -> Result<(), SubscriberError> {
        let channel = &self.options.irc.channel;
        self.query = match self.hub.get_json(&api::channel(base, channel)).await {
            Ok(Some(channel)) => {
                let text = channel["filter"].as_str().unwrap_or("");
                let filter = Filter::parse(text)
                    .map_err(|error| SubscriberError::Http(format!("channel filter: {error}")))?;
                filter.and(&self.options.filter)
            }
            // Not a wikiwire channel (a relay elsewhere): the caller's filter says what it carries.
            Ok(None) => self.options.filter.clone(),
            Err(error) => return Err(error),
        };
        // Description blocks, once, for links in rendered lines.
        let list = if self.wikis.is_empty() { self.hub.get_json(&api::wikis(base)).await? } else { None };
        for value in list.iter().flat_map(|list| list["wikis"].as_array().into_iter().flatten()) {
            if let Ok(wiki) = serde_json::from_value::<WikiDescription>(value.clone()) {
                self.wikis.insert(wiki.name.to_ascii_lowercase(), wiki);
            }
        }
        let health = self.hub.get_json(&format!("{base}/healthz")).await?.unwrap_or_default();
        self.target = health["last_id"].as_u64().unwrap_or(0);
        Ok(())
    }

    /// One page of history after the horizon, from the IRC connection when it reads history,
    /// else from the hub's HTTP API.
    async fn catch_up(&mut self) -> Result<(), SubscriberError> {
        let page = match self.session.as_mut().and_then(|session| session.history.as_mut()) {
            Some(irc) => irc.page(self.horizon, &self.query).await?,
            None => self.hub.page(self.horizon, &self.query).await?,
        };
        for entry in page.entries {
            match entry {
                Entry::Event(event) => self.accept(*event),
                Entry::TooLong(id) if id > self.horizon => {
                    tracing::warn!(
                        id,
                        "event {id} is too long for an IRC line and HTTP is unreachable: skipped"
                    );
                    self.horizon = id;
                }
                Entry::TooLong(_) => {}
            }
        }
        match page.next {
            Some(next) => self.horizon = self.horizon.max(next),
            None => self.catching_up = false,
        }
        Ok(())
    }
}

/// The hub's address from a wikiwire topic (`... | description: http://hub/api/v1/wikis/X`).
fn http_from_topic(topic: &str) -> Option<String> {
    let start = topic.find("http://").or_else(|| topic.find("https://"))?;
    let url = topic[start..].split_whitespace().next()?;
    api::hub_of(url).map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_topic_gives_the_hub() {
        assert_eq!(
            http_from_topic("Recent changes of W | description: http://hub.example:8080/api/v1/wikis/W")
                .as_deref(),
            Some("http://hub.example:8080")
        );
        assert_eq!(http_from_topic("welcome to #chan"), None);
    }
}
