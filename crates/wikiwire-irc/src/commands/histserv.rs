//! HistServ (SPEC §3): history for clients without CHATHISTORY, by private message. `since <id>`,
//! `from <time> [to <time>]`, each optionally followed by a channel, and `help`. Answers are a
//! bounded run of NOTICEs; anything larger ends with the HTTP URL that has the rest. With `send`
//! before the request, the answer is a file of JSON lines offered by DCC (see [`crate::dcc`]).

use wikiwire_event::{Filter, Format, Timestamp, line};
use wikiwire_irc_wire::wire::Line;
use wikiwire_store::{MAX_PAGE, Query};

use crate::dcc;
use crate::respond::Context;

/// Events one answer carries at most.
const LIMIT: usize = 50;

const HELP: &[&str] = &[
    "HistServ sends you events you missed, as NOTICEs (at most 50; the rest by URL).",
    "  since <id> [#channel]            events after id <id>",
    "  from <time> [to <time>] [#channel]  events in a time range (RFC 3339 or unix seconds)",
    "  send since <id> [#channel], send from <time> [to <time>] [#channel]",
    "                                   the same as a file of JSON lines, by DCC",
    "Without a channel you get every wiki's events as text. Clients with CHATHISTORY can use it instead.",
];

pub async fn handle(context: &mut Context<'_>, text: &str) {
    let words: Vec<&str> = text.split_whitespace().collect();
    let (channel_name, words) = match words.last() {
        Some(last) if last.starts_with('#') => (Some(*last), &words[..words.len() - 1]),
        _ => (None, &words[..]),
    };
    let (by_dcc, words) = match words.first() {
        Some(first) if first.eq_ignore_ascii_case("send") => (true, &words[1..]),
        _ => (false, words),
    };
    let command = words.first().map(|word| word.to_ascii_lowercase());
    let query = match (command.as_deref(), words) {
        (Some("since"), [_, id]) => match id.parse::<u64>() {
            Ok(after) => Query::after(after, LIMIT),
            Err(_) => return say(context, &[&format!("{id:?} is not an event id")]),
        },
        (Some("from"), [_, from]) | (Some("from"), [_, from, _, _]) => {
            let to = match words {
                [_, _, keyword, to] if keyword.eq_ignore_ascii_case("to") => Some(*to),
                [_, _] => None,
                _ => return say(context, &["Write: from <time> [to <time>] [#channel]"]),
            };
            let (Ok(from), Ok(to)) = (Timestamp::parse(from), to.map(Timestamp::parse).transpose()) else {
                return say(context, &["Times are RFC 3339 (2026-11-22T21:00:00Z) or unix seconds"]);
            };
            Query { from: Some(from), to, ..Query::after(0, LIMIT) }
        }
        (Some("help") | None, _) => return say(context, HELP),
        _ => return say(context, &["Unknown request; /msg HistServ help"]),
    };
    let (filter, format, show_wiki, channel_label) = match channel_name {
        Some(name) => match context.server.channels.find(name) {
            Some(channel) => (
                channel.spec.filter.clone(),
                channel.spec.format,
                channel.spec.show_wiki,
                channel.spec.name.clone(),
            ),
            None => return say(context, &[&format!("No channel {name}; /LIST shows them")]),
        },
        None => (Filter::all(), Format::Text, true, "all wikis".to_owned()),
    };
    let query = Query { filter: filter.clone(), ..query };
    if by_dcc {
        return send_file(context, query, &channel_label).await;
    }
    let turn = context.server.scan_turn(context.client.ip, &query.filter).await;
    let page = context.server.hub.store().query(query.clone()).await;
    drop(turn);
    let page = match page {
        Ok(page) => page,
        Err(error) => {
            tracing::error!(%error, "HistServ cannot read the store");
            return say(context, &["History is unavailable right now; try again"]);
        }
    };
    let nick = context.client.nick();
    let source = context.server.settings.histserv_mask();
    let budget = 510
        - (1 + source.len() + " NOTICE ".len() + nick.len() + " :".len() + "#18446744073709551615 ".len());
    let publishers = context.server.hub.publishers();
    let mut lines: Vec<String> = Vec::with_capacity(page.events.len() + 2);
    lines.push(format!("{} event(s) of {channel_label}:", page.events.len()));
    for event in &page.events {
        let rendered = line::render(event, publishers.wiki(&event.wiki), format, show_wiki, budget);
        lines.push(match format {
            Format::Packed => rendered,
            _ => format!("#{} {rendered}", event.id),
        });
    }
    if page.next.is_some() {
        let last = page.events.last().map_or(query.after, |event| event.id);
        let mut url = wikiwire_event::api::events_since(context.server.hub.public_url(), last);
        for (name, value) in [("from", query.from), ("to", query.to)] {
            if let Some(time) = value {
                url.push_str(&format!("&{name}={time}"));
            }
        }
        if !filter.is_all() {
            url.push_str(&format!("&{filter}"));
        }
        lines.push(format!("More: {url}"));
    }
    let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
    say(context, &lines);
}

