//! Connection registration: CAP negotiation (IRCv3 capability-negotiation, version 302), SASL
//! PLAIN (IRCv3 sasl-3.1), PASS, NICK, USER, and the welcome burst. Publisher nicks are reserved:
//! only a client that proved it speaks for the publisher gets one, and a new login takes the
//! session over from an old one.

use base64::Engine as _;
use wikiwire_hub::Claim;
use wikiwire_irc_wire::names::{CHANNELLEN, NICKLEN, check_nick};
use wikiwire_irc_wire::numeric::*;
use wikiwire_irc_wire::wire::{Line, Request};

use super::query;
use crate::caps;
use crate::client::Sasl;
use crate::respond::Context;
use crate::server::NickRefusal;
use wikiwire_irc_wire::sasl;

/// Base64 SASL payload accepted at most (a name and a token fit easily).
const SASL_LIMIT: usize = 2048;

pub fn cap(context: &mut Context<'_>, request: &Request) {
    let subcommand = request.params[0].to_ascii_uppercase();
    let target = context.client.nick();
    let registered = context.client.state().registered;
    match subcommand.as_str() {
        "LS" => {
            let version: u32 = request.param(1).and_then(|text| text.parse().ok()).unwrap_or(0);
            {
                let mut state = context.client.state();
                state.negotiating |= !registered;
                state.cap_version = state.cap_version.max(version);
            }
            if version >= 302 {
                // CAP LS 302 implies cap-notify (capability-negotiation, "cap-notify").
                context.client.set_caps(context.client.caps().with(caps::CAP_NOTIFY));
            }
            let offered = caps::advertised(version).join(" ");
            context.push(context.from_server("CAP").param(target).param("LS").param(offered));
        }
        "REQ" => {
            let list = request.param(1).unwrap_or("").trim();
            context.client.state().negotiating |= !registered;
            match context.client.caps().request(list) {
                Some(caps) => {
                    context.client.set_caps(caps);
                    context.push(context.from_server("CAP").param(target).param("ACK").param(list));
                }
                None => context.push(context.from_server("CAP").param(target).param("NAK").param(list)),
            }
        }
        "LIST" => {
            let names = context.client.caps().names().join(" ");
            context.push(context.from_server("CAP").param(target).param("LIST").param(names));
        }
        "END" => {
            context.client.state().negotiating = false;
            try_register(context);
        }
        _ => context.numeric(ERR_INVALIDCAPCMD, &[&subcommand]),
    }
}

