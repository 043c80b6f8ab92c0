//! The XML-RPC API for wikis (SPEC §5, seed 2), as MoinMoin 1.7's `notification_bot_uri` calls
//! it, at `/` and `/RPC2`: `send_notification(secret, jids, notification)`,
//! `addJIDToRoster(secret, jid)`, `removeJIDFromRoster(secret, jid)` and `system.multicall`.
//! Each stores its work in the outbox before answering `true`.
//!
//! What is refused before any parsing: bodies over the limit, invalid UTF-8, and any document
//! type declaration (no entity is ever expanded: XML-RPC has no use for a DTD). Faults use the
//! codes of the XML-RPC fault interoperability note (-32700 parse error, -32601 unknown method,
//! -32602 bad parameters, -32603 internal error); a wrong secret is seed 2's fault 1.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State as AxumState};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Extension, Router};
use dxr::multicall::{from_multicall_params, into_multicall_response};
use dxr::{Fault, FaultResponse, MethodCall, MethodResponse, TryFromValue, Value};
use tokio::sync::Notify;
use tokio_xmpp::jid::BareJid;

use crate::notification::Notification;
use crate::state::{Item, State};

const NOT_ALLOWED: &str = "You are not allowed to use this bot!";
/// Most JIDs one notification may go to, and most calls in one multicall.
const MAX_JIDS: usize = 1000;
const MAX_CALLS: usize = 100;

/// Why the hub stores nothing now, if it does not (its event store is damaged): asked before
/// every call that would store.
pub type Refusal = Arc<dyn Fn() -> Option<String> + Send + Sync>;

pub struct Api {
    secret: String,
    refusal: Refusal,
    state: State,
    wake: Arc<Notify>,
    metrics: Arc<wikiwire_hub::Metrics>,
    logins: Arc<wikiwire_hub::LoginGuard>,
}

impl Api {
    pub fn new(
        secret: String,
        state: State,
        wake: Arc<Notify>,
        metrics: Arc<wikiwire_hub::Metrics>,
        logins: Arc<wikiwire_hub::LoginGuard>,
        refusal: Refusal,
    ) -> Arc<Api> {
        Arc::new(Api { secret, refusal, state, wake, metrics, logins })
    }
}

pub fn router(api: Arc<Api>, max_body: usize) -> Router {
    Router::new()
        .route("/", post(handle))
        .route("/RPC2", post(handle))
        .layer(DefaultBodyLimit::max(max_body))
        .with_state(api)
}

async fn handle(
    AxumState(api): AxumState<Arc<Api>>,
    peer: Option<Extension<wikiwire_http::Peer>>,
    body: Bytes,
) -> Response {
    api.metrics.xmlrpc_calls.inc();
    let caller = Caller { api: &api, ip: peer.map(|Extension(wikiwire_http::Peer(ip))| ip) };
    let result = match parse(&body) {
        Ok(call) => dispatch(&caller, &call.name, call.params).await,
        Err(fault) => Err(fault),
    };
    let xml = match result {
        Ok(value) => MethodResponse { value }.to_xml(),
        Err(fault) => {
            api.metrics.xmlrpc_faults.inc();
            tracing::debug!(code = fault.code(), reason = fault.string(), "XML-RPC fault");
            FaultResponse { fault }.to_xml()
        }
    };
    match xml {
        Ok(xml) => ([(header::CONTENT_TYPE, "text/xml; charset=utf-8")], xml).into_response(),
        Err(error) => {
            tracing::error!(%error, "cannot write an XML-RPC response");
            (StatusCode::INTERNAL_SERVER_ERROR, "cannot write the response").into_response()
        }
    }
}

/// Reads a method call from a request body, or says why not as a fault (never quoting the body).
pub fn parse(body: &[u8]) -> Result<MethodCall<'static>, Fault> {
    let text = std::str::from_utf8(body)
        .map_err(|_| fault::parse_error("parse error: the body is not UTF-8".into()))?;
    // No DTD means no entity can be declared, so none can be expanded (billion laughs, XXE).
    if has_doctype(text) {
        return Err(fault::parse_error("parse error: document type declarations are refused".into()));
    }
    // dxr's error quotes the whole input (the secret included): say only that it failed.
    let call = MethodCall::from_xml(text)
        .map_err(|_| fault::parse_error("parse error: not an XML-RPC method call".into()))?;
    Ok(MethodCall { name: call.name.into_owned().into(), params: call.params })
}

