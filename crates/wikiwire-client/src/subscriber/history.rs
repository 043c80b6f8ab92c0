//! Where a catch-up reads history: the hub's HTTP API ([`HttpHistory`]), or `CHATHISTORY` on
//! the subscriber's own IRC connection ([`IrcHistory`]) when HTTP is unknown or does not answer.
//! Both answer [`History::page`]: the entries after an id, and where the next page starts; the
//! subscriber merges them with live lines by id the same way whichever answered.

use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use wikiwire_event::{Event, Filter, api};

use super::SubscriberError;
use super::live::{HistoryBatch, HistoryRequest, Live};

/// Events per history request (over IRC, at most the server's CHATHISTORY limit).
pub(super) const PAGE: usize = 1000;
/// A CHATHISTORY answer may take this long.
const HISTORY_WAIT: Duration = Duration::from_secs(30);

/// One entry of a page, in id order.
pub(super) enum Entry {
    Event(Box<Event>),
    /// An event too long for its IRC line, with HTTP out of reach: it cannot be had whole.
    TooLong(u64),
}

/// A page of history after an id.
#[derive(Default)]
pub(super) struct Page {
    pub entries: Vec<Entry>,
    /// Where the next page starts; `None`: this page reached the end of the log.
    pub next: Option<u64>,
}

/// A source of history pages.
pub(super) trait History {
    /// The page after `after`, narrowed by `query` where the source can (the rest is narrowed by
    /// the subscriber).
    async fn page(&mut self, after: u64, query: &Filter) -> Result<Page, SubscriberError>;
}

/// The hub's HTTP API: pages of `GET /api/v1/events`, the next one asked for while the current
/// one is handed out, and single events by id.
pub(super) struct HttpHistory {
    client: reqwest::Client,
    /// The hub's address, when known (given, or read from a wikiwire channel's topic).
    pub base: Option<String>,
    /// The next page, asked for while the current one is handed out: the hub reads and sends it
    /// while the caller handles events. Tagged with the `since` it was asked with.
    prefetch: Option<(u64, JoinHandle<Result<HttpPage, SubscriberError>>)>,
}

/// A page of `GET /api/v1/events`: events in id order, and where the next page starts (none:
/// this was the end of the log).
#[derive(serde::Deserialize)]
struct HttpPage {
    events: Vec<serde_json::Map<String, serde_json::Value>>,
    next: Option<u64>,
}

impl HttpHistory {
    pub fn new(base: Option<&str>) -> Result<HttpHistory, SubscriberError> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .connect_timeout(Duration::from_secs(5))
            .build()
            .map_err(|error| SubscriberError::Http(error.to_string()))?;
        Ok(HttpHistory { client, base: base.map(|url| url.trim_end_matches('/').to_owned()), prefetch: None })
    }

    fn base(&self) -> Result<&str, SubscriberError> {
        self.base.as_deref().ok_or(SubscriberError::NoHttp)
    }

    fn page_url(&self, since: u64, query: &Filter) -> Result<String, SubscriberError> {
        let mut url = format!("{}&limit={PAGE}", api::events_since(self.base()?, since));
        if !query.is_all() {
            url.push('&');
            url.push_str(&query.to_string());
        }
        Ok(url)
    }

    /// One event by id (a live line too long to carry it).
    pub async fn event(&self, id: u64) -> Result<Event, SubscriberError> {
        let value = self
            .get_json(&api::event(self.base()?, id))
            .await?
            .ok_or_else(|| SubscriberError::Http(format!("event {id} not found")))?;
        Event::from_json(&value.to_string())
            .map_err(|error| SubscriberError::Http(format!("event {id}: {error}")))
    }

    /// GET as JSON; `None` for 404.
    pub async fn get_json(&self, url: &str) -> Result<Option<serde_json::Value>, SubscriberError> {
        get(&self.client, url).await
    }
}

impl History for HttpHistory {
    async fn page(&mut self, after: u64, query: &Filter) -> Result<Page, SubscriberError> {
        let page = match self.prefetch.take() {
            Some((asked, task)) if asked == after => {
                task.await.map_err(|error| SubscriberError::Http(format!("history: {error}")))??
            }
            other => {
                if let Some((_, task)) = other {
                    task.abort();
                }
                fetch_page(self.client.clone(), self.page_url(after, query)?).await?
            }
        };
        let next = page.next.map(|next| next.max(after));
        if let Some(next) = next {
            let task = tokio::spawn(fetch_page(self.client.clone(), self.page_url(next, query)?));
            self.prefetch = Some((next, task));
        }
        let entries = page
            .events
            .into_iter()
            .map(|object| {
                Event::from_json_object(object)
                    .map(|event| Entry::Event(Box::new(event)))
                    .map_err(|error| SubscriberError::Http(format!("history: {error}")))
            })
            .collect::<Result<_, _>>()?;
        Ok(Page { entries, next })
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

async fn fetch_page(http: reqwest::Client, url: String) -> Result<HttpPage, SubscriberError> {
    get(&http, &url).await?.ok_or_else(|| SubscriberError::Http(format!("{url}: not found")))
}

/// History over the IRC connection: requests go to the live session's task (the one reader of
/// the connection), each answered with one `chathistory` batch.
pub(super) struct IrcHistory {
    requests: mpsc::UnboundedSender<HistoryRequest>,
    batches: mpsc::UnboundedReceiver<HistoryBatch>,
    /// Lines per request: ours, within the server's limit.
    limit: usize,
}

/// The session task's end of [`IrcHistory`]: the requests it sends, and where it answers.
pub(super) type IrcHistoryTask =
    (mpsc::UnboundedReceiver<HistoryRequest>, mpsc::UnboundedSender<HistoryBatch>);

impl IrcHistory {
    pub fn new(limit: usize) -> (IrcHistory, IrcHistoryTask) {
        let (requests, asked) = mpsc::unbounded_channel();
        let (answers, batches) = mpsc::unbounded_channel();
        (IrcHistory { requests, batches, limit }, (asked, answers))
    }

    /// Asks the session's task for a batch and waits for it.
    pub async fn ask(&mut self, request: HistoryRequest) -> Result<Vec<Live>, SubscriberError> {
        let lost = || SubscriberError::History("the connection was lost".into());
        self.requests.send(request).map_err(|_| lost())?;
        match tokio::time::timeout(HISTORY_WAIT, self.batches.recv()).await {
            Ok(Some(batch)) => batch.map_err(SubscriberError::History),
            Ok(None) => Err(lost()),
            Err(_) => Err(SubscriberError::History("no answer in time".into())),
        }
    }
}

impl History for IrcHistory {
    /// One `CHATHISTORY AFTER`: a short batch is the end of the channel's log (the server
    /// applied the channel's filter).
    async fn page(&mut self, after: u64, _query: &Filter) -> Result<Page, SubscriberError> {
        let lines = self.ask(HistoryRequest::After(after, self.limit)).await?;
        let complete = lines.len() < self.limit;
        let mut last = after;
        let mut entries = Vec::with_capacity(lines.len());
        for line in lines {
            let entry = match line {
                Live::Event(event) => Entry::Event(event),
                Live::Fetch(id) => Entry::TooLong(id),
                _ => continue,
            };
            last = last.max(match &entry {
                Entry::Event(event) => event.id,
                Entry::TooLong(id) => *id,
            });
            entries.push(entry);
        }
        Ok(Page { entries, next: (!complete).then_some(last) })
    }
}
