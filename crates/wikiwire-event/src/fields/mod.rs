//! Turning publisher input into an `Event`: one field map in, a validated event or a
//! `FieldError` naming the field out. JSON, packed and every ingest adapter come through here, so
//! the rules (limits, aliases, `editor`→`user`, unknown fields into `extra`) exist once.
//!
//! | module | owns |
//! |---|---|
//! | `table` | the limits, the table of text fields, the reserved names |
//! | `read` | JSON values into an event's fields (types, aliases, `extra`) |
//! | `check` | every rule on the finished event (lengths, names, links, required fields) |

mod check;
mod read;
mod table;

use std::borrow::Cow;

use serde_json::{Map, Value};

use crate::{Draft, Event, Timestamp};

pub use check::check_wiki_name;
pub use table::{RESERVED_NAMES, TEXT_FIELDS, TextField, limits, text_field};

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

/// Reads a JSON object (or a packed line already turned into one) into a validated event.
pub fn parse(fields: Map<String, Value>, mode: Mode) -> Result<Event, FieldError> {
    let mut builder = read::Builder::default();
    for (name, value) in fields {
        if value.is_null() {
            continue;
        }
        builder.take(&name, value, mode)?;
    }
    let event = builder.finish(mode)?;
    check::check(&event, !matches!(mode, Mode::Submission { .. }), mode != Mode::Partial)?;
    if matches!(mode, Mode::Submission { .. }) {
        check::check_link_schemes(&event)?;
    }
    Ok(event)
}

/// A publisher's submission, validated and ready for the store.
pub fn parse_submission(fields: Map<String, Value>, now: Timestamp) -> Result<Draft, FieldError> {
    parse(fields, Mode::Submission { now }).map(Draft::new)
}

impl Draft {
    /// Validates an event that an ingest adapter built field by field (RCFeed, XML-RPC).
    pub fn validate(mut event: Event) -> Result<Draft, FieldError> {
        check::normalise(&mut event);
        check::check(&event, false, true)?;
        check::check_link_schemes(&event)?;
        Ok(Draft::new(event))
    }
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
