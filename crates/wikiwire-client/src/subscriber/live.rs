//! The live session: one task reads the channel, keeps what trusted speakers say and reports
//! the rest; when history is read over IRC it also sends `CHATHISTORY` requests and hands back
//! each `chathistory` batch whole. Lines decode to events, or to ids to fetch.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::mpsc;
use wikiwire_event::{Event, packed};
use wikiwire_irc_wire::wire::{Line, Request};

use super::history::{IrcHistoryTask, PAGE};
use super::trust::Trust;
use crate::connection::{Connection, Joined};

/// Live lines buffered while catching up, at most; past it the live session is dropped and
/// history takes over.
const LIVE_BACKLOG: usize = 100_000;

/// What the live session reports (and what history lines decode to).
pub(super) enum Live {
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
    pub(super) fn id(&self) -> Option<u64> {
        match self {
            Live::Event(event) => Some(event.id),
            Live::Fetch(id) => Some(*id),
            _ => None,
        }
    }
}

/// A history request over IRC, answered with one [`HistoryBatch`].
#[derive(Clone, Copy, Debug)]
pub(super) enum HistoryRequest {
    /// `CHATHISTORY AFTER <channel> msgid=<id> <limit>`.
    After(u64, usize),
    /// `CHATHISTORY LATEST <channel> * 1`: where the channel's log ends.
    Latest,
}

/// One `chathistory` batch: its lines, decoded like live ones, or the server's refusal.
pub(super) type HistoryBatch = Result<Vec<Live>, String>;

/// The live session: reads the channel, keeps what trusted speakers say, reports the rest; with
/// `history`, also asks for history and hands back each `chathistory` batch whole.
pub(super) async fn follow(
    mut connection: Connection,
    channel: String,
    mut trust: Trust,
    sender: mpsc::UnboundedSender<Live>,
    backlog: Arc<AtomicUsize>,
    history: Option<IrcHistoryTask>,
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

pub(super) fn history_request(channel: &str, request: HistoryRequest) -> Line {
    let line = Line::new("CHATHISTORY");
    match request {
        HistoryRequest::After(id, limit) => {
            line.param("AFTER").param(channel).param(format!("msgid={id}")).param(limit.to_string())
        }
        HistoryRequest::Latest => line.param("LATEST").param(channel).param("*").param("1"),
    }
}

pub(super) enum HistoryLine {
    /// Not part of a history answer.
    Not,
    /// Kept in the open batch (or a batch of no interest).
    Taken,
    /// The answer is complete (or refused).
    Done(HistoryBatch),
}

/// Sorts a line into the open `chathistory` batch. A recorded line counts when its speaker is
/// one we trust by name (with `trust`), or, without names, when its account (if tagged) is its
/// nick: only voiced members could speak in the moderated channel when it was said.
pub(super) fn history_line(
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
pub(super) fn chathistory_limit(connection: &Connection) -> Option<usize> {
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
pub(super) fn decode(message: &Request) -> Live {
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
