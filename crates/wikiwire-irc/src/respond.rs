//! `Context`: what a command handler works with. Handlers add replies here and return; `finish`
//! applies IRCv3 labeled-response (one line gets the label, several go in a labeled batch, none
//! gets ACK) and queues the result. Broadcast lines never pass through here.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use wikiwire_irc_wire::numeric::Numeric;
use wikiwire_irc_wire::wire::Line;

use crate::caps::{self, Caps};
use crate::client::Client;
use crate::server::Server;

static NEXT_BATCH: AtomicU64 = AtomicU64::new(1);

/// A fresh batch reference, unique in this process.
pub fn batch_reference() -> String {
    format!("b{}", NEXT_BATCH.fetch_add(1, Ordering::Relaxed))
}

pub struct Context<'a> {
    pub server: &'a Arc<Server>,
    pub client: &'a Arc<Client>,
    lines: Vec<Line>,
    /// The line's label, for a reply that comes later (a pipelined event).
    pub label: Option<String>,
    /// The reply comes later, from the publisher's pipeline: `finish` sends nothing.
    deferred: bool,
}

impl<'a> Context<'a> {
    pub fn new(server: &'a Arc<Server>, client: &'a Arc<Client>) -> Context<'a> {
        Context { server, client, lines: Vec::new(), label: None, deferred: false }
    }

    /// This line is answered later, in its turn (see [`crate::pipeline`]).
    pub fn defer(&mut self) {
        self.deferred = true;
    }

    pub fn caps(&self) -> Caps {
        self.client.caps()
    }

    /// A line from the server itself.
    pub fn from_server(&self, verb: &str) -> Line {
        Line::new(verb).source(self.server.settings.server_name.clone())
    }

    /// The client's `nick!user@host`; publishers appear as they do in their channels.
    pub fn mask(&self) -> String {
        let state = self.client.state();
        let settings = &self.server.settings;
        match &state.account {
            Some(publisher) if state.registered => settings.publisher_mask(&publisher.name),
            _ => format!(
                "{}!{}@{}",
                state.nick,
                state.user.as_deref().unwrap_or("~"),
                settings.listener_host()
            ),
        }
    }

    pub fn push(&mut self, line: Line) {
        self.lines.push(line);
    }

    /// A numeric addressed to this client; the numeric's text ends it unless it is empty.
    pub fn numeric(&mut self, numeric: Numeric, params: &[&str]) {
        let mut line = self.from_server(numeric.code).param(self.client.nick());
        for param in params {
            line = line.param(*param);
        }
        // The numeric's own text is always text; a caller's last value keeps the usual rule.
        if !numeric.text.is_empty() {
            line = line.text(numeric.text);
        }
        self.lines.push(line);
    }

    /// A standard reply (IRCv3 standard-replies): `FAIL <command> <code> [context...] :text`.
    pub fn fail(&mut self, command: &str, code: &str, context: &[&str], text: &str) {
        let mut line = self.from_server("FAIL").param(command).param(code);
        for part in context {
            line = line.param(*part);
        }
        self.lines.push(line.text(text));
    }

    /// Queues the replies, labelled as the client asked.
    pub fn finish(self, label: Option<&str>) {
        if self.deferred {
            return;
        }
        let caps = self.client.caps();
        let label = label.filter(|_| caps.has(caps::LABELED_RESPONSE)).map(str::to_owned);
        let mut lines = self.lines;
        match (label, lines.len()) {
            (None, _) => {}
            (Some(label), 0) => lines.push(
                Line::new("ACK").source(self.server.settings.server_name.clone()).tag("label", Some(label)),
            ),
            (Some(label), 1) => lines[0].tags.insert(0, ("label".into(), Some(label))),
            (Some(label), _) if caps.has(caps::BATCH) => {
                let reference = batch_reference();
                for line in &mut lines {
                    // Lines of an inner batch keep theirs; the inner BATCH line joins the outer.
                    if !line.has_tag("batch") {
                        line.tags.insert(0, ("batch".into(), Some(reference.clone())));
                    }
                }
                let server = self.server.settings.server_name.clone();
                lines.insert(
                    0,
                    Line::new("BATCH")
                        .source(server.clone())
                        .tag("label", Some(label))
                        .param(format!("+{reference}"))
                        .param("labeled-response"),
                );
                lines.push(Line::new("BATCH").source(server).param(format!("-{reference}")));
            }
            (Some(_), _) => {}
        }
        for line in lines {
            if !self.client.send(line.to_bytes()) {
                break;
            }
        }
    }
}
