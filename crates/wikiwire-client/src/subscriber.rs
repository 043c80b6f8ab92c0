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

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use wikiwire_event::{Event, Filter, WikiDescription, packed};
use wikiwire_irc_wire::wire::{Line, Request};

use crate::connection::{Auth, ClientError, Connection, Joined, Login, SPEAKING_PREFIXES, TlsSettings};
use crate::cursor::CursorFile;
use wikiwire_irc_wire::IrcTarget;

/// Live lines buffered while catching up, at most; past it the live session is dropped and
/// history takes over.
const LIVE_BACKLOG: usize = 100_000;
/// Events per history request (over IRC, at most the server's CHATHISTORY limit).
const PAGE: usize = 1000;
/// A CHATHISTORY answer may take this long.
const HISTORY_WAIT: Duration = Duration::from_secs(30);
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

/// What the live session reports (and what history lines decode to).
enum Live {
    Event(Box<Event>),
    /// An event too long for its line: fetch it by id.
    Fetch(u64),
    /// A trusted line without an id (a text channel without message-tags): ask history.
    Poke,
    Lost(String),
    Untrusted(String),
}

impl Live {
    /// The event id a line carries.
    fn id(&self) -> Option<u64> {
        match self {
            Live::Event(event) => Some(event.id),
            Live::Fetch(id) => Some(*id),
            _ => None,
        }
    }
}

/// A history request over IRC, answered with one [`HistoryPage`].
#[derive(Clone, Copy, Debug)]
enum HistoryRequest {
    /// `CHATHISTORY AFTER <channel> msgid=<id> <limit>`.
    After(u64, usize),
    /// `CHATHISTORY LATEST <channel> * 1`: where the channel's log ends.
    Latest,
}

/// One `chathistory` batch: its lines (decoded like live ones), how many there were.
type HistoryPage = Result<Vec<Live>, String>;

/// History over the IRC connection: requests go to the session's task, pages come back.
struct IrcHistory {
    requests: mpsc::UnboundedSender<HistoryRequest>,
    pages: mpsc::UnboundedReceiver<HistoryPage>,
    /// Lines per request: ours, within the server's limit.
    limit: usize,
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
    http: reqwest::Client,
    base: Option<String>,
    query: Filter,
    session: Option<Session>,
    failures: u32,
    wikis: HashMap<String, WikiDescription>,
    /// The next page of history, asked for while the current one is handed out: the hub reads
    /// and sends it while the caller handles events. Tagged with the `since` it was asked with.
    prefetch: Option<(u64, tokio::task::JoinHandle<Result<Page, SubscriberError>>)>,
}

