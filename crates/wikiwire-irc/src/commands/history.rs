//! CHATHISTORY (IRCv3 draft/chathistory): LATEST, BEFORE, AFTER, AROUND, BETWEEN and TARGETS,
//! with `msgid=` (the event id) and `timestamp=` references. Replies are `chathistory` batches of
//! the same lines live delivery sends, with their original tags; errors are standard replies.
//! Order is by event id, the log's own order.

use wikiwire_event::{Event, Timestamp};
use wikiwire_irc_wire::wire::Request;
use wikiwire_store::{Query, StoreError};

use crate::caps;
use crate::channels::Channel;
use crate::render::{TagSet, event_line};
use crate::respond::{Context, batch_reference};

/// A message reference.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Reference {
    Any,
    Id(u64),
    Time(Timestamp),
}

fn reference(text: &str) -> Option<Reference> {
    if text == "*" {
        return Some(Reference::Any);
    }
    if let Some(id) = text.strip_prefix("msgid=") {
        return id.parse().ok().map(Reference::Id);
    }
    text.strip_prefix("timestamp=").and_then(|time| Timestamp::parse(time).ok()).map(Reference::Time)
}

/// A query between two exclusive references, in one direction.
fn between(channel: &Channel, lower: Reference, upper: Reference, descending: bool, limit: usize) -> Query {
    let mut query = Query { filter: channel.spec.filter.clone(), descending, ..Query::after(0, limit) };
    match lower {
        Reference::Id(id) => query.after = id,
        Reference::Time(time) => {
            query.from = Timestamp::from_millis(time.millis() + 1).ok().or(Some(Timestamp::MAX))
        }
        Reference::Any => {}
    }
    match upper {
        Reference::Id(id) => query.before = Some(id),
        Reference::Time(time) => query.to = Some(time.saturating_sub_millis(1)),
        Reference::Any => {}
    }
    query
}

/// The same reference, one step later: turns an exclusive upper bound into an inclusive one.
fn including(reference: Reference) -> Reference {
    match reference {
        Reference::Id(id) => Reference::Id(id.saturating_add(1)),
        Reference::Time(time) => {
            Reference::Time(Timestamp::from_millis(time.millis() + 1).unwrap_or(Timestamp::MAX))
        }
        Reference::Any => Reference::Any,
    }
}

pub async fn chathistory(context: &mut Context<'_>, request: &Request) {
    let params = &request.params;
    let Some(subcommand) = params.first().map(|word| word.to_ascii_uppercase()) else {
        return context.fail("CHATHISTORY", "NEED_MORE_PARAMS", &["*"], "Missing parameters");
    };
    let needed = match subcommand.as_str() {
        "LATEST" | "BEFORE" | "AFTER" | "AROUND" | "TARGETS" => 4,
        "BETWEEN" => 5,
        _ => return context.fail("CHATHISTORY", "UNKNOWN_COMMAND", &[&subcommand], "Unknown command"),
    };
    if params.len() < needed {
        return context.fail("CHATHISTORY", "NEED_MORE_PARAMS", &[&subcommand], "Missing parameters");
    }
    let maximum = context.server.settings.limits.history_limit;
    let limit = match params[needed - 1].parse::<usize>() {
        Ok(limit) if limit > 0 => limit.min(maximum),
        _ => {
            let reason = format!("The limit must be a number from 1 to {maximum}");
            return context.fail(
                "CHATHISTORY",
                "INVALID_PARAMS",
                &[&subcommand, &params[needed - 1]],
                &reason,
            );
        }
    };
    if subcommand == "TARGETS" {
        return targets(context, &params[1], &params[2], limit).await;
    }
    let target = params[1].as_str();
    let Some(channel) = context.server.channels.find(target).cloned() else {
        return context.fail("CHATHISTORY", "INVALID_TARGET", &[&subcommand, target], "No such channel");
    };
    let first = reference(&params[2]);
    let second = if subcommand == "BETWEEN" { reference(&params[3]) } else { Some(Reference::Any) };
    let (Some(first), Some(second)) = (first, second) else {
        return context.fail(
            "CHATHISTORY",
            "INVALID_PARAMS",
            &[&subcommand],
            "References are msgid=<event id>, timestamp=<RFC 3339> or (LATEST only) *",
        );
    };
    if first == Reference::Any && subcommand != "LATEST" {
        return context.fail("CHATHISTORY", "INVALID_PARAMS", &[&subcommand, "*"], "Only LATEST takes *");
    }
    // A pattern channel's queries read row by row: one at a time per address (`crate::turns`).
    let turn = context.server.scan_turn(context.client.ip, &channel.spec.filter).await;
    let events = read(context, &channel, &subcommand, first, second, limit).await;
    drop(turn);
    let events = match events {
        Ok(events) => events,
        Err(error) => {
            tracing::error!(%error, "CHATHISTORY cannot read the store");
            return context.fail(
                "CHATHISTORY",
                "MESSAGE_ERROR",
                &[&subcommand, target],
                "Messages could not be retrieved",
            );
        }
    };
    let caps = context.client.caps();
    let batch = caps.has(caps::BATCH).then(batch_reference);
    if let Some(reference) = &batch {
        context.push(
            context
                .from_server("BATCH")
                .param(format!("+{reference}"))
                .param("chathistory")
                .param(channel.spec.name.clone()),
        );
    }
    for event in &events {
        let mut line = event_line(context.server, &channel, event, TagSet::of(caps));
        if let Some(reference) = &batch {
            line.tags.insert(0, ("batch".into(), Some(reference.clone())));
        }
        context.push(line);
    }
    if let Some(reference) = batch {
        context.push(context.from_server("BATCH").param(format!("-{reference}")));
    }
}