pub fn authenticate(context: &mut Context<'_>, request: &Request) {
    if !context.client.caps().has(caps::SASL) {
        return context.numeric(ERR_SASLFAIL, &[]);
    }
    let data = request.params[0].as_str();
    enum Step {
        Reply(Numeric),
        Mechanisms,
        Continue,
        More,
        Verify(String),
        AfterRegistration,
    }
    let step = {
        let mut state = context.client.state();
        if state.sasl == Sasl::Done || (state.registered && state.account.is_some()) {
            Step::Reply(ERR_SASLALREADY)
        } else if state.registered {
            // Logging in changes who speaks (and the nick): only before registration here.
            Step::AfterRegistration
        } else if state.sasl == Sasl::Discarding {
            // The rest of a payload already refused: read and dropped, the last chunk included.
            if data.len() != sasl::CHUNK {
                state.sasl = Sasl::Idle;
            }
            Step::More
        } else if data == "*" {
            let was_running = state.sasl != Sasl::Idle;
            state.sasl = Sasl::Idle;
            if was_running { Step::Reply(ERR_SASLABORTED) } else { Step::Reply(ERR_SASLFAIL) }
        } else {
            match &mut state.sasl {
                Sasl::Idle if data.eq_ignore_ascii_case("PLAIN") => {
                    state.sasl = Sasl::Plain(String::new());
                    Step::Continue
                }
                Sasl::Idle => Step::Mechanisms,
                Sasl::Plain(buffer) => {
                    if data != "+" {
                        buffer.push_str(data);
                    }
                    if buffer.len() > SASL_LIMIT {
                        // More chunks of this payload may follow: drop them, answer once.
                        state.sasl = if data.len() == sasl::CHUNK { Sasl::Discarding } else { Sasl::Idle };
                        Step::Reply(ERR_SASLTOOLONG)
                    } else if data.len() == sasl::CHUNK {
                        Step::More
                    } else {
                        let payload = std::mem::take(buffer);
                        state.sasl = Sasl::Idle;
                        Step::Verify(payload)
                    }
                }
                Sasl::Done => Step::Reply(ERR_SASLALREADY),
                Sasl::Discarding => Step::More,
            }
        }
    };
    match step {
        Step::Reply(numeric) => context.numeric(numeric, &[]),
        Step::Mechanisms => {
            context.numeric(RPL_SASLMECHS, &["PLAIN"]);
            context.numeric(ERR_SASLFAIL, &[]);
        }
        Step::Continue => context.push(Line::new("AUTHENTICATE").param("+")),
        Step::More => {}
        Step::Verify(payload) => verify_plain(context, &payload),
        Step::AfterRegistration => {
            let line = context
                .from_server(ERR_SASLFAIL.code)
                .param(context.client.nick())
                .text("Log in before registration here: CAP REQ :sasl, AUTHENTICATE, then CAP END");
            context.push(line);
        }
    }
}

/// SASL PLAIN (RFC 4616): `authzid \0 authcid \0 password`, base64. The authentication identity
/// is the publisher's name and the password its token.
fn verify_plain(context: &mut Context<'_>, payload: &str) {
    let hub = &context.server.hub;
    let credentials = plain_credentials(payload);
    // A success proves the name it logged in as; a payload that names no one proves nothing.
    let claim = credentials.as_ref().map_or(Claim::Unnamed, |(name, _)| Claim::Publisher(name));
    let checked = hub.logins().login(context.client.ip, claim, || {
        let (authcid, password) = credentials.as_ref()?;
        hub.publishers().authenticate(authcid, password)
    });
    let publisher = match checked {
        Ok(Some(publisher)) => publisher,
        Ok(None) => {
            tracing::debug!(client = context.client.id, "SASL PLAIN refused");
            return context.numeric(ERR_SASLFAIL, &[]);
        }
        Err(wait) => {
            let line = context
                .from_server(ERR_SASLFAIL.code)
                .param(context.client.nick())
                .text(wikiwire_hub::login_guard::refusal(wait));
            return context.push(line);
        }
    };
    let name = publisher.name.clone();
    {
        let mut state = context.client.state();
        state.account = Some(publisher);
        state.sasl = Sasl::Done;
    }
    let mask = context.server.settings.publisher_mask(&name);
    context.numeric(RPL_LOGGEDIN, &[&mask, &name, &format!("You are now logged in as {name}")]);
    context.numeric(RPL_SASLSUCCESS, &[]);
}

/// SASL PLAIN's payload as (authentication identity, password), when it is well formed and the
/// authorization identity is empty or the same.
fn plain_credentials(payload: &str) -> Option<(String, String)> {
    let text = String::from_utf8(base64::engine::general_purpose::STANDARD.decode(payload).ok()?).ok()?;
    let mut parts = text.splitn(3, '\0');
    let (authzid, authcid, password) = (parts.next()?, parts.next()?, parts.next()?);
    if !authzid.is_empty() && authzid != authcid {
        return None;
    }
    Some((authcid.to_owned(), password.to_owned()))
}

pub fn pass(context: &mut Context<'_>, request: &Request) {
    let mut state = context.client.state();
    if state.registered {
        drop(state);
        return context.numeric(ERR_ALREADYREGISTERED, &[]);
    }
    state.password = Some(request.params[0].clone());
}

