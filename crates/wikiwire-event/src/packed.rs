//! Packed events (SPEC §2.3, seed 1's `makeQueryString`): UTF-8 form-urlencoding with keys in a
//! fixed order starting with `id`, for IRC machine channels where a line has 512 bytes.
//!
//! When an event does not fit its budget, whole groups of optional fields are left out (urls, then
//! comment, then extra, then the remaining optionals, then user, then page) and `more=1` tells the
//! reader to fetch `GET /api/v1/events/{id}`. The core (`id`, `time`, `wiki`, `action`, flags) is
//! never left out and always fits in [`CORE_BUDGET`] bytes.

use std::borrow::Cow;

use serde_json::{Map, Value};

use crate::fields::{self, FieldError, Mode, TEXT_FIELDS};
use crate::{Draft, Event, Timestamp};

/// Bytes the never-dropped core can take at most: `id=` + 20 digits (23), `&time=` + 24 (30),
/// `&wiki=` + 48 (54), `&action=` + 32 (40), `&minor=1` (8), `&bot=1` (6), `&more=1` (7) = 168.
pub const CORE_BUDGET: usize = 176;

/// An encoded event and whether it carries every field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Packed {
    pub text: String,
    pub complete: bool,
}

/// A decoded packed line; when `more` is set some optional fields were left out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unpacked {
    pub event: Event,
    pub more: bool,
}

/// Number of drop stages; a field of stage `n` is left out from attempt `n + 1` on.
const STAGES: usize = 6;

/// Encodes the whole event, whatever its length.
pub fn encode(event: &Event) -> String {
    encode_within(event, usize::MAX).text
}

/// Encodes within `budget` bytes, leaving out optional fields as the module explains.
pub fn encode_within(event: &Event, budget: usize) -> Packed {
    encode_pairs(pairs(event, true), budget, true)
}

/// The form a publisher sends (no `id`: the receiving hub assigns its own), within `budget`;
/// what `parse_submission` reads. A relay to another wikiwire sends this. A submission cannot
/// say `more`, so a shortened one is only marked by `complete: false`.
pub fn encode_submission_within(event: &Event, budget: usize) -> Packed {
    encode_pairs(pairs(event, false), budget, false)
}

fn encode_pairs(pairs: Vec<(Option<usize>, &str, Cow<'_, str>)>, budget: usize, mark_more: bool) -> Packed {
    let mut text = String::new();
    for dropped in 0..=STAGES {
        text.clear();
        let kept = pairs.iter().filter(|(stage, _, _)| stage.is_none_or(|stage| stage >= dropped));
        for (_, name, value) in kept {
            push_pair(&mut text, name, value);
        }
        if dropped > 0 && mark_more {
            push_pair(&mut text, "more", "1");
        }
        if text.len() <= budget {
            return Packed { text, complete: dropped == 0 };
        }
    }
    Packed { text, complete: false }
}

/// Every pair of the event in wire order, each with its drop stage (`None`: never dropped).
fn pairs(event: &Event, with_id: bool) -> Vec<(Option<usize>, &str, Cow<'_, str>)> {
    let mut pairs: Vec<(Option<usize>, &str, Cow<'_, str>)> = Vec::with_capacity(16);
    if with_id {
        pairs.push((None, "id", event.id.to_string().into()));
    }
    pairs.extend([
        (None, "time", event.time.to_string().into()),
        (None, "wiki", event.wiki.as_str().into()),
        (None, "action", event.action.as_str().into()),
    ]);
    let texts = |multiline: bool| {
        TEXT_FIELDS.iter().filter(move |field| field.multiline == multiline).filter_map(|field| {
            let value = (field.get)(event)?;
            Some((Some(field.packed_stage), field.name, Cow::from(value)))
        })
    };
    pairs.extend(texts(false));
    if let Some(size) = event.size {
        pairs.push((Some(3), "size", size.to_string().into()));
    }
    if event.minor {
        pairs.push((None, "minor", "1".into()));
    }
    if event.bot {
        pairs.push((None, "bot", "1".into()));
    }
    if let Some(key) = &event.key {
        pairs.push((Some(3), "key", key.as_str().into()));
    }
    pairs.extend(texts(true));
    // Extra names never shadow a field: validation refuses the reserved names.
    for (name, value) in &event.extra {
        pairs.push((Some(2), name.as_str(), value.as_str().into()));
    }
    for link in &event.urls {
        pairs.push((Some(0), "url", link.url.as_str().into()));
        if !link.description.is_empty() {
            pairs.push((Some(0), "url_description", link.description.as_str().into()));
        }
    }
    pairs
}

fn push_pair(out: &mut String, name: &str, value: &str) {
    if !out.is_empty() {
        out.push('&');
    }
    escape_into(out, name);
    out.push('=');
    escape_into(out, value);
}

/// Form-urlencoding, with `:` and `/` left readable (times, subpages); space becomes `+`.
fn escape_into(out: &mut String, text: &str) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &byte in text.as_bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'*' | b':' | b'/' => {
                out.push(char::from(byte))
            }
            b' ' => out.push('+'),
            _ => {
                out.push('%');
                out.push(char::from(HEX[usize::from(byte >> 4)]));
                out.push(char::from(HEX[usize::from(byte & 15)]));
            }
        }
    }
}