/// Whether XML text declares a document type or entities; XML-RPC has no use for either.
pub fn has_doctype(text: &str) -> bool {
    contains_ignoring_case(text, "<!doctype") || contains_ignoring_case(text, "<!entity")
}

fn contains_ignoring_case(text: &str, needle: &str) -> bool {
    text.as_bytes().windows(needle.len()).any(|window| window.eq_ignore_ascii_case(needle.as_bytes()))
}

/// The API as one request sees it: with the address it came from (none for a router served
/// without the listener, in tests).
struct Caller<'a> {
    api: &'a Api,
    ip: Option<std::net::IpAddr>,
}

async fn dispatch(caller: &Caller<'_>, name: &str, params: Vec<Value>) -> Result<Value, Fault> {
    if !matches!(method(name)?.handler, Handler::Multicall) {
        let work = prepare(caller, name, params)?;
        return apply(caller.api, vec![Ok(work)]).await.pop().expect("one answer for one call");
    }
    let calls = from_multicall_params(params).map_err(|_| {
        fault::invalid_params("system.multicall takes one array of {methodName, params}".into())
    })?;
    if calls.len() > MAX_CALLS {
        return Err(fault::invalid_params(format!("system.multicall: at most {MAX_CALLS} calls")));
    }
    let mut prepared = Vec::with_capacity(calls.len());
    for entry in calls {
        prepared.push(match entry {
            Ok((name, params)) => prepare(caller, &name, params),
            Err(_) => Err(fault::invalid_params("each call is a struct {methodName, params}".into())),
        });
    }
    Ok(into_multicall_response(apply(caller.api, prepared).await))
}

/// One method of the API.
struct Method {
    name: &'static str,
    /// How many parameters it takes, the secret included.
    params: usize,
    /// Whether the first parameter is the bot's secret (all but `system.listMethods`).
    secret: bool,
    handler: Handler,
}

enum Handler {
    /// Checks the parameters after the secret and says what the call will do.
    Call(fn(&[Value]) -> Result<Work, Fault>),
    /// `system.multicall`: each call in it goes through the table on its own.
    Multicall,
}

/// The methods. `system.listMethods` answers from this table; a name not in it is an unknown
/// method.
const METHODS: &[Method] = &[
    Method { name: "send_notification", params: 3, secret: true, handler: Handler::Call(send_notification) },
    Method {
        name: "addJIDToRoster",
        params: 2,
        secret: true,
        handler: Handler::Call(|params| roster(params, true)),
    },
    Method {
        name: "removeJIDFromRoster",
        params: 2,
        secret: true,
        handler: Handler::Call(|params| roster(params, false)),
    },
    Method { name: "system.multicall", params: 1, secret: false, handler: Handler::Multicall },
    Method { name: "system.listMethods", params: 0, secret: false, handler: Handler::Call(list_methods) },
];

fn method(name: &str) -> Result<&'static Method, Fault> {
    METHODS
        .iter()
        .find(|method| method.name == name)
        .ok_or_else(|| fault::unknown_method(format!("unknown method {:?}", shortened(name))))
}

/// A name from the caller as a fault quotes it: the first `QUOTED` bytes (at a character
/// boundary), so that a fault never carries a body's worth of the caller's text back.
fn shortened(name: &str) -> String {
    const QUOTED: usize = 64;
    if name.len() <= QUOTED {
        return name.to_owned();
    }
    let mut end = QUOTED;
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &name[..end])
}

/// What one checked call will do once applied.
enum Work {
    /// An answer that changes nothing (`system.listMethods`).
    Answer(Value),
    /// Outbox items, after a change of the `known` list (`true`: the wiki added the JID).
    Store { items: Vec<Item>, known: Option<(String, bool)> },
}

/// Checks one call (method, parameters, secret) and says what it will do, storing nothing.
fn prepare(caller: &Caller<'_>, name: &str, params: Vec<Value>) -> Result<Work, Fault> {
    let method = method(name)?;
    let Handler::Call(handler) = method.handler else {
        return Err(fault::invalid_request(format!("{name} cannot be nested")));
    };
    if params.len() != method.params {
        return Err(fault::invalid_params(format!(
            "{name} takes {} parameters, got {}",
            method.params,
            params.len()
        )));
    }
    if method.secret {
        authorize(caller, &params[0])?;
        handler(&params[1..])
    } else {
        handler(&params)
    }
}

