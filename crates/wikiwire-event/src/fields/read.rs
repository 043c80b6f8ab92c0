//! JSON values into an event's fields: the type of each field, `editor` as an alias of `user`,
//! unknown fields into `extra`. Only the count of links is bounded here, while reading; every
//! other limit is `check`'s, on the result.

use std::collections::BTreeMap;

use serde_json::Value;

use super::{FieldError, Mode, TEXT_FIELDS, limits};
use crate::{Action, Event, Link, Timestamp};

/// The fields of one input as they are read, before they become an `Event`.
#[derive(Default)]
pub(super) struct Builder {
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
    pub(super) fn take(&mut self, name: &str, value: Value, mode: Mode) -> Result<(), FieldError> {
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

    pub(super) fn finish(self, mode: Mode) -> Result<Event, FieldError> {
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
        super::check::normalise(&mut event);
        Ok(event)
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
