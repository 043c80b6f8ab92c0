//! Turning publisher input into an `Event`: one field map in, a validated event or a
//! `FieldError` naming the field out. JSON, packed and every ingest adapter come through here, so
//! the rules (limits, aliases, `editor`→`user`, unknown fields into `extra`) exist once.

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::{Action, Draft, Event, Link, Timestamp};

/// A bad field: which one, and why. Rendered as `field: reason`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct FieldError {
    pub field: String,
    pub reason: Cow<'static, str>,
}

impl FieldError {
    pub fn new(field: impl Into<String>, reason: impl Into<Cow<'static, str>>) -> FieldError {
        FieldError { field: field.into(), reason: reason.into() }
    }

    /// The same error for the `index`-th event of a batch: `[3].page`.
    pub fn in_batch(self, index: usize) -> FieldError {
        FieldError { field: format!("[{index}].{}", self.field), reason: self.reason }
    }
}

/// What kind of input is being read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// From a publisher: no `id` allowed, a missing `time` becomes `now`.
    Submission { now: Timestamp },
    /// An event the hub already stored (history, a packed line): `id` and `time` required.
    Committed,
    /// A packed line marked `more=1`: like `Committed`, but fields may have been dropped.
    Partial,
}

/// Limits in bytes (SPEC: bytes are counted as bytes). Generous for real wikis, small enough that
/// one event can never be large.
pub mod limits {
    pub const WIKI: usize = 48;
    pub const PAGE: usize = 512;
    pub const USER: usize = 255;
    pub const COMMENT: usize = 4096;
    pub const REVISION: usize = 64;
    pub const FILE: usize = 255;
    pub const KEY: usize = 128;
    pub const URLS: usize = 16;
    pub const URL: usize = 2048;
    pub const URL_DESCRIPTION: usize = 256;
    pub const EXTRA_ENTRIES: usize = 32;
    pub const EXTRA_NAME: usize = 64;
    pub const EXTRA_VALUE: usize = 2048;
}

/// One of the event's optional text fields.
pub struct TextField {
    pub name: &'static str,
    pub get: fn(&Event) -> Option<&str>,
    pub slot: fn(&mut Event) -> &mut Option<String>,
    /// Longest value, in bytes.
    pub limit: usize,
    /// May hold line breaks (only `comment`).
    pub multiline: bool,
    /// A JSON number is taken as its text (MoinMoin sends revisions as strings, others as numbers).
    pub numbers: bool,
    /// When a packed line is too long, fields of lower stages are dropped first (SPEC §2.3:
    /// urls, then comment, then extra, then the rest; `page` and `user` last of all).
    pub packed_stage: usize,
    /// What it holds, for people: `wikiwire publish --help`.
    pub about: &'static str,
}

/// The event's optional text fields, in the order the formats write them: one table for the
/// JSON, XML and packed encodings, for reading fields, for validation, for link templates and for
/// `wikiwire publish`. (`key` is also a text field, but each encoding puts it after the links: it
/// is not part of the change, only of its delivery.) Packed lines write the multi-line `comment`
/// after the other fields, as it is the first of them to be dropped.
pub const TEXT_FIELDS: &[TextField] = &[
    TextField {
        name: "page",
        get: |event| event.page.as_deref(),
        slot: |event| &mut event.page,
        limit: limits::PAGE,
        multiline: false,
        numbers: false,
        packed_stage: 5,
        about: "The page's name (any Unicode)",
    },
    TextField {
        name: "user",
        get: |event| event.user.as_deref(),
        slot: |event| &mut event.user,
        limit: limits::USER,
        multiline: false,
        numbers: false,
        packed_stage: 4,
        about: "Who made the change",
    },
    TextField {
        name: "comment",
        get: |event| event.comment.as_deref(),
        slot: |event| &mut event.comment,
        limit: limits::COMMENT,
        multiline: true,
        numbers: false,
        packed_stage: 1,
        about: "The edit summary",
    },
    TextField {
        name: "revision",
        get: |event| event.revision.as_deref(),
        slot: |event| &mut event.revision,
        limit: limits::REVISION,
        multiline: false,
        numbers: true,
        packed_stage: 3,
        about: "The revision the change made",
    },
    TextField {
        name: "old_revision",
        get: |event| event.old_revision.as_deref(),
        slot: |event| &mut event.old_revision,
        limit: limits::REVISION,
        multiline: false,
        numbers: true,
        packed_stage: 3,
        about: "The revision before the change",
    },
    TextField {
        name: "old_name",
        get: |event| event.old_name.as_deref(),
        slot: |event| &mut event.old_name,
        limit: limits::PAGE,
        multiline: false,
        numbers: false,
        packed_stage: 3,
        about: "The page's name before a rename (required for page_renamed)",
    },
    TextField {
        name: "file",
        get: |event| event.file.as_deref(),
        slot: |event| &mut event.file,
        limit: limits::FILE,
        multiline: false,
        numbers: false,
        packed_stage: 3,
        about: "The attachment's name (required for file_attached and file_removed)",
    },
];