fn list_methods(_: &[Value]) -> Result<Work, Fault> {
    let names: Vec<&str> = METHODS.iter().map(|method| method.name).collect();
    dxr::TryToValue::try_to_value(&names).map(Work::Answer).map_err(internal)
}

/// `send_notification(secret, jids, notification)`: one outbox item per JID.
fn send_notification(params: &[Value]) -> Result<Work, Fault> {
    let jids = Vec::<String>::try_from_value(&params[0])
        .map_err(|_| fault::invalid_params("jids: an array of bare JIDs".into()))?;
    if jids.len() > MAX_JIDS {
        return Err(fault::invalid_params(format!("jids: at most {MAX_JIDS}")));
    }
    let notification = Notification::from_value(&params[1]).map_err(fault::invalid_params)?;
    let mut items = Vec::with_capacity(jids.len());
    for jid in jids {
        let to = bare(&jid)?;
        items.push(Item::Notification { to, notification: Box::new(notification.clone()) });
    }
    Ok(Work::Store { items, known: None })
}

/// `addJIDToRoster(secret, jid)` / `removeJIDFromRoster(secret, jid)`: the `known` list first,
/// then the roster change.
fn roster(params: &[Value], add: bool) -> Result<Work, Fault> {
    let jid = bare(
        &String::try_from_value(&params[0]).map_err(|_| fault::invalid_params("jid: a string".into()))?,
    )?;
    let item =
        if add { Item::RosterAdd { jid: jid.clone() } } else { Item::RosterRemove { jid: jid.clone() } };
    Ok(Work::Store { items: vec![item], known: Some((jid, add)) })
}

/// Carries out checked calls, in their order: changes of the `known` list one by one, then every
/// outbox item of every call in one append (one transaction: a multicall of 100 notifications
/// is one commit). Answers each call: `true` once stored, its fault otherwise.
async fn apply(api: &Api, calls: Vec<Result<Work, Fault>>) -> Vec<Result<Value, Fault>> {
    if let Some(reason) = (api.refusal)() {
        let refused = || fault::internal(format!("nothing was stored: {reason}"));
        return calls
            .into_iter()
            .map(|work| match work {
                Ok(Work::Store { .. }) => Err(refused()),
                Ok(Work::Answer(value)) => Ok(value),
                Err(fault) => Err(fault),
            })
            .collect();
    }
    let mut answers = Vec::with_capacity(calls.len());
    let mut items = Vec::new();
    let mut stored = Vec::new();
    for (index, work) in calls.into_iter().enumerate() {
        let answer = match work {
            Err(fault) => Err(fault),
            Ok(Work::Answer(value)) => Ok(value),
            Ok(Work::Store { items: more, known }) => {
                let changed = match known {
                    Some((jid, true)) => api.state.remember(&jid).await,
                    Some((jid, false)) => api.state.forget(&jid).await,
                    None => Ok(()),
                };
                match changed {
                    Ok(()) => {
                        items.extend(more);
                        stored.push(index);
                        Ok(Value::Boolean(true))
                    }
                    Err(error) => Err(internal(error)),
                }
            }
        };
        answers.push(answer);
    }
    if !items.is_empty() {
        if let Err(error) = api.state.enqueue(items).await {
            let fault = internal(error);
            for index in stored {
                answers[index] = Err(Fault::new(fault.code(), fault.string().to_owned()));
            }
            return answers;
        }
        api.wake.notify_one();
    }
    answers
}

/// The secret, compared in constant time (SPEC §5), under the failed-login back-off.
fn authorize(caller: &Caller<'_>, given: &Value) -> Result<(), Fault> {
    let given = String::try_from_value(given).unwrap_or_default();
    let check = || wikiwire_hub::token::same_secret(&given, &caller.api.secret).then_some(());
    let outcome = match caller.ip {
        // One secret: a success proves the failures from that address were typos of it.
        Some(ip) => caller.api.logins.login(ip, wikiwire_hub::Claim::Secret("xmlrpc"), check),
        None => Ok(check()),
    };
    if let Err(wait) = outcome {
        return Err(fault::refused(wikiwire_hub::login_guard::refusal(wait)));
    }
    if outcome == Ok(Some(())) {
        Ok(())
    } else {
        // Anyone who reaches the listener can send these by the hundred (a multicall): counted
        // as faults, logged once per interval with the number held back.
        static WRONG_SECRET: wikiwire_hub::LogGate =
            wikiwire_hub::LogGate::new(std::time::Duration::from_secs(10));
        if let Some(also) = WRONG_SECRET.admit() {
            tracing::warn!(
                also,
                "XML-RPC call with a wrong secret refused (also: refused since the last such line)"
            );
        }
        Err(fault::refused(NOT_ALLOWED.into()))
    }
}

