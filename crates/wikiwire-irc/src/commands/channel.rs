//! JOIN, PART, NAMES, TOPIC, MODE, LIST. Channels are fixed and `+mnt`; a listener's join and
//! part are answered to itself only, and NAMES shows the channel's publishers and yourself.

use std::sync::Arc;

use wikiwire_irc_wire::numeric::*;
use wikiwire_irc_wire::wire::{Line, Request};

use crate::channels::Channel;
use crate::respond::Context;

/// Channels one client may be in.
const MAX_CHANNELS: usize = 100;

pub fn join(context: &mut Context<'_>, request: &Request) {
    if request.params[0] == "0" {
        let channels = std::mem::take(&mut context.client.state().channels);
        for index in channels {
            if let Some(channel) = context.server.channels.get(index).cloned() {
                leave(context, &channel, "Left all channels");
            }
        }
        return;
    }
    for name in request.params[0].split(',').filter(|name| !name.is_empty()) {
        let Some(channel) = context.server.channels.find(name).cloned() else {
            context.numeric(ERR_NOSUCHCHANNEL, &[name]);
            continue;
        };
        if context.client.state().channels.len() >= MAX_CHANNELS {
            context.numeric(ERR_TOOMANYCHANNELS, &[name]);
            continue;
        }
        if !channel.join(context.client) {
            continue;
        }
        context.client.state().channels.push(channel.index);
        let mask = context.mask();
        context.push(Line::new("JOIN").source(mask).param(channel.spec.name.clone()));
        topic_reply(context, &channel);
        names_reply(context, &channel);
    }
}

pub fn part(context: &mut Context<'_>, request: &Request) {
    let reason = request.param(1).unwrap_or("Leaving").to_owned();
    for name in request.params[0].split(',').filter(|name| !name.is_empty()) {
        let Some(channel) = context.server.channels.find(name).cloned() else {
            context.numeric(ERR_NOSUCHCHANNEL, &[name]);
            continue;
        };
        let was_member = {
            let mut state = context.client.state();
            let before = state.channels.len();
            state.channels.retain(|&joined| joined != channel.index);
            before != state.channels.len()
        };
        if !was_member {
            context.numeric(ERR_NOTONCHANNEL, &[&channel.spec.name]);
            continue;
        }
        leave(context, &channel, &reason);
    }
}

fn leave(context: &mut Context<'_>, channel: &Channel, reason: &str) {
    channel.part(context.client.id);
    let mask = context.mask();
    context.push(Line::new("PART").source(mask).param(channel.spec.name.clone()).text(reason));
}

pub fn names(context: &mut Context<'_>, request: &Request) {
    let Some(name) = request.param(0) else {
        return context.numeric(RPL_ENDOFNAMES, &["*"]);
    };
    match context.server.channels.find(name).cloned() {
        Some(channel) => names_reply(context, &channel),
        None => context.numeric(RPL_ENDOFNAMES, &[name]),
    }
}

/// The publishers (voiced; `rc-pmtpa` in a `mediawiki` channel under `wikimedia_compat`), and
/// yourself if you are in the channel.
fn names_reply(context: &mut Context<'_>, channel: &Channel) {
    let nick = context.client.nick();
    let speakers = context.server.settings.shown_speakers(channel);
    let mut names: Vec<String> = speakers.iter().map(|speaker| format!("+{speaker}")).collect();
    let speaks_here = speakers.iter().any(|speaker| speaker.eq_ignore_ascii_case(&nick));
    if channel.is_member(context.client.id) && !speaks_here {
        names.push(nick);
    }
    // 353 lines stay well under 512 bytes: at most 20 names of at most 33 bytes each.
    for chunk in names.chunks(20) {
        context.numeric(RPL_NAMREPLY, &["=", &channel.spec.name, &chunk.join(" ")]);
    }
    context.numeric(RPL_ENDOFNAMES, &[&channel.spec.name]);
}

pub fn topic(context: &mut Context<'_>, request: &Request) {
    let Some(channel) = context.server.channels.find(&request.params[0]).cloned() else {
        return context.numeric(ERR_NOSUCHCHANNEL, &[&request.params[0]]);
    };
    if request.params.len() > 1 {
        return context.numeric(ERR_CHANOPRIVSNEEDED, &[&channel.spec.name]);
    }
    topic_reply(context, &channel);
}