/// A page of `GET /api/v1/events`: events in id order, and where the next page starts (none:
/// this was the end of the log).
#[derive(serde::Deserialize)]
struct Page {
    events: Vec<serde_json::Map<String, serde_json::Value>>,
    next: Option<u64>,
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
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .connect_timeout(Duration::from_secs(5))
                .build()
                .map_err(|error| SubscriberError::Http(error.to_string()))?,
            base: options.http.as_deref().map(|url| url.trim_end_matches('/').to_owned()),
            query: options.filter.clone(),
            session: None,
            failures: 0,
            wikis: HashMap::new(),
            prefetch: None,
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
                Some(Live::Fetch(id)) if id > self.horizon => match self.fetch(id).await {
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
        if self.base.is_none() {
            self.base = joined.topic.as_deref().and_then(http_from_topic);
        }
        let trust = Trust::new(&self.options.trust, &joined, connection.has_cap("account-tag"));
        let history_limit = chathistory_limit(&connection);
        let over_http = match self.base.clone() {
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
                let (requests, asked) = mpsc::unbounded_channel();
                let (answers, pages) = mpsc::unbounded_channel();
                (Some(IrcHistory { requests, pages, limit }), Some((asked, answers)))
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
            let latest = self.history(HistoryRequest::Latest).await?;
            self.target = latest.iter().rev().find_map(Live::id).unwrap_or(0);
        }
        if !self.started {
            self.horizon = self.target;
            self.started = true;
        }
        self.catching_up = true;
        self.failures = 0;
        match &self.base {
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
        self.query =
            match self.get_json(&format!("{base}/api/v1/channels/{}", channel.replace('#', "%23"))).await {
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
        let list =
            if self.wikis.is_empty() { self.get_json(&format!("{base}/api/v1/wikis")).await? } else { None };
        for value in list.iter().flat_map(|list| list["wikis"].as_array().into_iter().flatten()) {
            if let Ok(wiki) = serde_json::from_value::<WikiDescription>(value.clone()) {
                self.wikis.insert(wiki.name.to_ascii_lowercase(), wiki);
            }
        }
        let health = self.get_json(&format!("{base}/healthz")).await?.unwrap_or_default();
        self.target = health["last_id"].as_u64().unwrap_or(0);
        Ok(())
    }

    /// One page of history after the horizon, over HTTP or IRC.
    async fn catch_up(&mut self) -> Result<(), SubscriberError> {
        if self.irc_history() {
            return self.catch_up_over_irc().await;
        }
        self.catch_up_over_http().await
    }

    /// One page of `CHATHISTORY AFTER`: a short page is the end of the channel's log.
    async fn catch_up_over_irc(&mut self) -> Result<(), SubscriberError> {
        let limit =
            self.session.as_ref().and_then(|session| session.history.as_ref()).map_or(PAGE, |h| h.limit);
        let lines = self.history(HistoryRequest::After(self.horizon, limit)).await?;
        let complete = lines.len() < limit;
        for line in lines {
            match line {
                Live::Event(event) => self.accept(*event),
                Live::Fetch(id) if id > self.horizon => {
                    tracing::warn!(
                        id,
                        "event {id} is too long for an IRC line and HTTP is unreachable: skipped"
                    );
                    self.horizon = id;
                }
                _ => {}
            }
        }
        if complete {
            self.catching_up = false;
        }
        Ok(())
    }

    /// Asks the session's task for history and waits for the batch.
    async fn history(&mut self, request: HistoryRequest) -> Result<Vec<Live>, SubscriberError> {
        let lost = || SubscriberError::History("the connection was lost".into());
        let history = self.session.as_mut().and_then(|session| session.history.as_mut()).ok_or_else(lost)?;
        history.requests.send(request).map_err(|_| lost())?;
        match tokio::time::timeout(HISTORY_WAIT, history.pages.recv()).await {
            Ok(Some(page)) => page.map_err(SubscriberError::History),
            Ok(None) => Err(lost()),
            Err(_) => Err(SubscriberError::History("no answer in time".into())),
        }
    }

    /// One page of `GET /api/v1/events` after the horizon; asks for the page after it before
    /// returning.
    async fn catch_up_over_http(&mut self) -> Result<(), SubscriberError> {
        let since = self.horizon;
        let page = match self.prefetch.take() {
            Some((asked, task)) if asked == since => {
                task.await.map_err(|error| SubscriberError::Http(format!("history: {error}")))??
            }
            other => {
                if let Some((_, task)) = other {
                    task.abort();
                }
                fetch_page(self.http.clone(), self.page_url(since)?).await?
            }
        };
        if let Some(next) = page.next {
            let task = tokio::spawn(fetch_page(self.http.clone(), self.page_url(next.max(since))?));
            self.prefetch = Some((next.max(since), task));
        }
        for object in page.events {
            let event = Event::from_json_object(object)
                .map_err(|error| SubscriberError::Http(format!("history: {error}")))?;
            self.accept(event);
        }
        match page.next {
            Some(next) => self.horizon = self.horizon.max(next),
            None => self.catching_up = false,
        }
        Ok(())
    }

    fn page_url(&self, since: u64) -> Result<String, SubscriberError> {
        let base = self.base.as_deref().ok_or(SubscriberError::NoHttp)?;
        let mut url = format!("{base}/api/v1/events?since={since}&limit={PAGE}");
        if !self.query.is_all() {
            url.push('&');
            url.push_str(&self.query.to_string());
        }
        Ok(url)
    }

    async fn fetch(&self, id: u64) -> Result<Event, SubscriberError> {
        let base = self.base.clone().ok_or(SubscriberError::NoHttp)?;
        let value = self
            .get_json(&format!("{base}/api/v1/events/{id}"))
            .await?
            .ok_or_else(|| SubscriberError::Http(format!("event {id} not found")))?;
        Event::from_json(&value.to_string())
            .map_err(|error| SubscriberError::Http(format!("event {id}: {error}")))
    }

    /// GET as JSON; `None` for 404.
    async fn get_json(&self, url: &str) -> Result<Option<serde_json::Value>, SubscriberError> {
        get(&self.http, url).await
    }
}

/// GET and read as JSON; `None` for 404.
async fn get<T: serde::de::DeserializeOwned>(
    http: &reqwest::Client,
    url: &str,
) -> Result<Option<T>, SubscriberError> {
    let response =
        http.get(url).send().await.map_err(|error| SubscriberError::Http(format!("{url}: {error}")))?;
    if response.status() == reqwest::StatusCode::NOT_FOUND {
        return Ok(None);
    }
    if !response.status().is_success() {
        return Err(SubscriberError::Http(format!("{url}: {}", response.status())));
    }
    response.json().await.map(Some).map_err(|error| SubscriberError::Http(format!("{url}: {error}")))
}

async fn fetch_page(http: reqwest::Client, url: String) -> Result<Page, SubscriberError> {
    get(&http, &url).await?.ok_or_else(|| SubscriberError::Http(format!("{url}: not found")))
}

/// The hub's address from a wikiwire topic (`... | description: http://hub/api/v1/wikis/X`).
fn http_from_topic(topic: &str) -> Option<String> {
    let start = topic.find("http://").or_else(|| topic.find("https://"))?;
    let url = topic[start..].split_whitespace().next()?;
    url.find("/api/v1/").map(|end| url[..end].to_owned())
}

/// Who may speak for the channel: voiced (or better) members, named ones if `trust` was given,
/// whose account (when the server tags it) agrees.
struct Trust {
    named: Vec<String>,
    speakers: HashSet<String>,
    accounts: bool,
}

impl Trust {
    fn new(named: &[String], joined: &Joined, accounts: bool) -> Trust {
        let speakers = joined
            .members
            .iter()
            .filter(|(prefixes, _)| prefixes.chars().any(|c| SPEAKING_PREFIXES.contains(c)))
            .map(|(_, nick)| nick.to_ascii_lowercase())
            .collect();
        Trust { named: named.iter().map(|name| name.to_ascii_lowercase()).collect(), speakers, accounts }
    }

    fn allows(&self, message: &Request) -> bool {
        let Some(nick) = message.source_nick().map(str::to_ascii_lowercase) else { return false };
        if !self.speakers.contains(&nick) {
            return false;
        }
        let account = message.tag("account").map(str::to_ascii_lowercase);
        match (self.named.is_empty(), account) {
            (true, Some(account)) => account == nick,
            // With account-tag, a message without an account comes from someone not logged in.
            (true, None) => !self.accounts,
            (false, Some(account)) => self.named.contains(&account),
            (false, None) => !self.accounts && self.named.contains(&nick),
        }
    }

    /// Whether a line recorded in history counts: named speakers when names were given, else
    /// any (the channel was moderated), with the account, where tagged, agreeing.
    fn recorded(&self, message: &Request) -> bool {
        let Some(nick) = message.source_nick().map(str::to_ascii_lowercase) else { return false };
        let account = message.tag("account").map(str::to_ascii_lowercase);
        match (self.named.is_empty(), account) {
            (true, Some(account)) => account == nick,
            (true, None) => true,
            (false, Some(account)) => self.named.contains(&account),
            (false, None) => self.named.contains(&nick),
        }
    }

    /// Follows membership and mode changes; returns why the channel stopped being trustworthy.
    fn update(&mut self, message: &Request, channel: &str) -> Option<String> {
        let nick = message.source_nick().unwrap_or("").to_ascii_lowercase();
        let on_channel = message.param(0).is_some_and(|target| target.eq_ignore_ascii_case(channel));
        match message.verb.as_str() {
            "MODE" if on_channel => {
                for (adding, mode, argument) in message.mode_changes() {
                    match (mode, argument) {
                        ('m', _) if !adding => {
                            return Some(format!("{channel} lost +m: anyone could speak there"));
                        }
                        ('q' | 'a' | 'o' | 'h' | 'v', Some(target)) => {
                            let target = target.to_ascii_lowercase();
                            if adding {
                                self.speakers.insert(target);
                            } else {
                                self.speakers.remove(&target);
                            }
                        }
                        _ => {}
                    }
                }
            }
            "PART" if on_channel => {
                self.speakers.remove(&nick);
            }
            "KICK" if on_channel => {
                if let Some(target) = message.param(1) {
                    self.speakers.remove(&target.to_ascii_lowercase());
                }
            }
            "QUIT" => {
                self.speakers.remove(&nick);
            }
            "NICK" if self.speakers.remove(&nick) => {
                if let Some(new) = message.param(0) {
                    self.speakers.insert(new.to_ascii_lowercase());
                }
            }
            _ => {}
        }
        None
    }
}

/// The live session: reads the channel, keeps what trusted speakers say, reports the rest; with
/// `history`, also asks for history and hands back each `chathistory` batch whole.
async fn follow(
    mut connection: Connection,
    channel: String,
    mut trust: Trust,
    sender: mpsc::UnboundedSender<Live>,
    backlog: Arc<AtomicUsize>,
    history: Option<(mpsc::UnboundedReceiver<HistoryRequest>, mpsc::UnboundedSender<HistoryPage>)>,
) {
    let (mut requests, answers) = match history {
        Some((requests, answers)) => (Some(requests), Some(answers)),
        None => (None, None),
    };
    // The open chathistory batch: its reference and its lines so far.
    let mut batch: Option<(String, Vec<Live>)> = None;
    loop {
        let asked = async {
            match requests.as_mut() {
                Some(requests) => requests.recv().await,
                None => std::future::pending().await,
            }
        };
        // Both are cancel-safe: a line half read stays in the connection's buffer.
        let message = tokio::select! {
            message = connection.next() => message,
            Some(request) = asked => {
                if let Err(error) = connection.send(&history_request(&channel, request)).await {
                    let _ = sender.send(Live::Lost(error.to_string()));
                    return;
                }
                continue;
            }
        };
        let message = match message {
            Ok(message) => message,
            Err(error) => {
                let _ = sender.send(Live::Lost(error.to_string()));
                return;
            }
        };
        if let Some(answers) = &answers {
            match history_line(&message, &channel, &mut batch, &trust) {
                HistoryLine::Not => {}
                HistoryLine::Taken => continue,
                HistoryLine::Done(page) => {
                    let _ = answers.send(page);
                    continue;
                }
            }
        }
        if let Some(reason) = trust.update(&message, &channel) {
            let _ = sender.send(Live::Untrusted(reason));
            return;
        }
        let to_channel = message.param(0).is_some_and(|target| target.eq_ignore_ascii_case(&channel));
        if message.verb != "PRIVMSG" || !to_channel {
            continue;
        }
        if !trust.allows(&message) {
            tracing::debug!(source = ?message.source, "ignoring a line from an untrusted speaker");
            continue;
        }
        let item = decode(&message);
        if backlog.fetch_add(1, Ordering::Relaxed) >= LIVE_BACKLOG {
            let _ = sender.send(Live::Lost("live backlog full while catching up".into()));
            return;
        }
        if sender.send(item).is_err() {
            return;
        }
    }
}

fn history_request(channel: &str, request: HistoryRequest) -> Line {
    let line = Line::new("CHATHISTORY");
    match request {
        HistoryRequest::After(id, limit) => {
            line.param("AFTER").param(channel).param(format!("msgid={id}")).param(limit.to_string())
        }
        HistoryRequest::Latest => line.param("LATEST").param(channel).param("*").param("1"),
    }
}

enum HistoryLine {
    /// Not part of a history answer.
    Not,
    /// Kept in the open batch (or a batch of no interest).
    Taken,
    /// The answer is complete (or refused).
    Done(HistoryPage),
}

/// Sorts a line into the open `chathistory` batch. A recorded line counts when its speaker is
/// one we trust by name (with `trust`), or, without names, when its account (if tagged) is its
/// nick: only voiced members could speak in the moderated channel when it was said.
fn history_line(
    message: &Request,
    channel: &str,
    batch: &mut Option<(String, Vec<Live>)>,
    trust: &Trust,
) -> HistoryLine {
    match message.verb.as_str() {
        "BATCH" => {
            let reference = message.param(0).unwrap_or("");
            if let Some(opened) = reference.strip_prefix('+') {
                // (The batch type comes upper-cased out of the parser.)
                let ours = message.param(1).is_some_and(|kind| kind.eq_ignore_ascii_case("chathistory"))
                    && message.param(2).is_some_and(|target| target.eq_ignore_ascii_case(channel));
                if !ours {
                    return HistoryLine::Not;
                }
                *batch = Some((opened.to_owned(), Vec::new()));
                return HistoryLine::Taken;
            }
            match batch.take_if(|(open, _)| reference.strip_prefix('-') == Some(open.as_str())) {
                Some((_, lines)) => HistoryLine::Done(Ok(lines)),
                None => HistoryLine::Not,
            }
        }
        "FAIL" if message.param(0) == Some("CHATHISTORY") => {
            HistoryLine::Done(Err(message.params.last().cloned().unwrap_or_default()))
        }
        _ => {
            let Some((open, lines)) = batch.as_mut() else { return HistoryLine::Not };
            if message.tag("batch") != Some(open.as_str()) {
                return HistoryLine::Not;
            }
            if message.verb == "PRIVMSG" && trust.recorded(message) {
                lines.push(decode(message));
            }
            HistoryLine::Taken
        }
    }
}

/// What the server says about CHATHISTORY: `Some(lines per request)` when we may use it (batches
/// and the capability or the ISUPPORT token), within its limit (`0`: none).
fn chathistory_limit(connection: &Connection) -> Option<usize> {
    if !connection.has_cap("batch") {
        return None;
    }
    let token = connection.isupport.iter().find_map(|token| {
        token.strip_prefix("CHATHISTORY").filter(|rest| rest.is_empty() || rest.starts_with('='))
    });
    if token.is_none() && !connection.has_cap("draft/chathistory") {
        return None;
    }
    match token.and_then(|rest| rest.strip_prefix('=')).and_then(|limit| limit.parse::<usize>().ok()) {
        Some(0) | None => Some(PAGE),
        Some(limit) => Some(limit.min(PAGE)),
    }
}

/// Everything the subscriber does with one line from a server, for the fuzz target
/// `irc_from_server`: parsing, trust bookkeeping, sorting into a history batch, decoding.
#[doc(hidden)]
pub fn fuzz_server_line(text: &str) {
    let Some(message) = Request::parse(text) else { return };
    let joined = Joined { members: vec![("+".into(), "moin".into())], ..Joined::default() };
    let mut trust = Trust::new(&["relay".into()], &joined, true);
    let _ = trust.update(&message, "#c");
    let _ = trust.allows(&message);
    let mut batch = Some(("b".to_owned(), Vec::new()));
    let _ = history_line(&message, "#c", &mut batch, &trust);
    let _ = decode(&message);
}

/// An event from a line: the `+wikiwire/event` tag, a complete packed line, else its id.
fn decode(message: &Request) -> Live {
    if let Some(event) = message.tag("+wikiwire/event").and_then(|json| Event::from_json(json).ok()) {
        return Live::Event(Box::new(event));
    }
    if let Some(unpacked) = message.param(1).and_then(|text| packed::decode(text).ok()) {
        return if unpacked.more {
            Live::Fetch(unpacked.event.id)
        } else {
            Live::Event(Box::new(unpacked.event))
        };
    }
    match message.tag("msgid").and_then(|id| id.parse().ok()) {
        Some(id) => Live::Fetch(id),
        None => Live::Poke,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(line: &str) -> Request {
        Request::parse(line).unwrap()
    }

    #[test]
    fn the_topic_gives_the_hub() {
        assert_eq!(
            http_from_topic("Recent changes of W | description: http://hub.example:8080/api/v1/wikis/W")
                .as_deref(),
            Some("http://hub.example:8080")
        );
        assert_eq!(http_from_topic("welcome to #chan"), None);
    }

    #[test]
    fn trust_needs_voice_names_and_accounts() {
        let joined = Joined {
            members: vec![("+".into(), "moin".into()), (String::new(), "eve".into())],
            ..Joined::default()
        };
        let open = Trust::new(&[], &joined, true);
        assert!(open.allows(&request("@account=moin :moin!m@h PRIVMSG #c :x")));
        assert!(!open.allows(&request("@account=eve :moin!m@h PRIVMSG #c :x")), "account must agree");
        assert!(!open.allows(&request("@account=eve :eve!e@h PRIVMSG #c :x")), "not voiced");
        let named = Trust::new(
            &["relay".into()],
            &Joined { members: vec![("@".into(), "relay".into())], ..Joined::default() },
            false,
        );
        assert!(named.allows(&request(":relay!r@h PRIVMSG #c :x")));
        let mut changing = Trust::new(&[], &joined, false);
        changing.update(&request(":op!o@h MODE #c -v moin"), "#c");
        assert!(!changing.allows(&request(":moin!m@h PRIVMSG #c :x")));
        assert!(changing.update(&request(":op!o@h MODE #c -m"), "#c").is_some());
    }

    #[test]
    fn lines_decode_to_events_or_ids() {
        let line = request(
            ":moin!m@h PRIVMSG #c.events :id=7&time=2026-01-01T00:00:00.000Z&wiki=W&action=page_changed&page=P&user=u",
        );
        assert!(matches!(decode(&line), Live::Event(event) if event.id == 7));
        let more = request(
            ":moin!m@h PRIVMSG #c.events :id=8&time=2026-01-01T00:00:00.000Z&wiki=W&action=page_changed&more=1",
        );
        assert!(matches!(decode(&more), Live::Fetch(8)));
        assert!(matches!(
            decode(&request("@msgid=9 :moin!m@h PRIVMSG #c :[[P]] page_changed")),
            Live::Fetch(9)
        ));
        assert!(matches!(decode(&request(":moin!m@h PRIVMSG #c :[[P]] page_changed")), Live::Poke));
    }

    #[test]
    fn history_batches_are_gathered_whole_and_trusted_by_record() {
        let trust = Trust::new(&[], &Joined::default(), true);
        let mut batch = None;
        let line = |text: &str, batch: &mut Option<(String, Vec<Live>)>| {
            history_line(&request(text), "#c.events", batch, &trust)
        };
        assert!(matches!(line(":s BATCH +other chathistory #elsewhere", &mut batch), HistoryLine::Not));
        assert!(matches!(line(":s BATCH +b1 chathistory #C.events", &mut batch), HistoryLine::Taken));
        let event = "id=7&time=2026-01-01T00:00:00.000Z&wiki=W&action=page_changed&page=P&user=u";
        assert!(matches!(
            line(&format!("@batch=b1;account=moin :moin!m@h PRIVMSG #c.events :{event}"), &mut batch),
            HistoryLine::Taken
        ));
        // Recorded, but with an account that is not its speaker's: not counted.
        line(&format!("@batch=b1;account=eve :moin!m@h PRIVMSG #c.events :{event}"), &mut batch);
        // A live line meanwhile is not part of the answer.
        assert!(matches!(
            line(&format!(":moin!m@h PRIVMSG #c.events :{event}"), &mut batch),
            HistoryLine::Not
        ));
        match line(":s BATCH -b1", &mut batch) {
            HistoryLine::Done(Ok(lines)) => {
                assert_eq!(lines.iter().filter_map(Live::id).collect::<Vec<_>>(), [7])
            }
            _ => panic!("the batch ends the answer"),
        }
        assert!(matches!(
            line(":s FAIL CHATHISTORY MESSAGE_ERROR AFTER #c.events :Messages could not be retrieved", &mut batch),
            HistoryLine::Done(Err(reason)) if reason == "Messages could not be retrieved"
        ));
        let named = Trust::new(&["relay".into()], &Joined::default(), false);
        assert!(named.recorded(&request(":relay!r@h PRIVMSG #c :x")));
        assert!(!named.recorded(&request(":moin!m@h PRIVMSG #c :x")));
    }
}
