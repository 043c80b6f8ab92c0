//! Wikimedia's EventStreams contract (`stream.wikimedia.org`, SPEC §4 `/v2/stream/{streams}`):
//! an event as a `mediawiki/recentchange/1.0.0` object, the KafkaSSE-shaped `id` that clients
//! echo back in `Last-Event-ID`, and the `since` parameter. Pure: the HTTP endpoint
//! (`wikiwire-http::v2`) only frames what is built here.
//!
//! * **Body.** An event that came from MediaWiki's RCFeed is the datagram it kept (`source`),
//!   nulls removed recursively as EventBus leaves them out, with `$schema` and `meta` set. Any
//!   other event is written in the same shape from its fields, the `mw_` extras an older RCFeed
//!   row kept, and its wiki's description block, so one stream serves a mixed farm.
//! * **Ids.** `[{"topic":…,"partition":0,"offset":<id + 1>,"timestamp":<ms + 1>}]`: as KafkaSSE
//!   writes them, each number is the *next* position to read, so an echoed id resumes right after
//!   the event. An offset of this hub's topic resumes exactly; a timestamp alone (an id from
//!   another EventStreams) resumes by time. A bare event id (`/api/v1/stream`'s) names the last
//!   event received.
//! * **`since`.** Milliseconds since 1970 (digits only), or an ISO 8601 date or date-time.
//!
//! Must never read the clock or the store: the caller turns a [`Resume`] into a position.

use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use crate::wiki::WikiDescription;
use crate::{Event, Timestamp};

/// The schema every event of the stream declares.
pub const SCHEMA: &str = "/mediawiki/recentchange/1.0.0";
/// The stream's canonical name (EventStreams' `meta.stream`).
pub const STREAM: &str = "mediawiki.recentchange";
/// The stream names `/v2/stream/{streams}` knows without configuration.
pub const STREAM_NAMES: &[&str] = &["recentchange", STREAM];
/// The one topic (and partition 0) of the hub's log, as ids and `meta.topic` name it.
pub const TOPIC: &str = "wikiwire.mediawiki.recentchange";
/// Longest `Last-Event-ID` read: KafkaSSE's ids are one small object per topic.
pub const MAX_LAST_EVENT_ID: usize = 4096;
/// Most entries a `Last-Event-ID` array may hold.
pub const MAX_ASSIGNMENTS: usize = 32;

/// Where a client asked to start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resume {
    /// After this event id (0: from the oldest retained event).
    After(u64),
    /// From the first event whose time is at or after this.
    At(Timestamp),
    /// Only events that come from now on (a Kafka offset of -1).
    Latest,
}

/// Why a `Last-Event-ID` or `since` cannot be read; the text is the answer's `detail`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PositionError(pub String);

fn error(text: impl Into<String>) -> PositionError {
    PositionError(text.into())
}

/// The SSE `id` of an event, in KafkaSSE's form.
pub fn event_id(event: &Event) -> String {
    json!([{
        "topic": TOPIC,
        "partition": 0,
        "offset": event.id.saturating_add(1),
        "timestamp": event.time.millis() + 1,
    }])
    .to_string()
}

/// The SSE `id` that resumes after event `id` when its time is not known (after a gap).
pub fn position_id(id: u64) -> String {
    json!([{ "topic": TOPIC, "partition": 0, "offset": id.saturating_add(1) }]).to_string()
}

