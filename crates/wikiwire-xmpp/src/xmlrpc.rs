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

pub struct Api {
    secret: String,
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
    ) -> Arc<Api> {
        Arc::new(Api { secret, state, wake, metrics, logins })
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
        .map_err(|_| Fault::new(-32700, "parse error: the body is not UTF-8".into()))?;
    // No DTD means no entity can be declared, so none can be expanded (billion laughs, XXE).
    if has_doctype(text) {
        return Err(Fault::new(-32700, "parse error: document type declarations are refused".into()));
    }
    // dxr's error quotes the whole input (the secret included): say only that it failed.
    let call = MethodCall::from_xml(text)
        .map_err(|_| Fault::new(-32700, "parse error: not an XML-RPC method call".into()))?;
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
    if name != "system.multicall" {
        return call(caller, name, params).await;
    }
    let calls = from_multicall_params(params)
        .map_err(|_| Fault::new(-32602, "system.multicall takes one array of {methodName, params}".into()))?;
    if calls.len() > MAX_CALLS {
        return Err(Fault::new(-32602, format!("system.multicall: at most {MAX_CALLS} calls")));
    }
    let mut results = Vec::with_capacity(calls.len());
    for entry in calls {
        results.push(match entry {
            Ok((name, _)) if name == "system.multicall" => {
                Err(Fault::new(-32600, "system.multicall cannot be nested".into()))
            }
            Ok((name, params)) => call(caller, &name, params).await,
            Err(_) => Err(Fault::new(-32602, "each call is a struct {methodName, params}".into())),
        });
    }
    Ok(into_multicall_response(results))
}

/// The methods as a table: name, parameters after the secret, and what they do.
async fn call(caller: &Caller<'_>, name: &str, params: Vec<Value>) -> Result<Value, Fault> {
    let api = caller.api;
    let expected = match name {
        "send_notification" => 3,
        "addJIDToRoster" | "removeJIDFromRoster" => 2,
        "system.listMethods" => 0,
        _ => return Err(Fault::new(-32601, format!("unknown method {name:?}"))),
    };
    if name == "system.listMethods" {
        let names = [
            "send_notification",
            "addJIDToRoster",
            "removeJIDFromRoster",
            "system.multicall",
            "system.listMethods",
        ];
        return dxr::TryToValue::try_to_value(&names.map(str::to_owned).to_vec()).map_err(internal);
    }
    if params.len() != expected {
        return Err(Fault::new(-32602, format!("{name} takes {expected} parameters, got {}", params.len())));
    }
    authorize(caller, &params[0])?;
    let item_result = match name {
        "send_notification" => {
            let jids = Vec::<String>::try_from_value(&params[1])
                .map_err(|_| Fault::new(-32602, "jids: an array of bare JIDs".into()))?;
            if jids.len() > MAX_JIDS {
                return Err(Fault::new(-32602, format!("jids: at most {MAX_JIDS}")));
            }
            let notification =
                Notification::from_value(&params[2]).map_err(|reason| Fault::new(-32602, reason))?;
            let mut items = Vec::with_capacity(jids.len());
            for jid in jids {
                let to = bare(&jid)?;
                items.push(Item::Notification { to, notification: Box::new(notification.clone()) });
            }
            api.state.enqueue(items).await
        }
        // addJIDToRoster / removeJIDFromRoster: the `known` list first, then the roster change.
        add => {
            let jid = bare(
                &String::try_from_value(&params[1])
                    .map_err(|_| Fault::new(-32602, "jid: a string".into()))?,
            )?;
            if add == "addJIDToRoster" {
                api.state.remember(&jid).await.map_err(internal)?;
                api.state.enqueue(vec![Item::RosterAdd { jid }]).await
            } else {
                api.state.forget(&jid).await.map_err(internal)?;
                api.state.enqueue(vec![Item::RosterRemove { jid }]).await
            }
        }
    };
    item_result.map_err(internal)?;
    api.wake.notify_one();
    Ok(Value::Boolean(true))
}

/// The secret, compared in constant time (SPEC §5), under the failed-login back-off.
fn authorize(caller: &Caller<'_>, given: &Value) -> Result<(), Fault> {
    let given = String::try_from_value(given).unwrap_or_default();
    let check = || wikiwire_hub::token::same_secret(&given, &caller.api.secret).then_some(());
    let outcome = match caller.ip {
        Some(ip) => caller.api.logins.login(ip, check),
        None => Ok(check()),
    };
    if let Err(wait) = outcome {
        return Err(Fault::new(1, wikiwire_hub::login_guard::refusal(wait)));
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
        Err(Fault::new(1, NOT_ALLOWED.into()))
    }
}

/// A bare JID, normalised (`Alice@Example.org` → `alice@example.org`).
fn bare(text: &str) -> Result<String, Fault> {
    match BareJid::new(text.trim()) {
        Ok(jid) if jid.node().is_some() => Ok(jid.to_string()),
        _ => Err(Fault::new(-32602, format!("{text:?} is not a bare JID like user@example.org"))),
    }
}

fn internal(error: impl std::fmt::Display) -> Fault {
    tracing::error!(%error, "XML-RPC call failed inside the bot");
    Fault::new(-32603, "internal error: the call was not stored; try again".into())
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