/// `send ...`: the events as a file of JSON lines (the full event, one per line), offered by DCC.
/// The place and the port come first: a request that cannot be served renders nothing.
async fn send_file(context: &mut Context<'_>, query: Query, label: &str) {
    let offers = std::sync::Arc::clone(&context.server.dcc);
    if !offers.enabled() {
        return say(
            context,
            &["This server offers no DCC (its operator can set [irc] dcc_ports); ask without send"],
        );
    }
    let slot = match offers.reserve(context.client.id, context.client.ip) {
        Ok(slot) => slot,
        Err(dcc::Refusal::Open) => {
            return say(
                context,
                &["You already have a DCC offer open; take it (or refuse it) before asking again"],
            );
        }
        Err(dcc::Refusal::Address) => {
            return say(
                context,
                &["Your address has as many DCC transfers open as it may; finish one before asking again"],
            );
        }
        Err(dcc::Refusal::Full) => {
            return say(context, &["Every DCC transfer place is taken right now; try again in a minute"]);
        }
    };
    let Some(listener) = offers.listen(context.client.local_ip).await else {
        return say(context, &["Every DCC port is busy right now; try again in a minute"]);
    };
    let start = match query.from {
        Some(from) => format!("from-{from}"),
        None => format!("since-{}", query.after),
    };
    let (bytes, count, last, more) = match render(context, query, offers.max_events, offers.max_bytes).await {
        Ok(file) => file,
        Err(error) => {
            tracing::error!(%error, "HistServ cannot read the store");
            return say(context, &["History is unavailable right now; try again"]);
        }
    };
    let Some(last) = last else {
        return say(context, &["No events match; there is nothing to send"]);
    };
    let file = dcc::File { name: dcc::file_name(label, &start), bytes: bytes.into() };
    let (name, size) = (file.name.clone(), file.bytes.len());
    let mask = context.server.settings.histserv_mask();
    let Some(ctcp) = offers.offer(slot, listener, context.client, file, mask.clone()) else {
        return say(context, &["Every DCC port is busy right now; try again in a minute"]);
    };
    let nick = context.client.nick();
    context.push(Line::new("PRIVMSG").source(mask).param(nick).text(ctcp));
    let mut lines = vec![format!(
        "Offering {count} event(s) of {label} as {name} ({size} bytes) by DCC; the offer expires in {} s",
        offers.timeout.as_secs()
    )];
    if more {
        lines.push(format!("The file ends at event {last}; for the rest: /msg HistServ send since {last}"));
    }
    let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
    say(context, &lines);
}

/// The file's bytes, page by page from the store, until `max_events` events or `max_bytes` bytes
/// (whichever comes first): (bytes, events, the last event's id, whether the log may hold more).
async fn render(
    context: &Context<'_>,
    query: Query,
    max_events: usize,
    max_bytes: usize,
) -> Result<(Vec<u8>, usize, Option<u64>, bool), wikiwire_store::StoreError> {
    let _turn = context.server.scan_turn(context.client.ip, &query.filter).await;
    let mut bytes = Vec::new();
    let (mut count, mut last, mut after) = (0, None, query.after);
    // Pages without a match still read rows (a filter matched row by row): a bounded number.
    let mut pages = max_events.div_ceil(MAX_PAGE) + 1;
    loop {
        let limit = (max_events - count).min(MAX_PAGE);
        let page = context.server.hub.store().query(Query { after, limit, ..query.clone() }).await?;
        for event in &page.events {
            let json = event.to_json();
            if bytes.len() + json.len() + 1 > max_bytes && count > 0 {
                return Ok((bytes, count, last, true));
            }
            bytes.extend_from_slice(json.as_bytes());
            bytes.push(b'\n');
            count += 1;
            last = Some(event.id);
        }
        pages -= 1;
        match page.next {
            Some(next) if count < max_events && bytes.len() < max_bytes && pages > 0 => after = next,
            next => return Ok((bytes, count, last, next.is_some())),
        }
    }
}

fn say(context: &mut Context<'_>, lines: &[&str]) {
    let nick = context.client.nick();
    let source = context.server.settings.histserv_mask();
    for text in lines {
        context.push(Line::new("NOTICE").source(source.clone()).param(nick.clone()).text(*text));
    }
}