/// Reads a `Last-Event-ID`: KafkaSSE's array of assignments, or a bare event id.
pub fn parse_last_event_id(text: &str) -> Result<Resume, PositionError> {
    let text = text.trim();
    if text.len() > MAX_LAST_EVENT_ID {
        return Err(error(format!("Last-Event-ID: longer than {MAX_LAST_EVENT_ID} bytes")));
    }
    if !text.is_empty() && text.len() <= 20 && text.bytes().all(|b| b.is_ascii_digit()) {
        return text.parse().map(Resume::After).map_err(|_| error("Last-Event-ID: event id out of range"));
    }
    let Ok(Value::Array(assignments)) = serde_json::from_str::<Value>(text) else {
        return Err(error("Last-Event-ID: must be an event id or a JSON array of assignments"));
    };
    if assignments.is_empty() || assignments.len() > MAX_ASSIGNMENTS {
        return Err(error(format!("Last-Event-ID: 1 to {MAX_ASSIGNMENTS} assignments")));
    }
    let mut offset: Option<Resume> = None;
    let mut earliest_time: Option<i64> = None;
    for assignment in &assignments {
        let Some(topic) = assignment.get("topic").and_then(Value::as_str) else {
            return Err(error("Last-Event-ID: each assignment needs a topic"));
        };
        if assignment.get("partition").is_some_and(|partition| !partition.is_i64()) {
            return Err(error("Last-Event-ID: partition must be an integer"));
        }
        let number = |name: &str| match assignment.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(value) => value
                .as_i64()
                .map(Some)
                .ok_or_else(|| error(format!("Last-Event-ID: {name} must be an integer"))),
        };
        let (position, time) = (number("offset")?, number("timestamp")?);
        if position.is_none() && time.is_none() {
            return Err(error("Last-Event-ID: each assignment needs an offset or a timestamp"));
        }
        match position {
            // Our own offsets name an exact place; another log's offsets mean nothing here.
            Some(position) if topic == TOPIC => {
                let this = match position {
                    -1 => Resume::Latest,
                    -2 => Resume::After(0),
                    n if n >= 0 => Resume::After((n as u64).saturating_sub(1)),
                    _ => return Err(error("Last-Event-ID: offset must be -2, -1 or at least 0")),
                };
                // Several entries for our topic: the earliest, so nothing is missed.
                offset = Some(match (offset, this) {
                    (Some(Resume::After(a)), Resume::After(b)) => Resume::After(a.min(b)),
                    (Some(Resume::After(a)), Resume::Latest) => Resume::After(a),
                    _ => this,
                });
            }
            _ => {
                if let Some(time) = time {
                    earliest_time = Some(earliest_time.map_or(time, |earliest| earliest.min(time)));
                }
            }
        }
    }
    if let Some(offset) = offset {
        return Ok(offset);
    }
    match earliest_time {
        Some(ms) => Ok(Resume::At(
            Timestamp::from_millis(ms.max(0)).map_err(|_| error("Last-Event-ID: timestamp out of range"))?,
        )),
        None => Err(error(format!("Last-Event-ID: no timestamp, and no offset of topic {TOPIC}"))),
    }
}

/// Reads `since`: milliseconds since 1970, or an ISO 8601 date or date-time (a time without an
/// offset is UTC).
pub fn parse_since(text: &str) -> Result<Timestamp, PositionError> {
    let text = text.trim();
    let invalid = || {
        error(format!(
            "since timestamp is not a UTC milliseconds unix epoch and was not parseable: '{}'",
            crate::text::cut_at_boundary(text, 64)
        ))
    };
    if text.is_empty() || text.len() > 64 {
        return Err(invalid());
    }
    if text.bytes().all(|b| b.is_ascii_digit()) {
        return text.parse::<i64>().ok().and_then(|ms| Timestamp::from_millis(ms).ok()).ok_or_else(invalid);
    }
    parse_iso8601(text).ok_or_else(invalid)
}

