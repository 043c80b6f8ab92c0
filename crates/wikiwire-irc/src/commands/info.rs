//! What clients ask of the server itself on their own: TIME, VERSION, ADMIN, INFO, HELP (Modern
//! IRC). A target other than this server gets 402: there is no other server to ask.

use wikiwire_event::Timestamp;
use wikiwire_irc_wire::numeric::*;
use wikiwire_irc_wire::wire::Request;

use super::registration;
use crate::respond::Context;

/// `false` (after 402) when the request names another server.
fn this_server(context: &mut Context<'_>, request: &Request) -> bool {
    match request.param(0) {
        Some(target)
            if !target.eq_ignore_ascii_case(&context.server.settings.server_name)
                && !target.eq_ignore_ascii_case(&context.client.nick()) =>
        {
            context.numeric(ERR_NOSUCHSERVER, &[target]);
            false
        }
        _ => true,
    }
}

pub fn time(context: &mut Context<'_>, request: &Request) {
    if !this_server(context, request) {
        return;
    }
    let now = Timestamp::now();
    let server_name = context.server.settings.server_name.clone();
    let seconds = now.millis().div_euclid(1000).to_string();
    context.numeric(RPL_TIME, &[&server_name, &seconds, "0", &now.to_rfc3339()]);
}

pub fn version(context: &mut Context<'_>, request: &Request) {
    if !this_server(context, request) {
        return;
    }
    let settings = &context.server.settings;
    let (version, server_name) = (settings.version.clone(), settings.server_name.clone());
    context.numeric(RPL_VERSION, &[&version, &server_name, "the event hub of a network of wikis"]);
    registration::isupport(context);
}

pub fn admin(context: &mut Context<'_>, request: &Request) {
    if !this_server(context, request) {
        return;
    }
    let settings = &context.server.settings;
    let (server_name, network) = (settings.server_name.clone(), settings.network.clone());
    let url = context.server.hub.public_url().to_owned();
    context.numeric(RPL_ADMINME, &[&server_name]);
    context.numeric(RPL_ADMINLOC1, &[&format!("{network}: a wikiwire hub; wikis publish, everyone listens")]);
    context.numeric(RPL_ADMINLOC2, &[&format!("About this hub: {url}")]);
    context.numeric(RPL_ADMINEMAIL, &[&format!("See {url} for who runs it")]);
}

pub fn info(context: &mut Context<'_>, request: &Request) {
    if !this_server(context, request) {
        return;
    }
    let version = context.server.settings.version.clone();
    let url = context.server.hub.public_url().to_owned();
    for line in [
        format!("{version}: the event hub of a network of wikis"),
        "Each wiki's changes are announced in #<wiki>.events by the wiki's publisher only".to_owned(),
        "Every event has an id; nothing is missed: /msg HistServ help".to_owned(),
        format!("History, live streams and feeds over HTTP: {url}"),
    ] {
        context.numeric(RPL_INFO, &[&line]);
    }
    context.numeric(RPL_ENDOFINFO, &[]);
}

/// Help subjects: the subject, then its lines.
const HELP: &[(&str, &[&str])] = &[
    (
        "*",
        &[
            "This is a wikiwire hub: wikis announce their changes in channels named #<wiki>.events.",
            "/list shows the channels; /join one to follow it. Only the wiki's publisher speaks there.",
            "Missed something? /msg HistServ help. Commands with help: JOIN LIST HISTSERV CHATHISTORY MODE",
        ],
    ),
    ("JOIN", &["JOIN #<wiki>.events: follow a wiki's changes (see LIST)."]),
    ("LIST", &["LIST: every channel of this hub, with what it carries."]),
    ("HISTSERV", &["/msg HistServ help: past events by id or time, when you were away."]),
    (
        "CHATHISTORY",
        &["CHATHISTORY (IRCv3 draft/chathistory): past events of a channel; msgid is the event id."],
    ),
    ("MODE", &["MODE <yournick> +B marks you as a bot; +i and +w are accepted. Channels are +mnt."]),
];

pub fn help(context: &mut Context<'_>, request: &Request) {
    let subject = request.param(0).unwrap_or("*").to_ascii_uppercase();
    let Some((name, lines)) = HELP.iter().find(|(name, _)| *name == subject) else {
        return context.numeric(ERR_HELPNOTFOUND, &[&subject]);
    };
    for (index, line) in lines.iter().enumerate() {
        context.numeric(if index == 0 { RPL_HELPSTART } else { RPL_HELPTXT }, &[name, line]);
    }
    context.numeric(RPL_ENDOFHELP, &[name, "End of /HELP"]);
}
