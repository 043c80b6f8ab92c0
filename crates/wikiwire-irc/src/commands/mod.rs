//! Commands as a table: each verb with its minimum parameters, whether it is allowed before
//! registration (ircstream's whitelist), and its handler. Handlers are short functions that add
//! replies to a `Context`; every refusal is a numeric or a standard reply, never a dropped
//! connection.

mod channel;
mod history;
mod histserv;
mod info;
mod message;
mod query;
mod registration;

use std::sync::Arc;

use wikiwire_irc_wire::numeric::{ERR_NEEDMOREPARAMS, ERR_NOTREGISTERED, ERR_UNKNOWNCOMMAND};
use wikiwire_irc_wire::wire::Request;

use crate::client::Client;
use crate::pipeline::Pipeline;
use crate::respond::Context;
use crate::server::Server;

#[derive(Clone, Copy, Debug)]
enum Handler {
    Cap,
    Authenticate,
    Pass,
    Nick,
    User,
    Ping,
    Pong,
    Quit,
    Join,
    Part,
    Names,
    Topic,
    Mode,
    List,
    Who,
    Whois,
    Whowas,
    Userhost,
    Ison,
    Away,
    Time,
    Version,
    Admin,
    Info,
    Help,
    Motd,
    Lusers,
    Privmsg,
    Notice,
    Tagmsg,
    Chathistory,
}

struct Spec {
    verb: &'static str,
    min_params: usize,
    before_registration: bool,
    handler: Handler,
}

const fn spec(verb: &'static str, min_params: usize, before_registration: bool, handler: Handler) -> Spec {
    Spec { verb, min_params, before_registration, handler }
}

const COMMANDS: &[Spec] = &[
    spec("CAP", 1, true, Handler::Cap),
    spec("AUTHENTICATE", 1, true, Handler::Authenticate),
    spec("PASS", 1, true, Handler::Pass),
    spec("NICK", 0, true, Handler::Nick),
    spec("USER", 4, true, Handler::User),
    spec("PING", 1, true, Handler::Ping),
    spec("PONG", 0, true, Handler::Pong),
    spec("QUIT", 0, true, Handler::Quit),
    spec("JOIN", 1, false, Handler::Join),
    spec("PART", 1, false, Handler::Part),
    spec("NAMES", 0, false, Handler::Names),
    spec("TOPIC", 1, false, Handler::Topic),
    spec("MODE", 1, false, Handler::Mode),
    spec("LIST", 0, false, Handler::List),
    spec("WHO", 0, false, Handler::Who),
    spec("WHOIS", 1, false, Handler::Whois),
    spec("WHOWAS", 0, false, Handler::Whowas),
    spec("USERHOST", 1, false, Handler::Userhost),
    spec("ISON", 1, false, Handler::Ison),
    spec("AWAY", 0, false, Handler::Away),
    spec("TIME", 0, false, Handler::Time),
    spec("VERSION", 0, false, Handler::Version),
    spec("ADMIN", 0, false, Handler::Admin),
    spec("INFO", 0, false, Handler::Info),
    spec("HELP", 0, false, Handler::Help),
    spec("MOTD", 0, false, Handler::Motd),
    spec("LUSERS", 0, false, Handler::Lusers),
    spec("PRIVMSG", 0, false, Handler::Privmsg),
    spec("NOTICE", 0, false, Handler::Notice),
    spec("TAGMSG", 1, false, Handler::Tagmsg),
    spec("CHATHISTORY", 0, false, Handler::Chathistory),
];

/// Parses and answers one line. A publisher's events may be answered later, in their turn
/// (`pipeline`); every other line waits until the events before it are answered.
pub async fn handle(server: &Arc<Server>, client: &Arc<Client>, pipeline: Option<&Pipeline>, text: &str) {
    let mut context = Context::new(server, client);
    let request = Request::parse(text);
    let publishing = request.as_ref().is_some_and(|request| request.verb == "PRIVMSG");
    if let (Some(pipeline), false) = (pipeline, publishing) {
        pipeline.settle().await;
    }
    let Some(request) = request else {
        context.fail("*", "INVALID_MESSAGE", &[], "Malformed message");
        return context.finish(None);
    };
    context.label = request.tag("label").map(str::to_owned);
    dispatch(&mut context, pipeline, &request).await;
    let label = context.label.take();
    context.finish(label.as_deref());
}

async fn dispatch(context: &mut Context<'_>, pipeline: Option<&Pipeline>, request: &Request) {
    let Some(spec) = COMMANDS.iter().find(|spec| spec.verb == request.verb) else {
        return context.numeric(ERR_UNKNOWNCOMMAND, &[&request.verb]);
    };
    if !spec.before_registration && !context.client.state().registered {
        return context.numeric(ERR_NOTREGISTERED, &[]);
    }
    if request.params.len() < spec.min_params {
        return context.numeric(ERR_NEEDMOREPARAMS, &[&request.verb]);
    }
    match spec.handler {
        Handler::Cap => registration::cap(context, request),
        Handler::Authenticate => registration::authenticate(context, request),
        Handler::Pass => registration::pass(context, request),
        Handler::Nick => registration::nick(context, request),
        Handler::User => registration::user(context, request),
        Handler::Ping => registration::ping(context, request),
        Handler::Pong => {}
        Handler::Quit => registration::quit(context, request),
        Handler::Join => channel::join(context, request),
        Handler::Part => channel::part(context, request),
        Handler::Names => channel::names(context, request),
        Handler::Topic => channel::topic(context, request),
        Handler::Mode => channel::mode(context, request),
        Handler::List => channel::list(context, request),
        Handler::Who => query::who(context, request),
        Handler::Whois => query::whois(context, request),
        Handler::Whowas => query::whowas(context, request),
        Handler::Userhost => query::userhost(context, request),
        Handler::Ison => query::ison(context, request),
        Handler::Away => query::away(context, request),
        Handler::Time => info::time(context, request),
        Handler::Version => info::version(context, request),
        Handler::Admin => info::admin(context, request),
        Handler::Info => info::info(context, request),
        Handler::Help => info::help(context, request),
        Handler::Motd => query::motd(context),
        Handler::Lusers => query::lusers(context),
        Handler::Privmsg => message::privmsg(context, pipeline, request).await,
        Handler::Notice => message::notice(context, request).await,
        Handler::Tagmsg => {}
        Handler::Chathistory => history::chathistory(context, request).await,
    }
}