/// The text field of this name.
pub fn text_field(name: &str) -> Option<&'static TextField> {
    TEXT_FIELDS.iter().find(|field| field.name == name)
}

/// Names with a meaning in some encoding; `extra` may not use them.
pub const RESERVED_NAMES: &[&str] = &[
    "id",
    "time",
    "wiki",
    "action",
    "page",
    "user",
    "editor",
    "comment",
    "revision",
    "old_revision",
    "old_name",
    "file",
    "size",
    "minor",
    "bot",
    "urls",
    "url",
    "url_description",
    "key",
    "extra",
    "more",
];

/// Reads a JSON object (or a packed line already turned into one) into a validated event.
pub fn parse(fields: Map<String, Value>, mode: Mode) -> Result<Event, FieldError> {
    let mut builder = Builder::default();
    for (name, value) in fields {
        if value.is_null() {
            continue;
        }
        builder.take(&name, value, mode)?;
    }
    let event = builder.finish(mode)?;
    check(&event, !matches!(mode, Mode::Submission { .. }), mode != Mode::Partial)?;
    if matches!(mode, Mode::Submission { .. }) {
        check_link_schemes(&event)?;
    }
    Ok(event)
}

/// Links become `href`s on the live page and Atom entry links: only web links (or links relative
/// to the wiki) may come in, never `javascript:`, `data:` and the like, nor a link that only looks
/// relative and leads to another site (`//host/`, `\\host`, `/\\host`). Applied to submissions
/// only, so events stored before this rule still read back.
fn check_link_schemes(event: &Event) -> Result<(), FieldError> {
    for (index, link) in event.urls.iter().enumerate() {
        let url = as_browsers_read(&link.url);
        let field = || format!("urls[{index}].url");
        let scheme = url.find(':').map(|colon| &url[..colon]).filter(|scheme| {
            scheme.starts_with(|first: char| first.is_ascii_alphabetic())
                && scheme.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
        });
        if let Some(scheme) = scheme
            && !scheme.eq_ignore_ascii_case("http")
            && !scheme.eq_ignore_ascii_case("https")
        {
            return Err(FieldError::new(
                field(),
                format!("only http and https links (or links relative to the wiki), not {scheme}:"),
            ));
        }
        if scheme.is_none() && url.starts_with("//") {
            return Err(FieldError::new(
                field(),
                "a link beginning with // (or \\) leads to another site: give it whole, with https:",
            ));
        }
    }
    Ok(())
}

/// A link as a browser reads an `href` (the WHATWG URL parser): leading controls and spaces
/// skipped, tabs and line breaks removed anywhere, and `\` taken as `/`.
fn as_browsers_read(url: &str) -> String {
    url.trim_start_matches(|c: char| c <= ' ')
        .chars()
        .filter(|c| !matches!(c, '\t' | '\n' | '\r'))
        .map(|c| if c == '\\' { '/' } else { c })
        .collect()
}

