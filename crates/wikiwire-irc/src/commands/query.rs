//! WHO, WHOIS, WHOWAS, USERHOST, ISON, AWAY, MOTD, LUSERS. Listeners are invisible to each
//! other (SPEC §3): queries show publishers, services and yourself; another listener's nick is
//! answered as if no one had it (only NICK, which must refuse it, tells that it is taken).

use wikiwire_irc_wire::numeric::*;
use wikiwire_irc_wire::wire::Request;

use crate::respond::Context;
use crate::server::{HISTSERV, WIKIMEDIA_SPEAKER};

/// What a WHO or WHOIS may show of a nick.
enum Visible {
    Yourself,
    Publisher(String, Vec<String>),
    HistServ,
    /// `rc-pmtpa`, under `wikimedia_compat`.
    Speaker,
}

fn visible(context: &Context<'_>, nick: &str) -> Option<Visible> {
    if nick.eq_ignore_ascii_case(&context.client.nick()) {
        return Some(Visible::Yourself);
    }
    if nick.eq_ignore_ascii_case(HISTSERV) {
        return Some(Visible::HistServ);
    }
    if context.server.settings.limits.wikimedia_compat && nick.eq_ignore_ascii_case(WIKIMEDIA_SPEAKER) {
        return Some(Visible::Speaker);
    }
    let publisher = context.server.hub.publishers().by_name(nick)?;
    Some(Visible::Publisher(publisher.name.clone(), publisher.wikis.clone()))
}

pub fn who(context: &mut Context<'_>, request: &Request) {
    let mask = request.param(0).unwrap_or("*").to_owned();
    let server_name = context.server.settings.server_name.clone();
    let publisher_host = format!("publisher.{server_name}");
    if let Some(channel) = context.server.channels.find(&mask).cloned() {
        if context.server.settings.wikimedia_speaks(&channel) {
            who_speaker(context, &channel.spec.name, "HB+");
        } else {
            for speaker in &channel.spec.speakers {
                let realname = format!("0 wikiwire publisher {speaker}");
                context.numeric(
                    RPL_WHOREPLY,
                    &[&channel.spec.name, speaker, &publisher_host, &server_name, speaker, "HB+", &realname],
                );
            }
        }
        if channel.is_member(context.client.id) {
            who_self(context, &channel.spec.name);
        }
    } else {
        match visible(context, &mask) {
            Some(Visible::Yourself) => who_self(context, "*"),
            Some(Visible::Publisher(name, _)) => {
                let realname = format!("0 wikiwire publisher {name}");
                context.numeric(
                    RPL_WHOREPLY,
                    &["*", &name, &publisher_host, &server_name, &name, "HB", &realname],
                );
            }
            Some(Visible::HistServ) => {
                let host = format!("services.{server_name}");
                context.numeric(
                    RPL_WHOREPLY,
                    &["*", HISTSERV, &host, &server_name, HISTSERV, "HB", "0 History service"],
                );
            }
            Some(Visible::Speaker) => who_speaker(context, "*", "HB"),
            None => {}
        }
    }
    context.numeric(RPL_ENDOFWHO, &[&mask]);
}

/// `rc-pmtpa`'s WHO line: its host is the server's name, as on irc.wikimedia.org.
fn who_speaker(context: &mut Context<'_>, channel: &str, flags: &str) {
    let server_name = context.server.settings.server_name.clone();
    let realname = format!("0 {WIKIMEDIA_SPEAKER}");
    let nick = WIKIMEDIA_SPEAKER;
    context.numeric(RPL_WHOREPLY, &[channel, nick, &server_name, &server_name, nick, flags, &realname]);
}

/// Your own WHO line. Its flags are what clients track you by (HexChat and WeeChat read away
/// from them): `G` when away, else `H`, then `B` for bot mode (IRCv3 bot-mode).
fn who_self(context: &mut Context<'_>, channel: &str) {
    let (nick, user, realname, flags) = {
        let state = context.client.state();
        let mut flags = String::from(if state.away.is_some() { "G" } else { "H" });
        if state.bot || state.account.is_some() {
            flags.push('B');
        }
        (state.nick.clone(), state.user.clone().unwrap_or_default(), state.realname.clone(), flags)
    };
    let host = context.server.settings.listener_host();
    let server_name = context.server.settings.server_name.clone();
    context.numeric(
        RPL_WHOREPLY,
        &[channel, &user, &host, &server_name, &nick, &flags, &format!("0 {realname}")],
    );
}

