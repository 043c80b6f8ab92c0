//! Talking to the wiki for the bot's commands (SPEC §5): the Wiki XML-RPC interface v2, in two
//! dialects, and MoinMoin 2's HTTP views in a third.
//!
//! * `moin`: MoinMoin at `<url>?action=xmlrpc2`. Each call is made as the Jabber user: the bot
//!   asks `getJabberAuthToken(jid, secret)`, then sends `system.multicall` with
//!   `applyAuthToken(token)` first and the method second. A token is kept per JID and reused
//!   until `applyAuthToken` refuses it; then one fresh token is fetched and the call repeated.
//!   An empty token (no wiki account has this JID) means the call is made anonymously, as
//!   MoinMoin's own bot does. The user's language comes from `getUserLanguageByJID`.
//! * `wikirpc2`: the `wiki.` method names (DokuWiki, JSPWiki) at the configured endpoint, as the
//!   configured account (HTTP basic authentication). Full-text search is DokuWiki's
//!   `dokuwiki.search`; title search filters `wiki.getAllPages` here; a revert reads the old
//!   revision with `wiki.getPageVersion` and saves it with `wiki.putPage`.
//! * `moin2`: MoinMoin 2, which has no XML-RPC, over its HTTP views (`+get`, `+content`,
//!   `+index`, `+history`, `+search`) as an anonymous visitor; `revertpage` answers that the wiki
//!   does not support it.
//!
//! Each dialect has its module (`moin`, `wikirpc2`, `moin2`); this one has what they share: the request
//! and answer types, the transport, and the readers of XML-RPC answers. Answers are read with a
//! size limit, and a document type declaration is refused as it is on the bot's own API. Tokens
//! and the secret never reach a log line.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dxr::{MethodCall, MethodResponse, TryFromValue, TryToValue, Value};
use regex::RegexBuilder;
use wikiwire_hub::Metrics;

use crate::config::{WikiConfig, WikiDialect};

mod moin;
mod moin2;
mod wikirpc2;

/// How long one call to the wiki may take.
const TIMEOUT: Duration = Duration::from_secs(20);
/// Largest answer read from the wiki.
const MAX_ANSWER: usize = 8 * 1024 * 1024;
/// Characters of context around search hits (MoinMoin's `length`).
const CONTEXT: i32 = 80;
/// How long a user's language is remembered, and how long a failed lookup is.
const LANGUAGE_TTL: Duration = Duration::from_secs(600);
const LANGUAGE_RETRY: Duration = Duration::from_secs(60);