/// ISO 8601: `YYYY-MM-DD` or `YYYYMMDD`, then optionally `T` (or a space) and `HH:MM[:SS[.f]]`
/// or `HHMM[SS[.f]]`, then optionally `Z`, `±HH`, `±HHMM` or `±HH:MM`.
fn parse_iso8601(text: &str) -> Option<Timestamp> {
    let bytes = text.as_bytes();
    let mut at = 0usize;
    let digits = |at: &mut usize, count: usize| -> Option<u32> {
        let slice = bytes.get(*at..*at + count)?;
        if !slice.iter().all(u8::is_ascii_digit) {
            return None;
        }
        *at += count;
        std::str::from_utf8(slice).ok()?.parse().ok()
    };
    let eat = |at: &mut usize, byte: u8| -> bool {
        let found = bytes.get(*at) == Some(&byte);
        if found {
            *at += 1;
        }
        found
    };
    let year = digits(&mut at, 4)?;
    let extended = eat(&mut at, b'-');
    let month = digits(&mut at, 2)?;
    if extended && !eat(&mut at, b'-') {
        return None;
    }
    let day = digits(&mut at, 2)?;
    let date = time::Date::from_calendar_date(
        i32::try_from(year).ok()?,
        time::Month::try_from(u8::try_from(month).ok()?).ok()?,
        u8::try_from(day).ok()?,
    )
    .ok()?;
    let (mut hour, mut minute, mut second, mut nanos) = (0u32, 0u32, 0u32, 0u32);
    if at < bytes.len() && (eat(&mut at, b'T') || eat(&mut at, b't') || eat(&mut at, b' ')) {
        hour = digits(&mut at, 2)?;
        let colons = eat(&mut at, b':');
        minute = digits(&mut at, 2)?;
        if (colons && eat(&mut at, b':')) || (!colons && bytes.get(at).is_some_and(u8::is_ascii_digit)) {
            second = digits(&mut at, 2)?;
            if eat(&mut at, b'.') || eat(&mut at, b',') {
                let start = at;
                while bytes.get(at).is_some_and(u8::is_ascii_digit) {
                    at += 1;
                }
                if at == start {
                    return None;
                }
                let fraction = &text[start..at.min(start + 9)];
                nanos = format!("{fraction:0<9}").parse().ok()?;
            }
        }
    }
    let offset_seconds: i32 = match bytes.get(at) {
        None => 0,
        Some(b'Z' | b'z') => {
            at += 1;
            0
        }
        Some(sign @ (b'+' | b'-')) => {
            let sign = if *sign == b'-' { -1 } else { 1 };
            at += 1;
            let hours = digits(&mut at, 2)?;
            let colon = eat(&mut at, b':');
            let minutes = if colon || at < bytes.len() { digits(&mut at, 2)? } else { 0 };
            if hours > 23 || minutes > 59 {
                return None;
            }
            sign * i32::try_from(hours * 3600 + minutes * 60).ok()?
        }
        Some(_) => return None,
    };
    if at != bytes.len() {
        return None;
    }
    let time = time::Time::from_hms_nano(
        u8::try_from(hour).ok()?,
        u8::try_from(minute).ok()?,
        u8::try_from(second).ok()?,
        nanos,
    )
    .ok()?;
    let instant = time::PrimitiveDateTime::new(date, time)
        .assume_offset(time::UtcOffset::from_whole_seconds(offset_seconds).ok()?);
    let ms = instant.unix_timestamp_nanos().div_euclid(1_000_000);
    Timestamp::from_millis(i64::try_from(ms).ok()?).ok()
}

/// A stable UUID for an event (`meta.id`): the same change gives the same id on every node, after
/// a restart, and after `wikiwire migrate` numbered the log anew. Made from a SHA-256 of what
/// identifies the change, with the version bits of a UUIDv8 (RFC 9562 §5.8).
pub fn event_uuid(event: &Event) -> String {
    let mut hash = Sha256::new();
    for part in [
        event.wiki.as_str(),
        &event.time.millis().to_string(),
        event.action.as_str(),
        event.page_or_empty(),
        event.user_or_empty(),
        event.revision.as_deref().unwrap_or(""),
        event.extra.get("mw_id").map_or("", String::as_str),
        event.comment.as_deref().unwrap_or(""),
    ] {
        hash.update(part.as_bytes());
        hash.update([0]);
    }
    let digest = hash.finalize();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    bytes[6] = (bytes[6] & 0x0f) | 0x80;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex: String = bytes.iter().map(|byte| format!("{byte:02x}")).collect();
    format!("{}-{}-{}-{}-{}", &hex[..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..])
}