fn topic_reply(context: &mut Context<'_>, channel: &Channel) {
    let created = context.server.settings.created_unix.to_string();
    let server_name = context.server.settings.server_name.clone();
    context.numeric(RPL_TOPIC, &[&channel.spec.name, &channel.spec.topic]);
    context.numeric(RPL_TOPICWHOTIME, &[&channel.spec.name, &server_name, &created]);
}

pub fn mode(context: &mut Context<'_>, request: &Request) {
    let target = request.params[0].as_str();
    let changes: Vec<&str> = request.params[1..].iter().map(String::as_str).collect();
    if target.starts_with('#') {
        let Some(channel) = context.server.channels.find(target).cloned() else {
            return context.numeric(ERR_NOSUCHCHANNEL, &[target]);
        };
        match changes.first().copied() {
            None => {
                let created = context.server.settings.created_unix.to_string();
                context.numeric(RPL_CHANNELMODEIS, &[&channel.spec.name, "+mnt"]);
                context.numeric(RPL_CREATIONTIME, &[&channel.spec.name, &created]);
            }
            // Asking for the ban list is how many clients look at a channel: it is empty.
            Some("b" | "+b") if changes.len() == 1 => {
                context.numeric(RPL_ENDOFBANLIST, &[&channel.spec.name])
            }
            Some(_) => context.numeric(ERR_CHANOPRIVSNEEDED, &[&channel.spec.name]),
        }
        return;
    }
    let nick = context.client.nick();
    if !target.eq_ignore_ascii_case(&nick) {
        return context.numeric(ERR_USERSDONTMATCH, &[]);
    }
    let Some(change) = changes.first() else {
        let modes = user_modes(context);
        return context.numeric(RPL_UMODEIS, &[&modes]);
    };
    // Letter by letter (Modern IRC): what is known is applied, the rest gets one 501.
    let (mut adding, mut unknown) = (true, false);
    let mut applied = String::new();
    let mut applied_sign: Option<bool> = None;
    let mut invisible_changed = None;
    {
        let mut state = context.client.state();
        for letter in change.chars() {
            let flag = match letter {
                '+' | '-' => {
                    adding = letter == '+';
                    continue;
                }
                'i' => &mut state.invisible,
                'w' => &mut state.wallops,
                'B' => &mut state.bot,
                _ => {
                    unknown = true;
                    continue;
                }
            };
            if *flag == adding {
                continue;
            }
            *flag = adding;
            if letter == 'i' {
                invisible_changed = Some(adding);
            }
            if applied_sign != Some(adding) {
                applied.push(if adding { '+' } else { '-' });
                applied_sign = Some(adding);
            }
            applied.push(letter);
        }
    }
    if let Some(invisible) = invisible_changed {
        context.server.invisible_changed(invisible);
    }
    if !applied.is_empty() {
        let mask = context.mask();
        context.push(Line::new("MODE").source(mask).param(nick).param(applied));
    }
    if unknown {
        context.numeric(ERR_UMODEUNKNOWNFLAG, &[]);
    }
}

/// The client's user modes, e.g. `+Bi`. A publisher is always a bot.
pub fn user_modes(context: &Context<'_>) -> String {
    let state = context.client.state();
    let mut modes = String::from("+");
    if state.account.is_some() || state.bot {
        modes.push('B');
    }
    if state.invisible {
        modes.push('i');
    }
    if state.wallops {
        modes.push('w');
    }
    modes
}

pub fn list(context: &mut Context<'_>, request: &Request) {
    let wanted: Option<Vec<&str>> = request.param(0).map(|names| names.split(',').collect());
    context.numeric(RPL_LISTSTART, &["Channel"]);
    let channels: Vec<Arc<Channel>> = context.server.channels.all().cloned().collect();
    for channel in channels {
        if wanted
            .as_ref()
            .is_some_and(|names| !names.iter().any(|name| name.eq_ignore_ascii_case(&channel.spec.name)))
        {
            continue;
        }
        let population = channel.population().to_string();
        context.numeric(RPL_LIST, &[&channel.spec.name, &population, &channel.spec.topic]);
    }
    context.numeric(RPL_LISTEND, &[]);
}