/// A publisher's submission, validated and ready for the store.
pub fn parse_submission(fields: Map<String, Value>, now: Timestamp) -> Result<Draft, FieldError> {
    parse(fields, Mode::Submission { now }).map(Draft::new)
}

impl Draft {
    /// Validates an event that an ingest adapter built field by field (RCFeed, XML-RPC).
    pub fn validate(mut event: Event) -> Result<Draft, FieldError> {
        normalise(&mut event);
        check(&event, false, true)?;
        check_link_schemes(&event)?;
        Ok(Draft::new(event))
    }
}

#[derive(Default)]
struct Builder {
    id: Option<u64>,
    time: Option<Timestamp>,
    wiki: Option<String>,
    action: Option<Action>,
    /// By the position of the field in `TEXT_FIELDS`.
    texts: [Option<String>; TEXT_FIELDS.len()],
    editor: Option<String>,
    size: Option<u64>,
    minor: bool,
    bot: bool,
    urls: Vec<Link>,
    key: Option<String>,
    extra: BTreeMap<String, String>,
    source: Option<serde_json::Map<String, Value>>,
}

impl Builder {
    fn take(&mut self, name: &str, value: Value, mode: Mode) -> Result<(), FieldError> {
        match name {
            "id" => match mode {
                Mode::Submission { .. } => {
                    return Err(FieldError::new("id", "assigned by the hub; leave it out"));
                }
                _ => self.id = Some(unsigned(name, &value)?),
            },
            "time" => self.time = Some(time(&value)?),
            "wiki" => self.wiki = text(name, value)?,
            "action" => {
                let text = text(name, value)?.unwrap_or_default();
                self.action = Some(Action::parse(&text).map_err(|reason| FieldError::new(name, reason))?);
            }
            "editor" => self.editor = text(name, value)?,
            "size" => self.size = Some(unsigned(name, &value)?),
            "minor" => self.minor = boolean(name, &value)?,
            "bot" => self.bot = boolean(name, &value)?,
            "urls" => self.urls = links(value)?,
            "key" => self.key = text_or_number(name, value)?,
            // Only the store writes the wiki's object (`Event::to_stored_json`); from a
            // publisher, `source` is an extra field like any other.
            "source" if !matches!(mode, Mode::Submission { .. }) && value.is_object() => {
                if let Value::Object(object) = value {
                    self.source = Some(object);
                }
            }
            "extra" => match value {
                Value::Object(entries) => {
                    for (extra_name, extra_value) in entries {
                        self.take_extra(&extra_name, extra_value)?;
                    }
                }
                _ => return Err(FieldError::new(name, "must be an object of strings")),
            },
            _ => match TEXT_FIELDS.iter().position(|field| field.name == name) {
                Some(index) if TEXT_FIELDS[index].numbers => self.texts[index] = text_or_number(name, value)?,
                Some(index) => self.texts[index] = text(name, value)?,
                None => self.take_extra(name, value)?,
            },
        }
        Ok(())
    }

    fn take_extra(&mut self, name: &str, value: Value) -> Result<(), FieldError> {
        let text = match value {
            Value::Null => return Ok(()),
            Value::String(text) => text,
            Value::Bool(_) | Value::Number(_) => value.to_string(),
            // Never dropped (SPEC §2.1): structured values are kept as their JSON text.
            Value::Array(_) | Value::Object(_) => value.to_string(),
        };
        self.extra.insert(name.to_owned(), text);
        Ok(())
    }