/// `2026-11-22T21:00:00Z` as EventBus writes `meta.dt` (milliseconds only when there are some).
fn dt(time: Timestamp) -> String {
    let text = time.to_string();
    match text.strip_suffix(".000Z") {
        Some(whole) => format!("{whole}Z"),
        None => text,
    }
}

/// The event as `mediawiki/recentchange/1.0.0`, `stream` naming the stream it was asked under.
pub fn recentchange(event: &Event, wiki: Option<&WikiDescription>, stream: &str) -> Value {
    let mut body = match &event.source {
        Some(source) => without_nulls(source),
        None => from_fields(event, wiki),
    };
    let mut meta = match body.remove("meta") {
        Some(Value::Object(meta)) => meta,
        _ => Map::new(),
    };
    let text =
        |body: &Map<String, Value>, name: &str| body.get(name).and_then(Value::as_str).map(str::to_owned);
    if !meta.contains_key("uri") {
        let uri = text(&body, "title_url")
            .or_else(|| text(&body, "notify_url"))
            .or_else(|| text(&body, "server_url"));
        if let Some(uri) = uri {
            meta.insert("uri".into(), uri.into());
        }
    }
    if !meta.contains_key("domain")
        && let Some(domain) = text(&body, "server_name")
    {
        meta.insert("domain".into(), domain.into());
    }
    meta.insert("id".into(), event_uuid(event).into());
    meta.insert("dt".into(), dt(event.time).into());
    meta.insert("stream".into(), stream.into());
    meta.insert("topic".into(), TOPIC.into());
    meta.insert("partition".into(), 0.into());
    meta.insert("offset".into(), event.id.into());
    let mut out = Map::with_capacity(body.len() + 2);
    out.insert("$schema".into(), SCHEMA.into());
    out.insert("meta".into(), Value::Object(meta));
    body.remove("$schema");
    out.extend(body);
    Value::Object(out)
}

fn without_nulls(object: &Map<String, Value>) -> Map<String, Value> {
    object
        .iter()
        .filter(|(_, value)| !value.is_null())
        .map(|(name, value)| (name.clone(), strip(value)))
        .collect()
}

fn strip(value: &Value) -> Value {
    match value {
        Value::Object(object) => Value::Object(without_nulls(object)),
        Value::Array(items) => Value::Array(items.iter().filter(|item| !item.is_null()).map(strip).collect()),
        other => other.clone(),
    }
}

/// `https://host` and `host` of a URL, and its path (the script path), if it has a host.
fn server_of(url: &str) -> Option<(String, String, String)> {
    let (scheme, rest) = url.split_once("://")?;
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..end];
    let host = authority.rsplit_once('@').map_or(authority, |(_, host)| host);
    let name = host.strip_prefix('[').map_or_else(
        || host.split(':').next().unwrap_or(host).to_owned(),
        |bracketed| bracketed.split(']').next().unwrap_or(bracketed).to_owned(),
    );
    let path = rest[end..].split(['?', '#']).next().unwrap_or("").trim_end_matches('/');
    Some((format!("{scheme}://{authority}"), name, if path.is_empty() { "/".into() } else { path.into() }))
}