pub fn whois(context: &mut Context<'_>, request: &Request) {
    // `WHOIS <server> <nick>` names the nick last.
    let nick = request.params.last().map(String::as_str).unwrap_or("").to_owned();
    let server_name = context.server.settings.server_name.clone();
    let network = context.server.settings.network.clone();
    match visible(context, &nick) {
        None => {
            context.numeric(ERR_NOSUCHNICK, &[&nick]);
        }
        Some(Visible::Publisher(name, wikis)) => {
            let host = format!("publisher.{server_name}");
            context.numeric(
                RPL_WHOISUSER,
                &[&name, &name, &host, "*", &format!("Publisher for {}", wikis.join(", "))],
            );
            let channels: Vec<String> = context
                .server
                .channels
                .all()
                .filter(|channel| channel.may_speak(&name))
                .map(|channel| format!("+{}", channel.spec.name))
                .collect();
            if !channels.is_empty() {
                context.numeric(RPL_WHOISCHANNELS, &[&name, &channels.join(" ")]);
            }
            context.numeric(RPL_WHOISSERVER, &[&name, &server_name, &network]);
            context.numeric(RPL_WHOISACCOUNT, &[&name, &name]);
            context.numeric(RPL_WHOISBOT, &[&name]);
        }
        Some(Visible::HistServ) => {
            let host = format!("services.{server_name}");
            context.numeric(
                RPL_WHOISUSER,
                &[HISTSERV, HISTSERV, &host, "*", "History service: /msg HistServ help"],
            );
            context.numeric(RPL_WHOISSERVER, &[HISTSERV, &server_name, &network]);
            context.numeric(RPL_WHOISBOT, &[HISTSERV]);
        }
        Some(Visible::Speaker) => {
            let nick = WIKIMEDIA_SPEAKER;
            context.numeric(RPL_WHOISUSER, &[nick, nick, &server_name, "*", "Recent changes of the wikis"]);
            context.numeric(RPL_WHOISSERVER, &[nick, &server_name, &network]);
            context.numeric(RPL_WHOISACCOUNT, &[nick, nick]);
            context.numeric(RPL_WHOISBOT, &[nick]);
        }
        Some(Visible::Yourself) => {
            let (user, realname, channels) = {
                let state = context.client.state();
                let channels: Vec<String> = state
                    .channels
                    .iter()
                    .filter_map(|&index| context.server.channels.get(index))
                    .map(|channel| channel.spec.name.clone())
                    .collect();
                (state.user.clone().unwrap_or_default(), state.realname.clone(), channels)
            };
            let host = context.server.settings.listener_host();
            let own = context.client.nick();
            context.numeric(RPL_WHOISUSER, &[&own, &user, &host, "*", &realname]);
            if !channels.is_empty() {
                context.numeric(RPL_WHOISCHANNELS, &[&own, &channels.join(" ")]);
            }
            context.numeric(RPL_WHOISSERVER, &[&own, &server_name, &network]);
            let (away, bot) = {
                let state = context.client.state();
                (state.away.clone(), state.bot)
            };
            if let Some(away) = away {
                context.numeric(RPL_AWAY, &[&own, &away]);
            }
            if bot {
                context.numeric(RPL_WHOISBOT, &[&own]);
            }
        }
    }
    context.numeric(RPL_ENDOFWHOIS, &[&nick]);
}

/// No nick history is kept: every WHOWAS is answered "there was no such nickname".
pub fn whowas(context: &mut Context<'_>, request: &Request) {
    let Some(nick) = request.param(0).filter(|nick| !nick.is_empty()).map(str::to_owned) else {
        return context.numeric(ERR_NONICKNAMEGIVEN, &[]);
    };
    context.numeric(ERR_WASNOSUCHNICK, &[&nick]);
    context.numeric(RPL_ENDOFWHOWAS, &[&nick]);
}