    fn finish(self, mode: Mode) -> Result<Event, FieldError> {
        let id = match mode {
            Mode::Submission { .. } => 0,
            _ => self.id.ok_or_else(|| FieldError::new("id", "required"))?,
        };
        let time = match (self.time, mode) {
            (Some(time), _) => time,
            (None, Mode::Submission { now }) => now,
            (None, _) => return Err(FieldError::new("time", "required")),
        };
        let wiki = self.wiki.ok_or_else(|| FieldError::new("wiki", "required"))?;
        let action = self.action.ok_or_else(|| FieldError::new("action", "required"))?;
        let mut event = Event::new(&wiki, action, time);
        event.id = id;
        for (field, text) in TEXT_FIELDS.iter().zip(self.texts) {
            *(field.slot)(&mut event) = text;
        }
        event.user = match (event.user.take(), self.editor) {
            (Some(user), Some(editor)) if user != editor => {
                return Err(FieldError::new("editor", "differs from user; send one of them"));
            }
            (user, editor) => user.or(editor),
        };
        event.size = self.size;
        event.minor = self.minor;
        event.bot = self.bot;
        event.urls = self.urls;
        event.key = self.key;
        event.extra = self.extra;
        event.source = self.source.map(std::sync::Arc::new);
        normalise(&mut event);
        Ok(event)
    }
}

/// Empty optional strings mean "absent"; one spelling keeps the encodings round-tripping.
fn normalise(event: &mut Event) {
    for field in TEXT_FIELDS {
        let slot = (field.slot)(event);
        if slot.as_deref() == Some("") {
            *slot = None;
        }
    }
    if event.key.as_deref() == Some("") {
        event.key = None;
    }
}

/// Every rule about field contents, on the finished event.
fn check(event: &Event, id_required: bool, fields_required: bool) -> Result<(), FieldError> {
    if id_required && event.id == 0 {
        return Err(FieldError::new("id", "must be at least 1"));
    }
    check_wiki_name(&event.wiki).map_err(|reason| FieldError::new("wiki", reason))?;
    for field in TEXT_FIELDS {
        if field.multiline {
            bounded(field.name, (field.get)(event), field.limit)?;
        } else {
            line(field.name, (field.get)(event), field.limit)?;
        }
    }
    line("key", event.key.as_deref(), limits::KEY)?;
    if event.urls.len() > limits::URLS {
        return Err(FieldError::new("urls", format!("at most {} links", limits::URLS)));
    }
    for (index, link) in event.urls.iter().enumerate() {
        line(&format!("urls[{index}].url"), Some(&link.url), limits::URL)?;
        if link.url.is_empty() {
            return Err(FieldError::new(format!("urls[{index}].url"), "required"));
        }
        line(&format!("urls[{index}].description"), Some(&link.description), limits::URL_DESCRIPTION)?;
    }
    if event.extra.len() > limits::EXTRA_ENTRIES {
        return Err(FieldError::new("extra", format!("at most {} extra fields", limits::EXTRA_ENTRIES)));
    }
    for (name, value) in &event.extra {
        check_extra_name(name).map_err(|reason| FieldError::new(name.clone(), reason))?;
        bounded(name, Some(value), limits::EXTRA_VALUE)?;
    }
    if fields_required {
        for required in event.action.required() {
            let present = match required {
                crate::Required::Page => event.page.is_some(),
                crate::Required::User => event.user.is_some(),
                crate::Required::OldName => event.old_name.is_some(),
                crate::Required::File => event.file.is_some(),
            };
            if !present {
                return Err(FieldError::new(required.name(), format!("required for {}", event.action)));
            }
        }
    }
    Ok(())
}

/// Wiki names become IRC channel names (`#<wiki>`, `#<wiki>.events`): ASCII letters, digits,
/// `_` and `-`, starting with a letter or digit, no dots (a dot would collide with `.events`).
pub fn check_wiki_name(name: &str) -> Result<(), &'static str> {
    let bytes = name.as_bytes();
    if bytes.is_empty() {
        return Err("required");
    }
    if bytes.len() > limits::WIKI {
        return Err("at most 48 characters");
    }
    let well_formed = bytes[0].is_ascii_alphanumeric()
        && bytes.iter().all(|b| b.is_ascii_alphanumeric() || *b == b'_' || *b == b'-');
    if well_formed {
        Ok(())
    } else {
        Err("use ASCII letters, digits, '_' and '-', starting with a letter or digit")
    }
}