/// The recentchange fields of an event that did not come with MediaWiki's datagram.
fn from_fields(event: &Event, wiki: Option<&WikiDescription>) -> Map<String, Value> {
    let extra = |name: &str| event.extra.get(&format!("mw_{name}")).map(String::as_str);
    let integer = |name: &str| extra(name).and_then(|text| text.parse::<i64>().ok());
    let kind = extra("type").unwrap_or(match event.action.as_str() {
        "page_changed" | "page_reverted" => "edit",
        "page_created" => "new",
        "categorize" => "categorize",
        "external" => "external",
        _ => "log",
    });
    let mut body = Map::new();
    if let Some(id) = integer("id") {
        body.insert("id".into(), id.into());
    }
    body.insert("type".into(), kind.into());
    let title = match extra("title") {
        Some(title) => title.to_owned(),
        None if kind == "log" => crate::mediawiki::log_target(event),
        None => event.page_or_empty().to_owned(),
    };
    if let Some(namespace) = integer("namespace") {
        body.insert("namespace".into(), namespace.into());
    } else if kind != "log" {
        body.insert("namespace".into(), 0.into());
    }
    let links = wiki.map(|wiki| wiki.links_for(event)).unwrap_or_default();
    let link = |kind: &str| links.iter().find(|link| link.description == kind).map(|link| link.url.clone());
    body.insert("title".into(), title.into());
    if let Some(url) = link("page") {
        body.insert("title_url".into(), url.into());
    }
    body.insert("comment".into(), event.comment.clone().unwrap_or_default().into());
    body.insert("timestamp".into(), event.time.millis().div_euclid(1000).into());
    body.insert("user".into(), event.user_or_empty().into());
    body.insert("bot".into(), event.bot.into());
    if kind == "log" {
        let (log_type, log_action, comment) = crate::mediawiki::log_parts(event);
        body.insert("log_type".into(), log_type.into());
        body.insert("log_action".into(), log_action.into());
        body.insert("log_action_comment".into(), comment.into());
    } else {
        body.insert("minor".into(), event.minor.into());
        if let Some(patrolled) = extra("patrolled") {
            body.insert("patrolled".into(), (patrolled == "true").into());
        }
        let mut length = Map::new();
        for (name, key) in [("old", "length_old"), ("new", "length_new")] {
            if let Some(n) = integer(key) {
                length.insert(name.into(), n.into());
            }
        }
        if !length.is_empty() {
            body.insert("length".into(), Value::Object(length));
        }
        let mut revision = Map::new();
        for (name, value) in [("old", &event.old_revision), ("new", &event.revision)] {
            // MediaWiki's revisions are numbers; another wiki's may be any text.
            if let Some(value) = value {
                let number = value.parse::<i64>().map(Value::from).unwrap_or_else(|_| value.clone().into());
                revision.insert(name.into(), number);
            }
        }
        if !revision.is_empty() {
            body.insert("revision".into(), Value::Object(revision));
        }
        if let Some(url) = crate::wiki::primary_url(event, wiki) {
            body.insert("notify_url".into(), url.into());
        }
    }
    let base = extra("server_url").map(str::to_owned).or_else(|| wiki.and_then(|wiki| wiki.base_url.clone()));
    if let Some((server_url, server_name, path)) = base.as_deref().and_then(server_of) {
        body.insert("server_url".into(), server_url.into());
        body.insert("server_name".into(), server_name.into());
        let script_path = extra("server_script_path").map_or(path, str::to_owned);
        body.insert("server_script_path".into(), script_path.into());
    }
    body.insert("wiki".into(), event.wiki.clone().into());
    body
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::Action;

    fn ms(text: &str) -> i64 {
        Timestamp::parse(text).unwrap().millis()
    }

    #[test]
    fn since_takes_milliseconds_and_iso_8601() {
        let at = |text: &str| parse_since(text).map(Timestamp::millis);
        assert_eq!(at("1700000000000"), Ok(1_700_000_000_000));
        assert_eq!(at("2026-11-22T21:00:00Z"), Ok(ms("2026-11-22T21:00:00Z")));
        assert_eq!(at("2026-11-22T21:00:00.5+02:00"), Ok(ms("2026-11-22T19:00:00.500Z")));
        assert_eq!(at("2026-11-22"), Ok(ms("2026-11-22T00:00:00Z")));
        assert_eq!(at("2026-11-22T21:00"), Ok(ms("2026-11-22T21:00:00Z")));
        assert_eq!(at("20261122T210000Z"), Ok(ms("2026-11-22T21:00:00Z")));
        assert_eq!(at("2026-11-22 21:00:00-0130"), Ok(ms("2026-11-22T22:30:00Z")));
        for bad in ["", "yesterday", "2026-13-01", "2026-11-22T25:00", "2026-11-22T21:00:00Q", "1.5", "-5"] {
            assert!(parse_since(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn last_event_ids_in_every_form() {
        assert_eq!(parse_last_event_id("42"), Ok(Resume::After(42)));
        let ours = format!(r#"[{{"topic":"{TOPIC}","partition":0,"offset":43,"timestamp":5}}]"#);
        assert_eq!(parse_last_event_id(&ours), Ok(Resume::After(42)));
        let wikimedia = r#"[{"topic":"eqiad.mediawiki.recentchange","partition":0,"timestamp":1700000000001},{"topic":"codfw.mediawiki.recentchange","partition":0,"offset":-1}]"#;
        assert_eq!(
            parse_last_event_id(wikimedia),
            Ok(Resume::At(Timestamp::from_millis(1_700_000_000_001).unwrap()))
        );
        let latest = format!(r#"[{{"topic":"{TOPIC}","partition":0,"offset":-1}}]"#);
        assert_eq!(parse_last_event_id(&latest), Ok(Resume::Latest));
        for bad in [
            "",
            "[]",
            "{}",
            "-1",
            "[1]",
            r#"[{"topic":"x","partition":0,"offset":5}]"#,
            r#"[{"partition":0,"offset":5}]"#,
        ] {
            assert!(parse_last_event_id(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn events_from_other_wikis_take_the_recentchange_shape() {
        let mut event = Event::new(
            "MoinMaster",
            Action::parse("page_changed").unwrap(),
            Timestamp::parse("2026-11-22T21:00:00Z").unwrap(),
        );
        event.id = 7;
        event.page = Some("Front Page".into());
        event.user = Some("Alice".into());
        event.revision = Some("42".into());
        event.old_revision = Some("41".into());
        let description = WikiDescription::new(
            "MoinMaster",
            "moin",
            crate::Engine::Moin,
            Some("https://m.example/wiki/"),
            &Default::default(),
        );
        let body = recentchange(&event, Some(&description), "recentchange");
        assert_eq!(body["$schema"], SCHEMA);
        assert_eq!(body["type"], "edit");
        assert_eq!(body["server_name"], "m.example");
        assert_eq!(body["server_url"], "https://m.example");
        assert_eq!(body["revision"], json!({"old": 41, "new": 42}));
        assert_eq!(body["timestamp"], 1_795_381_200);
        assert_eq!(body["meta"]["domain"], "m.example");
        assert_eq!(body["meta"]["offset"], 7);
        assert_eq!(body["meta"]["dt"], "2026-11-22T21:00:00Z");
        assert_eq!(body["meta"]["id"], event_uuid(&event));
        event.id = 9;
        assert_eq!(event_uuid(&event), body["meta"]["id"], "the id does not depend on the log's numbering");
    }

    fn iso_forms(ms: i64) -> Vec<String> {
        let instant = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).unwrap();
        let (y, mo, d) = (instant.year(), u8::from(instant.month()), instant.day());
        let (h, mi, s, milli) = (instant.hour(), instant.minute(), instant.second(), instant.millisecond());
        vec![
            format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{milli:03}Z"),
            format!("{y:04}{mo:02}{d:02}T{h:02}{mi:02}{s:02}.{milli:03}Z"),
            format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02}.{milli:03}+00:00"),
            ms.to_string(),
        ]
    }

    proptest! {
        #[test]
        fn since_reads_every_form_of_a_time(ms in 0i64..=Timestamp::MAX.millis()) {
            for form in iso_forms(ms) {
                prop_assert_eq!(parse_since(&form).map(Timestamp::millis), Ok(ms), "{}", form);
            }
        }

        #[test]
        fn an_id_resumes_right_after_its_event(id in 1u64..(i64::MAX as u64 - 1), ms in 0i64..Timestamp::MAX.millis()) {
            let mut event = Event::new("w", Action::parse("page_changed").unwrap(), Timestamp::from_millis(ms).unwrap());
            event.id = id;
            prop_assert_eq!(parse_last_event_id(&event_id(&event)), Ok(Resume::After(id)));
        }

        #[test]
        fn positions_never_panic(text in ".{0,200}") {
            let _ = parse_since(&text);
            let _ = parse_last_event_id(&text);
        }
    }
}
