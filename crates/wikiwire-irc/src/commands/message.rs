//! PRIVMSG and NOTICE. In a channel only its publishers speak, and what they say is an event:
//! a packed line that is validated, stored through `Hub::publish` and rendered to every matching
//! channel; the publisher's acknowledgement is the echo with the assigned msgid. Listeners get
//! 404; private messages go to HistServ only.

use std::sync::Arc;

use wikiwire_event::{Timestamp, packed};
use wikiwire_hub::{PublishError, Publisher};

use super::histserv;
use crate::caps;
use crate::channels::Channel;
use crate::numeric::*;
use crate::pipeline::{Pending, Pipeline};
use crate::render::{TagSet, event_line};
use crate::respond::Context;
use crate::server::HISTSERV;
use crate::wire::Request;

pub async fn privmsg(context: &mut Context<'_>, pipeline: Option<&Pipeline>, request: &Request) {
    // A publisher's valid event is queued and answered in its turn; any other answer waits for
    // the events queued before this line.
    if let Some(pipeline) = pipeline {
        match queued(context, request) {
            Some(pending) => {
                pipeline.publish(pending);
                return context.defer();
            }
            None => pipeline.settle().await,
        }
    }
    let Some(target) = request.param(0).map(str::to_owned) else {
        return context.numeric(ERR_NORECIPIENT, &[]);
    };
    let Some(text) = request.param(1).filter(|text| !text.is_empty()).map(str::to_owned) else {
        return context.numeric(ERR_NOTEXTTOSEND, &[]);
    };
    if target.starts_with('#') {
        let Some(channel) = context.server.channels.find(&target).cloned() else {
            return context.numeric(ERR_NOSUCHCHANNEL, &[&target]);
        };
        match context.client.account() {
            Some(publisher) if channel.may_speak(&publisher.name) => {
                publish(context, &channel, publisher, &text).await
            }
            _ => context.numeric(ERR_CANNOTSENDTOCHAN, &[&channel.name]),
        }
    } else if target.eq_ignore_ascii_case(HISTSERV) {
        histserv::handle(context, &text).await;
    } else if context.server.reserved(&target) || context.server.client_by_nick(&target).is_some() {
        context.fail(
            "PRIVMSG",
            "CANNOT_SEND",
            &[&target],
            "Private messages are not carried here; /msg HistServ help",
        );
    } else {
        context.numeric(ERR_NOSUCHNICK, &[&target]);
    }
}

/// The event this line carries, when it is one the publisher may send here; `None` leaves every
/// refusal to the checks of `privmsg`, which say why.
fn queued(context: &Context<'_>, request: &Request) -> Option<Pending> {
    let (target, text) = (request.param(0)?, request.param(1)?);
    let channel = context.server.channels.find(target)?.clone();
    let publisher = context.client.account().filter(|publisher| channel.may_speak(&publisher.name))?;
    let draft = packed::parse_submission(text, Timestamp::now()).ok()?;
    channel.filter.matches(draft.event()).then_some(())?;
    Some(Pending { channel, publisher, draft, label: context.label.clone() })
}

/// NOTICE never gets an automatic reply (RFC 2812 §3.3.2); nothing here acts on one.
pub async fn notice(_context: &mut Context<'_>, _request: &Request) {}

async fn publish(context: &mut Context<'_>, channel: &Channel, publisher: Arc<Publisher>, text: &str) {
    let draft = match packed::parse_submission(text, Timestamp::now()) {
        Ok(draft) => draft,
        Err(error) => return context.fail("PRIVMSG", "INVALID_EVENT", &[&channel.name], &error.to_string()),
    };
    if !channel.filter.matches(draft.event()) {
        let reason = format!("this event does not belong in {} (filter: {})", channel.name, channel.filter);
        return context.fail("PRIVMSG", "INVALID_EVENT", &[&channel.name], &reason);
    }
    match context.server.hub.publish(&publisher, vec![draft]).await {
        Ok(appended) => {
            context.server.hub.metrics().irc_published.inc();
            let caps = context.client.caps();
            if caps.has(caps::ECHO_MESSAGE) {
                let event = &appended[0].event;
                context.push(event_line(context.server, channel, event, TagSet::of(caps)));
            }
        }
        Err(error @ PublishError::NotYourWiki { .. }) => {
            context.fail("PRIVMSG", "INVALID_EVENT", &[&channel.name], &error.to_string());
        }
        Err(error @ PublishError::RateLimited { .. }) => {
            context.fail("PRIVMSG", "RATE_LIMITED", &[&channel.name], &error.to_string());
        }
        Err(PublishError::Store(error)) => {
            tracing::error!(%error, "store failure publishing from IRC");
            context.fail(
                "PRIVMSG",
                "TEMPORARILY_UNAVAILABLE",
                &[&channel.name],
                "The event store is unavailable; try again",
            );
        }
    }
}