/// A bare JID, normalised (`Alice@Example.org` → `alice@example.org`).
fn bare(text: &str) -> Result<String, Fault> {
    match BareJid::new(text.trim()) {
        Ok(jid) if jid.node().is_some() => Ok(jid.to_string()),
        _ => Err(fault::invalid_params(format!("{text:?} is not a bare JID like user@example.org"))),
    }
}

fn internal(error: impl std::fmt::Display) -> Fault {
    tracing::error!(%error, "XML-RPC call failed inside the bot");
    fault::internal("internal error: the call was not stored; try again".into())
}

/// The faults this API answers with: the codes of the XML-RPC fault interoperability note, and
/// seed 2's fault 1 for a caller that may not call.
mod fault {
    use dxr::Fault;

    pub fn parse_error(reason: String) -> Fault {
        Fault::new(-32700, reason)
    }
    pub fn invalid_request(reason: String) -> Fault {
        Fault::new(-32600, reason)
    }
    pub fn unknown_method(reason: String) -> Fault {
        Fault::new(-32601, reason)
    }
    pub fn invalid_params(reason: String) -> Fault {
        Fault::new(-32602, reason)
    }
    pub fn internal(reason: String) -> Fault {
        Fault::new(-32603, reason)
    }
    /// A wrong secret, or a caller held back after failed logins.
    pub fn refused(reason: String) -> Fault {
        Fault::new(1, reason)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use dxr::TryToValue;
    use proptest::prelude::*;

    use super::*;
    use crate::notification::Link;

    /// Text as wikis send it: any Unicode XML can carry, with markup characters and spaces.
    fn text() -> impl Strategy<Value = String> {
        "[a-zA-Z0-9 <>&'\"/=;:%+\u{5d0}-\u{5ea}\u{4e00}-\u{4e10}\u{1f600}-\u{1f610}]{0,40}"
    }

    fn optional() -> impl Strategy<Value = Option<String>> {
        proptest::option::of(text().prop_filter("empty means absent", |text| !text.is_empty()))
    }

    prop_compose! {
        fn notification()(
            action in "[a-z_]{1,20}",
            subject in text(),
            body in text().prop_filter("required", |text| !text.is_empty()),
            links in proptest::collection::vec((text().prop_filter("a url", |url| !url.is_empty()), text()), 0..4),
            editor in optional(), comment in optional(), old_name in optional(), page_name in optional(),
            revision in optional(), diff in optional(), attach_name in optional(), attach_size in optional(),
        ) -> Notification {
            Notification {
                action, subject, text: body,
                url_list: links.into_iter().map(|(url, description)| Link { url, description }).collect(),
                editor, comment, old_name, page_name, revision, diff, attach_name, attach_size,
            }
        }
    }

    /// The struct MoinMoin sends for a notification.
    fn as_value(notification: &Notification) -> Value {
        let mut members: HashMap<String, Value> = HashMap::new();
        let mut put = |name: &str, value: &Option<String>| {
            if let Some(value) = value {
                members.insert(name.to_owned(), Value::String(value.clone()));
            }
        };
        put("action", &Some(notification.action.clone()));
        put("subject", &Some(notification.subject.clone()));
        put("text", &Some(notification.text.clone()));
        put("editor", &notification.editor);
        put("comment", &notification.comment);
        put("old_name", &notification.old_name);
        put("page_name", &notification.page_name);
        put("revision", &notification.revision);
        put("diff", &notification.diff);
        put("attach_name", &notification.attach_name);
        put("attach_size", &notification.attach_size);
        let links: Vec<Value> = notification
            .url_list
            .iter()
            .map(|link| {
                let mut fields = HashMap::new();
                fields.insert("url".to_owned(), Value::String(link.url.clone()));
                fields.insert("description".to_owned(), Value::String(link.description.clone()));
                fields.try_to_value().unwrap()
            })
            .collect();
        members.insert("url_list".to_owned(), links.try_to_value().unwrap());
        members.try_to_value().unwrap()
    }

    fn notify(secret: &str, jid: &str, page: &str) -> Value {
        let mut call = HashMap::new();
        call.insert("methodName".to_owned(), Value::String("send_notification".into()));
        let notification = Notification {
            action: "page_changed".into(),
            text: format!("{page} changed"),
            page_name: Some(page.into()),
            ..Notification::default()
        };
        let params = vec![
            Value::String(secret.into()),
            vec![jid.to_owned()].try_to_value().unwrap(),
            as_value(&notification),
        ];
        call.insert("params".to_owned(), params.try_to_value().unwrap());
        call.try_to_value().unwrap()
    }

    /// An API over a fresh outbox, with the secret `s3cret`; the directory holds the outbox.
    fn api(refusal: Refusal) -> (Arc<Api>, State, tempfile::TempDir) {
        let directory = tempfile::tempdir().unwrap();
        let state = State::open(&directory.path().join("xmpp.sqlite")).unwrap();
        let metrics = Arc::new(wikiwire_hub::Metrics::default());
        let logins = Arc::new(wikiwire_hub::LoginGuard::new(metrics.clone()));
        let api = Api::new("s3cret".into(), state.clone(), Arc::new(Notify::new()), metrics, logins, refusal);
        (api, state, directory)
    }

    /// A multicall answers each call in its place, and stores the items of the calls that were
    /// accepted, in the order of the calls; a bad call (a wrong JID, a wrong secret, an unknown
    /// method) changes nothing around it.
    #[tokio::test]
    async fn a_multicall_answers_each_call_and_stores_the_accepted_ones_in_order() {
        let (api, state, _directory) = api(Arc::new(|| None));
        let caller = Caller { api: &api, ip: None };
        let mut roster = HashMap::new();
        roster.insert("methodName".to_owned(), Value::String("addJIDToRoster".into()));
        roster.insert(
            "params".to_owned(),
            vec!["s3cret".to_owned(), "Bob@Example.org".to_owned()].try_to_value().unwrap(),
        );
        let mut unknown = HashMap::new();
        unknown.insert("methodName".to_owned(), Value::String("getPage".into()));
        unknown.insert("params".to_owned(), Vec::<String>::new().try_to_value().unwrap());
        let calls = vec![
            notify("s3cret", "alice@example.org", "One"),
            notify("s3cret", "not a jid", "Two"),
            roster.try_to_value().unwrap(),
            notify("wrong", "alice@example.org", "Three"),
            unknown.try_to_value().unwrap(),
            notify("s3cret", "carol@example.org", "Four"),
        ];
        let answer =
            dispatch(&caller, "system.multicall", vec![calls.try_to_value().unwrap()]).await.unwrap();
        let answers = Vec::<Value>::try_from_value(&answer).unwrap();
        let accepted: Vec<bool> =
            answers.iter().map(|answer| Vec::<bool>::try_from_value(answer).is_ok()).collect();
        assert_eq!(accepted, [true, false, true, false, false, true], "{answers:?}");
        let stored: Vec<Item> =
            state.pending(100, vec![]).await.unwrap().into_iter().map(|(_, item)| item).collect();
        let pages: Vec<String> = stored
            .iter()
            .map(|item| match item {
                Item::Notification { to, notification } => {
                    format!("{to} {}", notification.page_name.clone().unwrap())
                }
                Item::RosterAdd { jid } => format!("+{jid}"),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(pages, ["alice@example.org One", "+bob@example.org", "carol@example.org Four"]);
        assert!(state.is_known("bob@example.org").await.unwrap());
    }

    /// The table's invariants: what `system.listMethods` says is what is served; a method that
    /// takes the secret has room for it; a multicall inside a multicall is refused, not run.
    /// A fault quotes at most the first 64 bytes of an unknown method's name, cut at a character.
    #[tokio::test]
    async fn an_unknown_method_is_named_briefly() {
        let (api, _state, _directory) = api(Arc::new(|| None));
        let caller = Caller { api: &api, ip: None };
        let name = "é".repeat(50_000);
        let fault = dispatch(&caller, &name, Vec::new()).await.unwrap_err();
        assert_eq!(fault.code(), fault::unknown_method(String::new()).code());
        assert!(fault.string().len() < 100, "{} bytes", fault.string().len());
        assert!(fault.string().contains(&"é".repeat(32)), "{}", fault.string());
    }

    /// While the hub's event store is damaged, calls that would store are refused, and nothing is
    /// stored; calls that only answer still answer.
    #[tokio::test]
    async fn nothing_is_stored_while_the_hub_refuses() {
        let (api, state, _directory) = api(Arc::new(|| Some("the store is damaged".to_owned())));
        let caller = Caller { api: &api, ip: None };
        let calls = vec![notify("s3cret", "alice@example.org", "One")];
        let answer =
            dispatch(&caller, "system.multicall", vec![calls.try_to_value().unwrap()]).await.unwrap();
        let answers = Vec::<Value>::try_from_value(&answer).unwrap();
        assert!(Vec::<bool>::try_from_value(&answers[0]).is_err(), "{answers:?}");
        assert!(state.pending(100, vec![]).await.unwrap().is_empty());
        assert!(dispatch(&caller, "system.listMethods", Vec::new()).await.is_ok());
    }

    #[tokio::test]
    async fn the_method_table_is_what_is_served() {
        for method in METHODS {
            assert!(!method.secret || method.params >= 1, "{}", method.name);
        }
        let (api, _state, _directory) = api(Arc::new(|| None));
        let caller = Caller { api: &api, ip: None };
        let listed = dispatch(&caller, "system.listMethods", vec![]).await.unwrap();
        let listed = Vec::<String>::try_from_value(&listed).unwrap();
        assert_eq!(listed, METHODS.iter().map(|method| method.name).collect::<Vec<_>>());
        for name in &listed {
            let fault = dispatch(&caller, name, vec![Value::Integer(1); 7]).await.unwrap_err();
            assert_ne!(fault.code(), fault::unknown_method(String::new()).code(), "{name} is served");
        }
        let mut nested = HashMap::new();
        nested.insert("methodName".to_owned(), Value::String("system.multicall".into()));
        nested.insert("params".to_owned(), vec![Vec::<Value>::new()].try_to_value().unwrap());
        let answer =
            dispatch(&caller, "system.multicall", vec![vec![nested].try_to_value().unwrap()]).await.unwrap();
        let answers = Vec::<Value>::try_from_value(&answer).unwrap();
        assert!(format!("{:?}", answers[0]).contains("cannot be nested"), "{answers:?}");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        /// A call written by an XML-RPC library reads back to the same notification.
        #[test]
        fn send_notification_round_trips(notification in notification(), jids in proptest::collection::vec("[a-z]{1,8}@[a-z]{1,8}\\.test", 0..5)) {
            let params = vec![
                Value::String("secret".into()),
                jids.clone().try_to_value().unwrap(),
                as_value(&notification),
            ];
            let xml = MethodCall { name: "send_notification".into(), params }.to_xml().unwrap();
            let call = parse(xml.as_bytes()).unwrap();
            prop_assert_eq!(call.name.as_ref(), "send_notification");
            prop_assert_eq!(Vec::<String>::try_from_value(&call.params[1]).unwrap(), jids);
            prop_assert_eq!(Notification::from_value(&call.params[2]).unwrap(), notification);
        }

        /// A document type declaration anywhere is refused before parsing, in any spelling.
        #[test]
        fn any_doctype_is_refused(before in "[ -~]{0,30}", upper in any::<bool>(), entity in any::<bool>()) {
            let declaration = match (entity, upper) {
                (false, false) => "<!doctype m>",
                (false, true) => "<!DOCTYPE m>",
                (true, false) => "<!entity a \"b\">",
                (true, true) => "<!ENTITY a \"b\">",
            };
            let body = format!("<?xml version=\"1.0\"?>{before}{declaration}<methodCall><methodName>x</methodName></methodCall>");
            let fault = parse(body.as_bytes()).unwrap_err();
            prop_assert_eq!(fault.code(), -32700);
        }

        /// Arbitrary bytes never panic, and a fault never quotes the body.
        #[test]
        fn arbitrary_bodies_are_faults_not_panics(body in proptest::collection::vec(any::<u8>(), 0..300), secret in "[a-z]{12}") {
            let mut body = body;
            body.extend_from_slice(secret.as_bytes());
            if let Err(fault) = parse(&body) {
                prop_assert!(!fault.string().contains(&secret));
            }
        }
    }
}