/// Reads a packed line the hub sent (a machine channel, a relay).
pub fn decode(text: &str) -> Result<Unpacked, FieldError> {
    let (map, more) = to_fields(text)?;
    let mode = if more { Mode::Partial } else { Mode::Committed };
    Ok(Unpacked { event: fields::parse(map, mode)?, more })
}

/// Reads a packed line a publisher sent: no `id`, no `more`.
pub fn parse_submission(text: &str, now: Timestamp) -> Result<Draft, FieldError> {
    let (map, more) = to_fields(text)?;
    if more {
        return Err(FieldError::new("more", "only the hub marks events as shortened"));
    }
    fields::parse_submission(map, now)
}

/// The pairs of a packed line as a field map: `url`/`url_description` pairs become `urls`.
fn to_fields(text: &str) -> Result<(Map<String, Value>, bool), FieldError> {
    let mut map = Map::new();
    let mut urls: Vec<Value> = Vec::new();
    let mut more = false;
    for pair in text.trim_end_matches(['\r', '\n']).split('&').filter(|pair| !pair.is_empty()) {
        let (raw_name, raw_value) = pair.split_once('=').unwrap_or((pair, ""));
        let name = unescape(raw_name, raw_name)?;
        let value = unescape(&name, raw_value)?;
        match name.as_str() {
            "more" => match value.as_str() {
                "1" => more = true,
                "0" | "" => {}
                _ => return Err(FieldError::new("more", "must be 1")),
            },
            "url" => urls.push(serde_json::json!({ "url": value })),
            "url_description" => match urls.last_mut() {
                Some(Value::Object(link)) if !link.contains_key("description") => {
                    link.insert("description".into(), Value::String(value));
                }
                _ => return Err(FieldError::new("url_description", "must follow its url")),
            },
            _ => {
                if map.insert(name.clone(), Value::String(value)).is_some() {
                    return Err(FieldError::new(name, "given twice"));
                }
            }
        }
    }
    if !urls.is_empty() {
        map.insert("urls".into(), Value::Array(urls));
    }
    Ok((map, more))
}