fn check_extra_name(name: &str) -> Result<(), &'static str> {
    if RESERVED_NAMES.contains(&name) {
        return Err("reserved name; cannot be an extra field");
    }
    let bytes = name.as_bytes();
    let well_formed = !bytes.is_empty()
        && bytes.len() <= limits::EXTRA_NAME
        && bytes.iter().all(|b| b.is_ascii_alphanumeric() || b"_.:-".contains(b));
    if well_formed {
        Ok(())
    } else {
        Err("extra field names use ASCII letters, digits, '_', '.', ':' and '-' (at most 64)")
    }
}

/// A single-line text: no control characters, at most `limit` bytes.
fn line(field: &str, value: Option<&str>, limit: usize) -> Result<(), FieldError> {
    let Some(value) = value else { return Ok(()) };
    bounded(field, Some(value), limit)?;
    if value.chars().any(char::is_control) {
        return Err(FieldError::new(field, "control characters (newlines, tabs, ...) are not allowed"));
    }
    Ok(())
}

fn bounded(field: &str, value: Option<&str>, limit: usize) -> Result<(), FieldError> {
    match value {
        Some(value) if value.len() > limit => {
            Err(FieldError::new(field, format!("too long: {} bytes, at most {limit}", value.len())))
        }
        _ => Ok(()),
    }
}

fn text(name: &str, value: Value) -> Result<Option<String>, FieldError> {
    match value {
        Value::String(text) => Ok(Some(text)),
        _ => Err(FieldError::new(name, "must be a string")),
    }
}

/// MoinMoin sends revisions as strings, MediaWiki as numbers; both are kept as text.
fn text_or_number(name: &str, value: Value) -> Result<Option<String>, FieldError> {
    match value {
        Value::String(text) => Ok(Some(text)),
        Value::Number(number) if number.is_u64() || number.is_i64() => Ok(Some(number.to_string())),
        _ => Err(FieldError::new(name, "must be a string or an integer")),
    }
}

fn unsigned(name: &str, value: &Value) -> Result<u64, FieldError> {
    let parsed = match value {
        Value::Number(number) => number.as_u64(),
        Value::String(text)
            if !text.is_empty() && text.len() <= 20 && text.bytes().all(|b| b.is_ascii_digit()) =>
        {
            text.parse().ok()
        }
        _ => None,
    };
    parsed.ok_or_else(|| FieldError::new(name, "must be a non-negative integer"))
}

fn boolean(name: &str, value: &Value) -> Result<bool, FieldError> {
    match value {
        Value::Bool(flag) => Ok(*flag),
        Value::Number(number) if number.as_u64() == Some(0) => Ok(false),
        Value::Number(number) if number.as_u64() == Some(1) => Ok(true),
        Value::String(text) => match text.as_str() {
            "1" | "true" | "True" | "yes" => Ok(true),
            "0" | "false" | "False" | "no" | "" => Ok(false),
            _ => Err(FieldError::new(name, "must be true or false")),
        },
        _ => Err(FieldError::new(name, "must be true or false")),
    }
}

fn time(value: &Value) -> Result<Timestamp, FieldError> {
    let parsed = match value {
        Value::String(text) => Timestamp::parse(text),
        Value::Number(number) => match number.as_f64() {
            Some(seconds) => Timestamp::from_unix_seconds(seconds),
            None => Err(crate::TimeError::Syntax),
        },
        _ => Err(crate::TimeError::Syntax),
    };
    parsed.map_err(|error| FieldError::new("time", error.to_string()))
}

