//! Canonical JSON (SPEC §2.1): the fields in the table's order, absent optionals omitted,
//! `minor`/`bot` always present, `extra` as a nested object.

use serde::ser::{Serialize, SerializeMap, SerializeStruct, Serializer};
use serde_json::Value;

use crate::fields::{self, FieldError, Mode, TEXT_FIELDS};
use crate::{Draft, Event, Link, Timestamp};

/// Most events one request may carry.
pub const MAX_BATCH: usize = 1000;

impl Serialize for Link {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut link = serializer.serialize_struct("Link", 2)?;
        link.serialize_field("url", &self.url)?;
        link.serialize_field("description", &self.description)?;
        link.end()
    }
}

impl Serialize for Event {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("id", &self.id)?;
        map.serialize_entry("time", &self.time)?;
        map.serialize_entry("wiki", &self.wiki)?;
        map.serialize_entry("action", self.action.as_str())?;
        for field in TEXT_FIELDS {
            if let Some(value) = (field.get)(self) {
                map.serialize_entry(field.name, value)?;
            }
        }
        if let Some(size) = self.size {
            map.serialize_entry("size", &size)?;
        }
        map.serialize_entry("minor", &self.minor)?;
        map.serialize_entry("bot", &self.bot)?;
        if !self.urls.is_empty() {
            map.serialize_entry("urls", &self.urls)?;
        }
        if let Some(key) = &self.key {
            map.serialize_entry("key", key)?;
        }
        if !self.extra.is_empty() {
            map.serialize_entry("extra", &self.extra)?;
        }
        map.end()
    }
}

impl Event {
    pub fn to_json(&self) -> String {
        // Serialising plain strings, numbers and maps with string keys cannot fail.
        serde_json::to_string(self).expect("event serialises")
    }

    /// What a store keeps: the canonical JSON with the wiki's own object, if any, as `source`.
    /// [`Event::from_json`] reads both forms.
    pub fn to_stored_json(&self) -> String {
        let mut json = self.to_json();
        if let Some(source) = &self.source {
            // The canonical JSON is an object: it ends with its closing brace.
            json.pop();
            json.push_str(",\"source\":");
            json.push_str(&serde_json::to_string(source.as_ref()).expect("a JSON object serialises"));
            json.push('}');
        }
        json
    }

    /// Reads a stored event back (history, the `+wikiwire/event` tag, the store's own rows).
    pub fn from_json(text: &str) -> Result<Event, FieldError> {
        match serde_json::from_str::<Value>(text) {
            Ok(Value::Object(map)) => fields::parse(map, Mode::Committed),
            Ok(_) => Err(FieldError::new("event", "must be a JSON object")),
            Err(error) => Err(FieldError::new("event", format!("invalid JSON: {error}"))),
        }
    }

    /// Reads a stored event from a JSON object already parsed (an event in a history page).
    pub fn from_json_object(object: serde_json::Map<String, Value>) -> Result<Event, FieldError> {
        fields::parse(object, Mode::Committed)
    }
}

/// A publisher's JSON body: one event object or an array of them, all valid or none taken.
pub fn parse_submissions(body: &[u8], now: Timestamp) -> Result<Vec<Draft>, FieldError> {
    let text = std::str::from_utf8(body).map_err(|error| {
        FieldError::new("body", format!("not valid UTF-8 (at byte {})", error.valid_up_to()))
    })?;
    let value: Value = serde_json::from_str(text)
        .map_err(|error| FieldError::new("body", format!("invalid JSON: {error}")))?;
    match value {
        Value::Object(map) => Ok(vec![fields::parse_submission(map, now)?]),
        Value::Array(items) => {
            if items.is_empty() {
                return Err(FieldError::new("body", "empty array: send at least one event"));
            }
            if items.len() > MAX_BATCH {
                return Err(FieldError::new("body", format!("at most {MAX_BATCH} events per request")));
            }
            items
                .into_iter()
                .enumerate()
                .map(|(index, item)| match item {
                    Value::Object(map) => {
                        fields::parse_submission(map, now).map_err(|error| error.in_batch(index))
                    }
                    _ => Err(FieldError::new(format!("[{index}]"), "must be an event object")),
                })
                .collect()
        }
        _ => Err(FieldError::new("body", "must be an event object or an array of them")),
    }
}