pub fn nick(context: &mut Context<'_>, request: &Request) {
    let Some(new) = request.param(0).filter(|nick| !nick.is_empty()) else {
        return context.numeric(ERR_NONICKNAMEGIVEN, &[]);
    };
    if check_nick(new).is_err() {
        return context.numeric(ERR_ERRONEUSNICKNAME, &[new]);
    }
    let (registered, speaks, old) = {
        let state = context.client.state();
        (state.registered, state.account.is_some(), state.nick.clone())
    };
    if !registered {
        // A reserved nick is judged at registration, when SASL or PASS may have proved it, even
        // while the publisher's old session still holds it (the new login takes over).
        if !context.server.reserved(new)
            && context.server.check_nick(context.client, new) == Err(NickRefusal::InUse)
        {
            return context.numeric(ERR_NICKNAMEINUSE, &[new]);
        }
        context.client.state().nick = new.to_owned();
        return try_register(context);
    }
    if speaks {
        return context.numeric(ERR_NONICKCHANGE, &[new]);
    }
    if old == new {
        return;
    }
    match context.server.rename(context.client, &old, new) {
        Ok(()) => {
            let mask = context.mask();
            context.client.state().nick = new.to_owned();
            context.push(Line::new("NICK").source(mask).param(new));
        }
        Err(NickRefusal::Reserved) => context.numeric(ERR_NICKNAMEINUSE, &[new]),
        Err(NickRefusal::InUse) => context.numeric(ERR_NICKNAMEINUSE, &[new]),
    }
}

pub fn user(context: &mut Context<'_>, request: &Request) {
    {
        let mut state = context.client.state();
        if state.registered {
            drop(state);
            return context.numeric(ERR_ALREADYREGISTERED, &[]);
        }
        // Modern IRC, USER: an empty username SHOULD be refused with 461 "even if an empty
        // parameter is provided"; an empty realname is refused the same way (as Sable does).
        if request.params[0].is_empty() || request.params[3].is_empty() {
            drop(state);
            return context.numeric(ERR_NEEDMOREPARAMS, &["USER"]);
        }
        let user: String = request.params[0]
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || "-_.".contains(*c))
            .take(16)
            .collect();
        state.user = Some(if user.is_empty() { "user".into() } else { user });
        state.realname = request.params[3].chars().take(100).collect();
    }
    try_register(context);
}

pub fn ping(context: &mut Context<'_>, request: &Request) {
    let server = context.server.settings.server_name.clone();
    context.push(context.from_server("PONG").param(server).param(request.params[0].clone()));
}

pub fn quit(context: &mut Context<'_>, request: &Request) {
    let message = request.param(0).unwrap_or("Client quit");
    context.client.close(&format!("Quit: {message}"));
}