/// The events a subcommand asks for, oldest first.
async fn read(
    context: &Context<'_>,
    channel: &Channel,
    subcommand: &str,
    first: Reference,
    second: Reference,
    limit: usize,
) -> Result<Vec<Event>, StoreError> {
    let store = context.server.hub.store();
    let newest_first = |query: Query| async move {
        store.query(query).await.map(|page| page.events.into_iter().rev().collect::<Vec<_>>())
    };
    let oldest_first = |query: Query| async move { store.query(query).await.map(|page| page.events) };
    match subcommand {
        "LATEST" => newest_first(between(channel, first, Reference::Any, true, limit)).await,
        "BEFORE" => newest_first(between(channel, Reference::Any, first, true, limit)).await,
        "AFTER" => oldest_first(between(channel, first, Reference::Any, false, limit)).await,
        "AROUND" => {
            let newer = limit / 2;
            let mut events =
                newest_first(between(channel, Reference::Any, including(first), true, limit - newer)).await?;
            if newer > 0 {
                events.extend(oldest_first(between(channel, first, Reference::Any, false, newer)).await?);
            }
            Ok(events)
        }
        _ => {
            // BETWEEN: forwards or backwards in time, always returned oldest first.
            let backwards = match (first, second) {
                (Reference::Id(a), Reference::Id(b)) => a > b,
                (Reference::Time(a), Reference::Time(b)) => a > b,
                _ => false,
            };
            if backwards {
                newest_first(between(channel, second, first, true, limit)).await
            } else {
                oldest_first(between(channel, first, second, false, limit)).await
            }
        }
    }
}

/// TARGETS: the client's channels with events between two times, by their latest event.
async fn targets(context: &mut Context<'_>, first: &str, second: &str, limit: usize) {
    let (Some(Reference::Time(a)), Some(Reference::Time(b))) = (reference(first), reference(second)) else {
        return context.fail(
            "CHATHISTORY",
            "INVALID_PARAMS",
            &["TARGETS"],
            "TARGETS takes two timestamp= references",
        );
    };
    let (from, to) = if a <= b { (a, b) } else { (b, a) };
    let joined = context.client.state().channels.clone();
    let channels: Vec<_> =
        joined.into_iter().filter_map(|index| context.server.channels.get(index).cloned()).collect();
    let mut found: Vec<(Timestamp, String)> = Vec::new();
    let turn = match channels.iter().find(|channel| channel.spec.filter.needs_row_scan()) {
        Some(channel) => context.server.scan_turn(context.client.ip, &channel.spec.filter).await,
        None => None,
    };
    for channel in channels {
        let query = Query {
            from: Some(from),
            to: Some(to),
            filter: channel.spec.filter.clone(),
            ..Query::latest(None, 1)
        };
        match context.server.hub.store().query(query).await {
            Ok(page) => {
                found.extend(page.events.first().map(|event| (event.time, channel.spec.name.clone())))
            }
            Err(error) => {
                tracing::error!(%error, "CHATHISTORY TARGETS cannot read the store");
                return context.fail(
                    "CHATHISTORY",
                    "MESSAGE_ERROR",
                    &["TARGETS", "*"],
                    "Messages could not be retrieved",
                );
            }
        }
    }
    drop(turn);
    found.sort();
    found.truncate(limit);
    let batch = context.client.caps().has(caps::BATCH).then(batch_reference);
    if let Some(reference) = &batch {
        context.push(
            context.from_server("BATCH").param(format!("+{reference}")).param("draft/chathistory-targets"),
        );
    }
    for (time, name) in found {
        let mut line =
            context.from_server("CHATHISTORY").param("TARGETS").param(name).param(time.to_string());
        if let Some(reference) = &batch {
            line.tags.insert(0, ("batch".into(), Some(reference.clone())));
        }
        context.push(line);
    }
    if let Some(reference) = batch {
        context.push(context.from_server("BATCH").param(format!("-{reference}")));
    }
}