/// What a command asks of the wiki.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    Page(String),
    PageHtml(String),
    AllPages,
    PageInfo(String),
    Search { query: String, title: bool, case: bool, regexp: bool },
    Revert { page: String, revision: i64 },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PageInfo {
    pub name: String,
    pub author: String,
    pub version: String,
    pub modified: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hit {
    pub page: String,
    pub context: String,
    pub url: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    Text(String),
    Pages(Vec<String>),
    Info(PageInfo),
    Hits(Vec<Hit>),
    Reverted(bool),
}

/// The HTTP client for the wiki cannot be made (its TLS set-up failed); the cause is its source
/// (shown through the error's chain, as start-up errors are).
#[derive(Debug, thiserror::Error)]
#[error("wiki")]
pub struct ClientError(#[source] reqwest::Error);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WikiError {
    /// The wiki answered with a fault: its text is shown to the user.
    #[error("{0}")]
    Fault(String),
    /// The wiki has no such method.
    #[error("not supported by the wiki")]
    NotSupported,
    #[error("{0}")]
    Unreachable(String),
    #[error("{0}")]
    Malformed(String),
}

pub struct Wiki {
    url: String,
    http: reqwest::Client,
    endpoint: String,
    dialect: WikiDialect,
    secret: Option<String>,
    account: Option<(String, String)>,
    tokens: Mutex<HashMap<String, String>>,
    languages: Mutex<HashMap<String, (Option<String>, Instant)>>,
    metrics: Arc<Metrics>,
}

impl Wiki {
    pub fn new(config: &WikiConfig, metrics: Arc<Metrics>) -> Result<Wiki, ClientError> {
        let endpoint = match config.dialect {
            WikiDialect::Moin => {
                let separator = if config.url.contains('?') { '&' } else { '?' };
                format!("{}{separator}action=xmlrpc2", config.url)
            }
            WikiDialect::Wikirpc2 | WikiDialect::Moin2 => config.url.clone(),
        };
        let http = reqwest::Client::builder()
            .timeout(TIMEOUT)
            .user_agent(concat!("wikiwire/", env!("CARGO_PKG_VERSION"), " (notification bot)"))
            .build()
            .map_err(ClientError)?;
        let account = match (&config.user, &config.password) {
            (Some(user), Some(password)) => Some((user.clone(), password.clone())),
            _ => None,
        };
        Ok(Wiki {
            url: config.url.clone(),
            http,
            endpoint,
            dialect: config.dialect,
            secret: config.secret.clone(),
            account,
            tokens: Mutex::new(HashMap::new()),
            languages: Mutex::new(HashMap::new()),
            metrics,
        })
    }

    /// The wiki's address as configured.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Does what `request` asks, as the Jabber user `jid`.
    pub async fn request(&self, jid: &str, request: &Request) -> Result<Answer, WikiError> {
        match self.dialect {
            WikiDialect::Moin => self.moin(jid, request).await,
            WikiDialect::Wikirpc2 => self.wikirpc2(request).await,
            WikiDialect::Moin2 => self.moin2(request).await,
        }
    }

    /// One XML-RPC call. Faults come back as `WikiError::Fault`.
    async fn call(&self, method: &str, params: Vec<Value>) -> Result<Value, WikiError> {
        self.metrics.xmpp_wiki_calls.inc();
        let result = self.call_inner(method, params).await;
        if matches!(result, Err(WikiError::Unreachable(_) | WikiError::Malformed(_))) {
            self.metrics.xmpp_wiki_failures.inc();
        }
        result
    }

    async fn call_inner(&self, method: &str, params: Vec<Value>) -> Result<Value, WikiError> {
        let body = MethodCall { name: method.into(), params }
            .to_xml()
            .map_err(|error| WikiError::Malformed(error.to_string()))?;
        let mut request = self
            .http
            .post(&self.endpoint)
            .header(reqwest::header::CONTENT_TYPE, "text/xml; charset=utf-8")
            .body(body);
        if let Some((user, password)) = &self.account {
            request = request.basic_auth(user, Some(password));
        }
        // reqwest's error text names the URL, never the body: safe to show.
        let response =
            request.send().await.map_err(|error| WikiError::Unreachable(error.without_url().to_string()))?;
        if !response.status().is_success() {
            return Err(WikiError::Unreachable(format!("HTTP {}", response.status())));
        }
        parse_answer(&read_bounded(response).await?, method)
    }
}

/// A title search over a list of page names (for wikis without one of their own).
fn title_hits(pages: Vec<String>, query: &str, case: bool, regexp: bool) -> Result<Vec<Hit>, WikiError> {
    let pattern = if regexp { query.to_owned() } else { regex::escape(query) };
    let pattern = RegexBuilder::new(&pattern)
        .case_insensitive(!case)
        .size_limit(256 * 1024)
        .build()
        .map_err(|error| WikiError::Fault(error.to_string()))?;
    Ok(pages
        .into_iter()
        .filter(|page| pattern.is_match(page))
        .map(|page| Hit { page, context: String::new(), url: None })
        .collect())
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A wiki's answer, read chunk by chunk up to `MAX_ANSWER` bytes (a larger one is refused before
/// it is all in memory).
async fn read_bounded(mut response: reqwest::Response) -> Result<Vec<u8>, WikiError> {
    let mut body = Vec::new();
    while let Some(chunk) =
        response.chunk().await.map_err(|error| WikiError::Unreachable(error.without_url().to_string()))?
    {
        if body.len() + chunk.len() > MAX_ANSWER {
            return Err(WikiError::Malformed(format!("an answer over {MAX_ANSWER} bytes")));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Reads a method response or a fault. Faults whose code is not an integer (MoinMoin sends
/// `"INVALID"`) are read too.
pub fn parse_answer(body: &[u8], method: &str) -> Result<Value, WikiError> {
    let text =
        std::str::from_utf8(body).map_err(|_| WikiError::Malformed("the answer is not UTF-8".into()))?;
    if crate::xmlrpc::has_doctype(text) {
        return Err(WikiError::Malformed("the answer has a document type declaration".into()));
    }
    if let Some(start) = text.find("<fault>") {
        let inner = &text[start..];
        let value = match (inner.find("<value>"), inner.rfind("</value>")) {
            (Some(from), Some(to)) if from < to => Value::from_xml(&inner[from..to + "</value>".len()]).ok(),
            _ => None,
        };
        let fault = value.as_ref().map(fault_of).unwrap_or_else(|| "a fault without text".into());
        return Err(classify(fault));
    }
    let text = normalise_datetimes(text);
    match MethodResponse::from_xml(&text) {
        Ok(response) => Ok(response.value),
        Err(_) => Err(WikiError::Malformed(format!("{method}: not an XML-RPC answer"))),
    }
}

/// Rewrites every `dateTime.iso8601` value into the one form XML-RPC's specification shows
/// (`20261122T21:00:05`), which is all dxr reads. Wikis write others: DokuWiki sends
/// `2026-11-22T21:00:05+00:00`, others a `Z` or fractions. Zoned times are turned into UTC; a
/// value that cannot be read is left as it is (and the answer is then refused as malformed).
fn normalise_datetimes(text: &str) -> std::borrow::Cow<'_, str> {
    const OPEN: &str = "<dateTime.iso8601>";
    const CLOSE: &str = "</dateTime.iso8601>";
    if !text.contains(OPEN) {
        return text.into();
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find(OPEN) {
        let value_start = start + OPEN.len();
        let Some(length) = rest[value_start..].find(CLOSE) else { break };
        out.push_str(&rest[..value_start]);
        let value = &rest[value_start..value_start + length];
        match lenient_datetime(value.trim()) {
            Some(utc) => out.push_str(&utc),
            None => out.push_str(value),
        }
        out.push_str(CLOSE);
        rest = &rest[value_start + length + CLOSE.len()..];
    }
    out.push_str(rest);
    out.into()
}

/// `YYYY[-]MM[-]DDThh[:]mm[:]ss[.fff][Z|±hh[:]mm]` → `YYYYMMDDThh:mm:ss` in UTC.
fn lenient_datetime(value: &str) -> Option<String> {
    let (date, time) = value.split_once(['T', 't'])?;
    let date: String = date.chars().filter(|c| *c != '-').collect();
    let zone_at = time.find(['Z', 'z', '+', '-']).unwrap_or(time.len());
    let (clock, zone) = time.split_at(zone_at);
    let clock = clock.split('.').next()?;
    let clock: String = clock.chars().filter(|c| *c != ':').collect();
    if date.len() != 8 || clock.len() != 6 || !date.chars().chain(clock.chars()).all(|c| c.is_ascii_digit()) {
        return None;
    }
    let number = |digits: &str| digits.parse::<u32>().ok();
    let month = time::Month::try_from(u8::try_from(number(&date[4..6])?).ok()?).ok()?;
    let day = time::Date::from_calendar_date(
        i32::try_from(number(&date[..4])?).ok()?,
        month,
        number(&date[6..])? as u8,
    )
    .ok()?;
    let clock = time::Time::from_hms(
        number(&clock[..2])? as u8,
        number(&clock[2..4])? as u8,
        number(&clock[4..])? as u8,
    )
    .ok()?;
    let mut moment = time::PrimitiveDateTime::new(day, clock);
    if let Some(sign @ ('+' | '-')) = zone.chars().next() {
        let digits: String = zone[1..].chars().filter(|c| *c != ':').collect();
        if digits.len() != 4 && digits.len() != 2 {
            return None;
        }
        let hours = i64::from(number(&digits[..2])?);
        let minutes = if digits.len() == 4 { i64::from(number(&digits[2..])?) } else { 0 };
        let offset = time::Duration::minutes(hours * 60 + minutes);
        moment = if sign == '+' { moment.checked_sub(offset)? } else { moment.checked_add(offset)? };
    }
    Some(format!(
        "{:04}{:02}{:02}T{:02}:{:02}:{:02}",
        moment.year(),
        u8::from(moment.month()),
        moment.day(),
        moment.hour(),
        moment.minute(),
        moment.second()
    ))
}

/// The text of a fault struct: `faultString`, with a non-numeric code in front.
fn fault_of(value: &Value) -> String {
    let members = HashMap::<String, Value>::try_from_value(value).unwrap_or_default();
    let reason =
        members.get("faultString").and_then(|value| String::try_from_value(value).ok()).unwrap_or_default();
    match members.get("faultCode") {
        Some(Value::Integer(code)) => format!("{code}: {reason}"),
        Some(Value::String(code)) => format!("{code}: {reason}"),
        _ => reason,
    }
}

fn classify(fault: String) -> WikiError {
    // -32601 is "method not found" in the interoperability codes; DokuWiki and Python use it.
    if fault.starts_with("-32601:") || fault.contains("is not supported") || fault.contains("method \"") {
        WikiError::NotSupported
    } else {
        WikiError::Fault(fault)
    }
}

fn multicall_entry(method: &str, params: Vec<Value>) -> Result<Value, WikiError> {
    let mut members = HashMap::new();
    members.insert("methodName".to_owned(), Value::String(method.to_owned()));
    members.insert(
        "params".to_owned(),
        params.try_to_value().map_err(|error| WikiError::Malformed(error.to_string()))?,
    );
    members.try_to_value().map_err(|error| WikiError::Malformed(error.to_string()))
}

/// The answers of a multicall: `[value]` for a result, a fault struct for a fault.
fn multicall_results(value: &Value) -> Result<Vec<Result<Value, WikiError>>, WikiError> {
    let entries = Vec::<Value>::try_from_value(value)
        .map_err(|_| WikiError::Malformed("system.multicall: not an array".into()))?;
    Ok(entries
        .iter()
        .map(|entry| match Vec::<Value>::try_from_value(entry) {
            Ok(mut values) if values.len() == 1 => Ok(values.pop().expect("one value")),
            _ => Err(classify(fault_of(entry))),
        })
        .collect())
}

fn text(value: &Value) -> Result<String, WikiError> {
    match value {
        Value::String(text) => Ok(text.clone()),
        Value::Base64(bytes) => Ok(String::from_utf8_lossy(bytes).into_owned()),
        // MoinMoin answers a missing page with a struct {faultCode, faultString}.
        Value::Struct(_) => Err(classify(fault_of(value))),
        _ => Err(WikiError::Malformed("expected text".into())),
    }
}

fn truthy(value: &Value) -> bool {
    match value {
        Value::Boolean(yes) => *yes,
        Value::Integer(number) => *number != 0,
        Value::String(text) => !text.is_empty(),
        _ => false,
    }
}

/// A list's items as `read` makes them; an item it cannot read is passed over. Not a list:
/// malformed, "expected `what`".
fn list_of<T>(value: &Value, what: &str, read: impl FnMut(&Value) -> Option<T>) -> Result<Vec<T>, WikiError> {
    let items =
        Vec::<Value>::try_from_value(value).map_err(|_| WikiError::Malformed(format!("expected {what}")))?;
    Ok(items.iter().filter_map(read).collect())
}

/// Page names: strings (MoinMoin, JSPWiki) or structs with `id` or `name` (DokuWiki).
fn page_names(value: &Value) -> Result<Vec<String>, WikiError> {
    list_of(value, "a list of pages", |item| match item {
        Value::String(name) => Some(name.clone()),
        _ => {
            let members = HashMap::<String, Value>::try_from_value(item).ok()?;
            members
                .get("id")
                .or_else(|| members.get("name"))
                .and_then(|name| String::try_from_value(name).ok())
        }
    })
}

fn page_info(value: &Value) -> Result<PageInfo, WikiError> {
    let members = HashMap::<String, Value>::try_from_value(value)
        .map_err(|_| WikiError::Malformed("expected a page info struct".into()))?;
    if members.contains_key("faultString") {
        return Err(classify(fault_of(value)));
    }
    let field = |name: &str| match members.get(name) {
        Some(Value::String(text)) => text.clone(),
        Some(Value::Integer(number)) => number.to_string(),
        Some(Value::Long(number)) => number.to_string(),
        Some(Value::DateTime(date)) => format!(
            "{:04}-{:02}-{:02} {:02}:{:02}:{:02} UTC",
            date.year(),
            date.month(),
            date.day(),
            date.hour(),
            date.minute(),
            date.second()
        ),
        _ => String::new(),
    };
    Ok(PageInfo {
        name: field("name"),
        author: field("author"),
        version: field("version"),
        modified: field("lastModified"),
    })
}

#[cfg(test)]
mod tests {
    use super::wikirpc2::strip_markup;
    use super::*;

    #[test]
    fn reads_faults_with_text_codes_and_multicall_answers() {
        let fault = br#"<?xml version='1.0'?><methodResponse><fault><value><struct>
            <member><name>faultCode</name><value><string>INVALID</string></value></member>
            <member><name>faultString</name><value><string>Invalid token.</string></value></member>
            </struct></value></fault></methodResponse>"#;
        assert_eq!(parse_answer(fault, "x"), Err(WikiError::Fault("INVALID: Invalid token.".into())));
        let missing = br#"<methodResponse><fault><value><struct>
            <member><name>faultCode</name><value><int>-32601</int></value></member>
            <member><name>faultString</name><value><string>no such method</string></value></member>
            </struct></value></fault></methodResponse>"#;
        assert_eq!(parse_answer(missing, "x"), Err(WikiError::NotSupported));
        let multicall = br#"<methodResponse><params><param><value><array><data>
            <value><struct><member><name>faultCode</name><value><string>INVALID</string></value></member>
            <member><name>faultString</name><value><string>Invalid token.</string></value></member></struct></value>
            <value><array><data><value><string>page text</string></value></data></array></value>
            </data></array></value></param></params></methodResponse>"#;
        let results = multicall_results(&parse_answer(multicall, "x").unwrap()).unwrap();
        assert_eq!(results[0], Err(WikiError::Fault("INVALID: Invalid token.".into())));
        assert_eq!(results[1], Ok(Value::String("page text".into())));
        let doctype = br#"<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "b">]><methodResponse/>"#;
        assert!(matches!(parse_answer(doctype, "x"), Err(WikiError::Malformed(_))));
    }

    #[test]
    fn datetimes_in_the_forms_wikis_write() {
        for (given, read) in [
            ("20261122T21:00:05", "20261122T21:00:05"),
            ("2026-11-22T21:00:05+00:00", "20261122T21:00:05"),
            ("2026-11-22T23:30:05+02:30", "20261122T21:00:05"),
            ("2026-11-22T16:00:05-05:00", "20261122T21:00:05"),
            ("2026-11-22T21:00:05.123Z", "20261122T21:00:05"),
            ("20261122T210005Z", "20261122T21:00:05"),
            ("2026-01-01T00:30:00+01:00", "20251231T23:30:00"),
        ] {
            assert_eq!(lenient_datetime(given).as_deref(), Some(read), "{given}");
        }
        for bad in [
            "",
            "2026-11-22",
            "2026-13-01T00:00:00",
            "2026-11-22T25:00:00",
            "x-y-zTa:b:c",
            "2026-11-22T21:00:05+1",
        ] {
            assert_eq!(lenient_datetime(bad), None, "{bad}");
        }
        let answer = br#"<methodResponse><params><param><value><struct>
            <member><name>lastModified</name><value><dateTime.iso8601>2026-11-22T21:00:05+00:00</dateTime.iso8601></value></member>
            <member><name>name</name><value><string>front_page</string></value></member>
            </struct></value></param></params></methodResponse>"#;
        let info = page_info(&parse_answer(answer, "wiki.getPageInfo").unwrap()).unwrap();
        assert_eq!(info.modified, "2026-11-22 21:00:05 UTC");
    }

    #[test]
    fn search_snippets_lose_their_markup() {
        assert_eq!(
            strip_markup(r#"press the <strong class="search_hit">Edit</strong> &amp; &lt;save&gt;"#),
            "press the Edit & <save>"
        );
        assert_eq!(strip_markup("a > b"), "a > b");
    }

    #[test]
    fn page_lists_of_both_dialects() {
        let moin = vec!["Front Page".to_owned(), "Help".to_owned()].try_to_value().unwrap();
        assert_eq!(page_names(&moin).unwrap(), vec!["Front Page", "Help"]);
        let mut page = HashMap::new();
        page.insert("id".to_owned(), Value::String("wiki:syntax".into()));
        page.insert("size".to_owned(), Value::Integer(10));
        let doku = vec![page.try_to_value().unwrap()].try_to_value().unwrap();
        assert_eq!(page_names(&doku).unwrap(), vec!["wiki:syntax"]);
    }
}