/// Completes registration once NICK, USER and any CAP negotiation are done.
fn try_register(context: &mut Context<'_>) {
    let (nick, ready, mut account, password) = {
        let state = context.client.state();
        let ready = !state.registered && state.nick != "*" && state.user.is_some() && !state.negotiating;
        (state.nick.clone(), ready, state.account.clone(), state.password.clone())
    };
    if !ready {
        return;
    }
    if let (None, Some(password)) = (&account, password) {
        // PASS name:token, or PASS token with the publisher's name as nick.
        let (name, token) = password.split_once(':').unwrap_or((nick.as_str(), password.as_str()));
        let hub = &context.server.hub;
        let claim = Claim::Publisher(name);
        match hub.logins().login(context.client.ip, claim, || hub.publishers().authenticate(name, token)) {
            Ok(Some(publisher)) => account = Some(publisher),
            Ok(None) => {
                context.numeric(ERR_PASSWDMISMATCH, &[]);
                context.client.close("Password incorrect");
                return;
            }
            Err(wait) => {
                let refusal = wikiwire_hub::login_guard::refusal(wait);
                let line =
                    context.from_server(ERR_PASSWDMISMATCH.code).param(context.client.nick()).text(&refusal);
                context.push(line);
                context.client.close(&refusal);
                return;
            }
        }
    }
    let nick = account.as_ref().map_or(nick, |publisher| publisher.name.clone());
    match context.server.register(context.client, &nick, account.as_deref()) {
        Err(refusal) => {
            let why = match refusal {
                NickRefusal::Reserved => "Nickname is reserved (a publisher's, or a service's)",
                NickRefusal::InUse => "Nickname is already in use",
            };
            context.push(context.from_server(ERR_NICKNAMEINUSE.code).param("*").param(nick).text(why));
        }
        Ok(displaced) => {
            if let Some(old) = displaced {
                old.close("Logged in from elsewhere");
            }
            // Logged in under another nick: the client is told its nick is the publisher's
            // (as IRCv3 servers that tie nicks to accounts do), before 001 addresses it so.
            let asked = context.client.nick();
            if asked != "*" && asked != nick {
                let mask = context.mask();
                context.push(Line::new("NICK").source(mask).param(nick.clone()));
            }
            {
                let mut state = context.client.state();
                state.registered = true;
                state.nick = nick;
                state.account = account;
            }
            welcome(context);
        }
    }
}

/// 001–005, LUSERS and MOTD (Modern IRC, "Connection Registration").
fn welcome(context: &mut Context<'_>) {
    let settings = &context.server.settings;
    let (network, server_name, version, created) = (
        settings.network.clone(),
        settings.server_name.clone(),
        settings.version.clone(),
        settings.created.clone(),
    );
    let mask = context.mask();
    context.numeric(RPL_WELCOME, &[&format!("Welcome to the {network} IRC network, {mask}")]);
    context.numeric(RPL_YOURHOST, &[&format!("Your host is {server_name}, running version {version}")]);
    context.numeric(RPL_CREATED, &[&format!("This server was created {created}")]);
    context.numeric(RPL_MYINFO, &[&server_name, &version, "Biw", "mntv", "v"]);
    isupport(context);
    query::lusers(context);
    query::motd(context);
    if let Some(publisher) = context.client.account() {
        let nick = publisher.name.clone();
        let channels: Vec<String> = context
            .server
            .channels
            .all()
            .filter(|channel| channel.may_speak(&publisher.name))
            .map(|channel| channel.spec.name.clone())
            .collect();
        let text = format!(
            "You speak for {}. Publish by PRIVMSG of a packed event to {}; echo-message gives you its id.",
            publisher.wikis.join(", "),
            channels.join(" ")
        );
        context.push(context.from_server("NOTICE").param(nick).text(text));
    }
}

/// RPL_ISUPPORT (005): in the welcome, and after RPL_VERSION.
pub(super) fn isupport(context: &mut Context<'_>) {
    let network = context.server.settings.network.clone();
    let history_limit = context.server.settings.limits.history_limit;
    let tokens = [
        "BOT=B".to_owned(),
        "CASEMAPPING=ascii".to_owned(),
        "CHANLIMIT=#:100".to_owned(),
        "CHANMODES=,,,mnt".to_owned(),
        format!("CHANNELLEN={CHANNELLEN}"),
        "CHANTYPES=#".to_owned(),
        format!("CHATHISTORY={history_limit}"),
        "MSGREFTYPES=msgid,timestamp".to_owned(),
        format!("NETWORK={network}"),
        format!("NICKLEN={NICKLEN}"),
        "PREFIX=(v)+".to_owned(),
        "TARGMAX=PRIVMSG:1,NOTICE:1,JOIN:100,NAMES:1,WHOIS:1".to_owned(),
        "TOPICLEN=390".to_owned(),
        "UTF8ONLY".to_owned(),
    ];
    for chunk in tokens.chunks(12) {
        let words: Vec<&str> = chunk.iter().map(String::as_str).collect();
        context.numeric(RPL_ISUPPORT, &words);
    }
}
