//! PRIVMSG and NOTICE. In a channel only its publishers speak, and what they say is an event:
//! a packed line that is validated, stored through `Hub::publish` and rendered to every matching
//! channel; the publisher's acknowledgement is the echo with the assigned msgid. Listeners get
//! 404; private messages go to HistServ only.

use std::sync::Arc;

use wikiwire_event::{Timestamp, packed};
use wikiwire_irc_wire::numeric::*;
use wikiwire_irc_wire::wire::Request;

use super::histserv;
use crate::channels::Channel;
use crate::pipeline::{self, Pending, Pipeline};
use crate::respond::Context;
use crate::server::HISTSERV;

pub async fn privmsg(context: &mut Context<'_>, pipeline: Option<&Pipeline>, request: &Request) {
    // A publisher's valid event is queued and answered in its turn (`pipeline`); every other
    // answer is given now, so after the events queued before this line.
    let pending = match event(context, request) {
        Ok(pending) => pending,
        Err(refusal) => {
            if let Some(pipeline) = pipeline {
                pipeline.settle().await;
            }
            return answer(context, request, refusal).await;
        }
    };
    context.defer();
    match pipeline {
        Some(pipeline) => pipeline.publish(pending).await,
        // Publishers' connections always have one; without, the event is committed alone.
        None => pipeline::commit(context.server, context.client, vec![pending]).await,
    }
}

/// Why a line to a channel is not an event its sender may publish there.
enum Refusal {
    /// Not a publisher's line to one of its channels: the usual PRIVMSG answers.
    NotPublishing,
    /// A publisher's line that is not a valid event for that channel.
    Invalid(Arc<Channel>, String),
}

/// The event this line carries, or why it carries none.
fn event(context: &Context<'_>, request: &Request) -> Result<Pending, Refusal> {
    let target = request.param(0).filter(|target| target.starts_with('#')).ok_or(Refusal::NotPublishing)?;
    let text = request.param(1).filter(|text| !text.is_empty()).ok_or(Refusal::NotPublishing)?;
    let channel = context.server.channels.find(target).cloned().ok_or(Refusal::NotPublishing)?;
    let publisher = context
        .client
        .account()
        .filter(|publisher| channel.may_speak(&publisher.name))
        .ok_or(Refusal::NotPublishing)?;
    let draft = match packed::parse_submission(text, Timestamp::now()) {
        Ok(draft) => draft,
        Err(error) => return Err(Refusal::Invalid(channel, error.to_string())),
    };
    if !channel.spec.filter.matches(draft.event()) {
        let reason =
            format!("this event does not belong in {} (filter: {})", channel.spec.name, channel.spec.filter);
        return Err(Refusal::Invalid(channel, reason));
    }
    Ok(Pending { channel, publisher, draft, label: context.label.clone() })
}

/// Every answer to a PRIVMSG that publishes nothing.
async fn answer(context: &mut Context<'_>, request: &Request, refusal: Refusal) {
    if let Refusal::Invalid(channel, reason) = refusal {
        return context.fail("PRIVMSG", "INVALID_EVENT", &[&channel.spec.name], &reason);
    }
    let Some(target) = request.param(0).map(str::to_owned) else {
        return context.numeric(ERR_NORECIPIENT, &[]);
    };
    let Some(text) = request.param(1).filter(|text| !text.is_empty()).map(str::to_owned) else {
        return context.numeric(ERR_NOTEXTTOSEND, &[]);
    };
    if target.starts_with('#') {
        match context.server.channels.find(&target) {
            Some(channel) => context.numeric(ERR_CANNOTSENDTOCHAN, &[&channel.spec.name]),
            None => context.numeric(ERR_NOSUCHCHANNEL, &[&target]),
        }
    } else if target.eq_ignore_ascii_case(HISTSERV) {
        histserv::handle(context, &text).await;
    } else if context.server.reserved(&target) {
        // A publisher's nick. Another listener's is answered like a nick no one has: listeners
        // cannot see each other (SPEC §3).
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

/// NOTICE never gets an automatic reply (RFC 2812 §3.3.2). The one NOTICE acted on is a CTCP
/// `DCC REJECT` to HistServ, which withdraws the client's DCC offer.
pub async fn notice(context: &mut Context<'_>, request: &Request) {
    let to_histserv = request.param(0).is_some_and(|target| target.eq_ignore_ascii_case(HISTSERV));
    let text = request.param(1).unwrap_or("");
    let rejects =
        text.trim_matches('\u{1}').get(..10).is_some_and(|verb| verb.eq_ignore_ascii_case("DCC REJECT"));
    if to_histserv && rejects {
        context.server.dcc.withdraw(context.client.id);
    }
}