/// `urls`: a list of `{url, description}` objects; a bare string is a link without description.
fn links(value: Value) -> Result<Vec<Link>, FieldError> {
    let Value::Array(items) = value else {
        return Err(FieldError::new("urls", "must be a list of {url, description}"));
    };
    if items.len() > limits::URLS {
        return Err(FieldError::new("urls", format!("at most {} links", limits::URLS)));
    }
    items
        .into_iter()
        .enumerate()
        .map(|(index, item)| match item {
            Value::String(url) => Ok(Link { url, description: String::new() }),
            Value::Object(mut fields) => {
                let url = match fields.remove("url") {
                    Some(Value::String(url)) => url,
                    _ => {
                        return Err(FieldError::new(format!("urls[{index}].url"), "required string"));
                    }
                };
                let description = match fields.remove("description") {
                    None | Some(Value::Null) => String::new(),
                    Some(Value::String(description)) => description,
                    Some(_) => {
                        return Err(FieldError::new(
                            format!("urls[{index}].description"),
                            "must be a string",
                        ));
                    }
                };
                Ok(Link { url, description })
            }
            _ => Err(FieldError::new(format!("urls[{index}]"), "must be {url, description}")),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn submit(value: Value) -> Result<Draft, FieldError> {
        let Value::Object(map) = value else { panic!("test input must be an object") };
        parse_submission(map, Timestamp::from_millis(1_000).unwrap())
    }

    /// Every text field is a reserved name (no `extra` entry can shadow it), and each one set on
    /// an event comes back through the field reader at its own place.
    #[test]
    fn the_table_of_text_fields_is_whole() {
        let mut fields = json!({"wiki": "W", "action": "custom_thing"});
        for field in TEXT_FIELDS {
            assert!(RESERVED_NAMES.contains(&field.name), "{} is reserved", field.name);
            fields[field.name] = json!(format!("the {}", field.name));
        }
        let draft = submit(fields).unwrap();
        let event = draft.event();
        for field in TEXT_FIELDS {
            assert_eq!((field.get)(event), Some(format!("the {}", field.name).as_str()));
        }
        assert!(event.extra.is_empty());
    }

    #[test]
    fn a_moinmoin_save_becomes_page_changed() {
        let draft = submit(
            json!({"wiki": "MoinMaster", "action": "SAVE", "page": "פתיחה", "editor": "פלוני אלמוני"}),
        )
        .unwrap();
        let event = draft.event();
        assert_eq!(event.action.as_str(), "page_changed");
        assert_eq!(event.user.as_deref(), Some("פלוני אלמוני"));
        assert_eq!(event.time.millis(), 1_000);
    }

    #[test]
    fn errors_name_the_field() {
        let cases = [
            (json!({"action": "SAVE", "page": "P", "user": "u"}), "wiki"),
            (json!({"wiki": "W", "page": "P", "user": "u"}), "action"),
            (json!({"wiki": "W", "action": "SAVE", "user": "u"}), "page"),
            (json!({"wiki": "W", "action": "page_renamed", "page": "P", "user": "u"}), "old_name"),
            (json!({"wiki": "W", "action": "ATTNEW", "page": "P", "user": "u"}), "file"),
            (json!({"wiki": "W x", "action": "SAVE", "page": "P", "user": "u"}), "wiki"),
            (json!({"wiki": "W", "action": "SAVE", "page": "P\nQ", "user": "u"}), "page"),
            (json!({"wiki": "W", "action": "SAVE", "page": "P", "user": "u", "size": -1}), "size"),
            (json!({"wiki": "W", "action": "SAVE", "page": "P", "user": "u", "time": "soon"}), "time"),
            (json!({"wiki": "W", "action": "SAVE", "page": "P", "user": "u", "id": 5}), "id"),
            (json!({"wiki": "W", "action": "SAVE", "page": "P", "user": "u", "editor": "v"}), "editor"),
            (json!({"wiki": "W", "action": "SAVE", "page": "P", "user": "u", "minor": "maybe"}), "minor"),
            (
                json!({"wiki": "W", "action": "SAVE", "page": "P", "user": "u", "urls": [{"description": "d"}]}),
                "urls[0].url",
            ),
            (
                json!({"wiki": "W", "action": "SAVE", "page": "P", "user": "u", "extra": {"more": "1"}}),
                "more",
            ),
            (json!({"wiki": "W", "action": "SAVE", "page": "x".repeat(513), "user": "u"}), "page"),
            (
                json!({"wiki": "W", "action": "SAVE", "page": "P", "user": "u", "urls": ["javascript:alert(1)"]}),
                "urls[0].url",
            ),
            (
                json!({"wiki": "W", "action": "SAVE", "page": "P", "user": "u",
                       "urls": ["https://ok.example/", {"url": "  JavaScript:alert(1)", "description": "d"}]}),
                "urls[1].url",
            ),
            (
                json!({"wiki": "W", "action": "SAVE", "page": "P", "user": "u", "urls": ["data:text/html,x"]}),
                "urls[0].url",
            ),
        ];
        for (input, field) in cases {
            let error = submit(input.clone()).expect_err(&input.to_string());
            assert_eq!(error.field, field, "{input} gave {error}");
        }
    }

    #[test]
    fn web_and_relative_links_are_accepted() {
        for url in [
            "https://w.example/P?action=diff",
            "HTTP://w.example/",
            "/wiki/P",
            "P?action=diff&x=a:b",
            "Page/Sub\\Name",
        ] {
            let draft =
                submit(json!({"wiki": "W", "action": "SAVE", "page": "P", "user": "u", "urls": [url]}));
            assert!(draft.is_ok(), "{url}: {draft:?}");
        }
        // What browsers read as another site, or as a script, is refused.
        for url in [
            "//evil.example/P",
            "\\\\evil.example/P",
            "/\\evil.example/P",
            "\\/evil.example",
            " /\t/evil.example",
            "\u{1}//evil.example",
            "java\tscript:alert(1)",
            "\njavascript:alert(1)",
        ] {
            let error =
                submit(json!({"wiki": "W", "action": "SAVE", "page": "P", "user": "u", "urls": [url]}))
                    .expect_err(url);
            assert_eq!(error.field, "urls[0].url", "{url}");
        }
        // Stored before the rule: still reads back.
        let stored = json!({"id": 1, "time": "2026-01-01T00:00:00.000Z", "wiki": "W", "action": "page_changed",
                            "page": "P", "user": "u", "urls": [{"url": "javascript:x", "description": ""}]});
        let serde_json::Value::Object(map) = stored else { unreachable!("an object literal") };
        assert!(parse(map, Mode::Committed).is_ok());
    }

    #[test]
    fn unknown_fields_are_kept_in_extra() {
        let draft = submit(json!({
            "wiki": "W", "action": "antispam_updated", "list": "BadContent", "count": 3,
            "nested": {"a": [1, 2]}, "extra": {"origin": "cron"}, "ignored": null
        }))
        .unwrap();
        let extra = &draft.event().extra;
        assert_eq!(extra["list"], "BadContent");
        assert_eq!(extra["count"], "3");
        assert_eq!(extra["nested"], r#"{"a":[1,2]}"#);
        assert_eq!(extra["origin"], "cron");
        assert!(!extra.contains_key("ignored"));
    }

    #[test]
    fn empty_strings_are_absent_and_numbers_become_text() {
        let draft = submit(json!({"wiki": "W", "action": "SAVE", "page": "P", "user": "u", "comment": "", "revision": 42, "minor": "1"})).unwrap();
        let event = draft.event();
        assert_eq!(event.comment, None);
        assert_eq!(event.revision.as_deref(), Some("42"));
        assert!(event.minor);
    }

    #[test]
    fn committed_events_need_their_id() {
        let Value::Object(map) =
            json!({"wiki": "W", "action": "SAVE", "page": "P", "user": "u", "time": "2026-01-01T00:00:00Z"})
        else {
            unreachable!()
        };
        assert_eq!(parse(map.clone(), Mode::Committed).unwrap_err().field, "id");
        let mut with_id = map;
        with_id.insert("id".into(), json!(0));
        assert_eq!(parse(with_id, Mode::Committed).unwrap_err().field, "id");
    }
}