/// `USERHOST nick...` (at most 5): `nick=+user@host` for each nick that is here.
pub fn userhost(context: &mut Context<'_>, request: &Request) {
    let server_name = context.server.settings.server_name.clone();
    let mut replies = Vec::new();
    for nick in request.params.iter().take(5) {
        let reply = match visible(context, nick) {
            Some(Visible::Yourself) => {
                let state = context.client.state();
                let away = if state.away.is_some() { '-' } else { '+' };
                let user = state.user.clone().unwrap_or_else(|| "~".into());
                let host = context.server.settings.listener_host();
                format!("{}={away}{user}@{host}", state.nick)
            }
            Some(Visible::Publisher(name, _)) if context.server.client_by_nick(&name).is_some() => {
                format!("{name}=+{name}@publisher.{server_name}")
            }
            Some(Visible::HistServ) => format!("{HISTSERV}=+{HISTSERV}@services.{server_name}"),
            Some(Visible::Speaker) => format!("{WIKIMEDIA_SPEAKER}=+{WIKIMEDIA_SPEAKER}@{server_name}"),
            Some(Visible::Publisher(..)) | None => continue,
        };
        replies.push(reply);
    }
    context.numeric(RPL_USERHOST, &[&replies.join(" ")]);
}

/// `ISON nick...`: which of the nicks are connected (notify lists): yourself, HistServ and
/// publishers; never another listener.
pub fn ison(context: &mut Context<'_>, request: &Request) {
    let online: Vec<&str> = request
        .params
        .iter()
        .flat_map(|param| param.split(' '))
        .filter(|nick| !nick.is_empty())
        .filter(|nick| match visible(context, nick) {
            Some(Visible::Yourself | Visible::HistServ | Visible::Speaker) => true,
            Some(Visible::Publisher(name, _)) => context.server.client_by_nick(&name).is_some(),
            None => false,
        })
        .collect();
    context.numeric(RPL_ISON, &[&online.join(" ")]);
}

/// `AWAY :message` marks the client away, `AWAY` alone back; shown in its own WHOIS and USERHOST.
pub fn away(context: &mut Context<'_>, request: &Request) {
    let message = request
        .param(0)
        .filter(|message| !message.is_empty())
        .map(|message| message.chars().take(390).collect::<String>());
    let back = message.is_none();
    context.client.state().away = message;
    context.numeric(if back { RPL_UNAWAY } else { RPL_NOWAWAY }, &[]);
}

pub fn motd(context: &mut Context<'_>) {
    let lines = context.server.settings.motd.clone();
    if lines.is_empty() {
        return context.numeric(ERR_NOMOTD, &[]);
    }
    let server_name = context.server.settings.server_name.clone();
    context.numeric(RPL_MOTDSTART, &[&format!("- {server_name} Message of the day - ")]);
    for line in lines {
        context.numeric(RPL_MOTD, &[&format!("- {line}")]);
    }
    context.numeric(RPL_ENDOFMOTD, &[]);
}

/// Modern IRC's LUSERS replies: visible and invisible users apart (RPL_LUSERCLIENT), and the
/// most users there have been at once since start (RPL_LOCALUSERS, RPL_GLOBALUSERS).
pub fn lusers(context: &mut Context<'_>) {
    let counts = context.server.counts();
    let channels = context.server.channels.count().to_string();
    let unknown = counts.connections.saturating_sub(counts.users).to_string();
    let (users, max) = (counts.users, counts.max_users);
    let visible = users.saturating_sub(counts.invisible);
    context.numeric(
        RPL_LUSERCLIENT,
        &[&format!("There are {visible} users and {} invisible on 1 servers", counts.invisible)],
    );
    context.numeric(RPL_LUSEROP, &["0"]);
    context.numeric(RPL_LUSERUNKNOWN, &[&unknown]);
    context.numeric(RPL_LUSERCHANNELS, &[&channels]);
    context.numeric(RPL_LUSERME, &[&format!("I have {users} clients and 0 servers")]);
    let (current, most) = (users.to_string(), max.to_string());
    context.numeric(RPL_LOCALUSERS, &[&current, &most, &format!("Current local users {users}, max {max}")]);
    context.numeric(RPL_GLOBALUSERS, &[&current, &most, &format!("Current global users {users}, max {max}")]);
}