/// Undoes form-urlencoding strictly: a broken `%` escape or invalid UTF-8 is an error naming the
/// field, never a replacement character.
fn unescape(field: &str, raw: &str) -> Result<String, FieldError> {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        match bytes[index] {
            b'+' => out.push(b' '),
            b'%' => {
                let escaped = bytes.get(index + 1..index + 3).and_then(|hex| {
                    let high = char::from(hex[0]).to_digit(16)?;
                    let low = char::from(hex[1]).to_digit(16)?;
                    u8::try_from(high * 16 + low).ok()
                });
                let Some(byte) = escaped else {
                    return Err(FieldError::new(field, "malformed %-escape"));
                };
                out.push(byte);
                index += 2;
            }
            byte => out.push(byte),
        }
        index += 1;
    }
    String::from_utf8(out).map_err(|_| FieldError::new(field, "not valid UTF-8 after %-decoding"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Action, Link};

    fn sample() -> Event {
        let mut event = Event::new(
            "MoinMaster",
            Action::parse("SAVE").unwrap(),
            Timestamp::parse("2026-11-22T21:00:00Z").unwrap(),
        );
        event.id = 17;
        event.page = Some("פתיחה".into());
        event.user = Some("פלוני אלמוני".into());
        event
    }

    #[test]
    fn matches_the_spec_example() {
        assert_eq!(
            encode(&sample()),
            "id=17&time=2026-11-22T21:00:00.000Z&wiki=MoinMaster&action=page_changed&page=%D7%A4%D7%AA%D7%99%D7%97%D7%94&user=%D7%A4%D7%9C%D7%95%D7%A0%D7%99+%D7%90%D7%9C%D7%9E%D7%95%D7%A0%D7%99"
        );
    }

    #[test]
    fn accepts_plus_and_percent_20() {
        let with_plus =
            decode("id=1&time=2026-01-01T00:00:00Z&wiki=W&action=SAVE&page=Front+Page&user=A%20B").unwrap();
        assert_eq!(with_plus.event.page.as_deref(), Some("Front Page"));
        assert_eq!(with_plus.event.user.as_deref(), Some("A B"));
    }

    #[test]
    fn long_events_drop_optional_fields_in_order() {
        let mut event = sample();
        event.comment = Some("c".repeat(300));
        event.urls = vec![Link { url: "https://example.org/diff".into(), description: "diff".into() }];
        event.extra.insert("origin".into(), "cron".into());
        let full = encode(&event);
        let without_urls = encode_within(&event, full.len() - 1);
        assert!(!without_urls.complete);
        assert!(without_urls.text.contains("comment=") && !without_urls.text.contains("url="));
        assert!(without_urls.text.ends_with("&more=1"));
        let without_comment = encode_within(&event, 200);
        assert!(without_comment.text.contains("origin=cron") && !without_comment.text.contains("comment="));
        let unpacked = decode(&without_comment.text).unwrap();
        assert!(unpacked.more);
        assert_eq!(unpacked.event.page, event.page);
    }

    #[test]
    fn the_core_always_fits() {
        let mut event = sample();
        event.wiki = "W".repeat(48);
        event.id = u64::MAX;
        event.action = Action::parse(&"a".repeat(32)).unwrap();
        event.minor = true;
        event.bot = true;
        event.page = Some("ページ".repeat(50));
        let packed = encode_within(&event, CORE_BUDGET);
        assert!(packed.text.len() <= CORE_BUDGET, "{} bytes", packed.text.len());
        assert!(decode(&packed.text).unwrap().more);
    }

    #[test]
    fn the_submission_form_has_no_id_and_parses_as_a_submission() {
        let mut event = sample();
        event.key = Some("relayed:17".into());
        let packed = encode_submission_within(&event, 512);
        assert!(packed.complete && !packed.text.contains("id=17&"));
        let draft = parse_submission(&packed.text, Timestamp::MIN).unwrap();
        assert_eq!(draft.commit(17), event);
        event.comment = Some("long ".repeat(200));
        let shortened = encode_submission_within(&event, 300);
        assert!(!shortened.complete && !shortened.text.contains("more="));
        assert!(parse_submission(&shortened.text, Timestamp::MIN).is_ok());
    }

    #[test]
    fn broken_input_names_the_field() {
        for (line, field) in [
            ("id=1&time=2026-01-01T00:00:00Z&wiki=W&action=SAVE&page=%FF&user=u", "page"),
            ("id=1&time=2026-01-01T00:00:00Z&wiki=W&action=SAVE&page=%G1&user=u", "page"),
            ("id=1&time=2026-01-01T00:00:00Z&wiki=W&action=SAVE&page=%4&user=u", "page"),
            ("id=1&id=2&time=2026-01-01T00:00:00Z&wiki=W&action=SAVE&page=P&user=u", "id"),
            (
                "id=1&time=2026-01-01T00:00:00Z&wiki=W&action=SAVE&page=P&user=u&url_description=x",
                "url_description",
            ),
            ("id=1&time=2026-01-01T00:00:00Z&wiki=W&action=SAVE&page=P&user=u&more=2", "more"),
        ] {
            assert_eq!(decode(line).unwrap_err().field, field, "{line}");
        }
        let now = Timestamp::MIN;
        assert_eq!(
            parse_submission("wiki=W&action=SAVE&page=P&user=u&more=1", now).unwrap_err().field,
            "more"
        );
        assert_eq!(parse_submission("id=3&wiki=W&action=SAVE&page=P&user=u", now).unwrap_err().field, "id");
    }
}
