//! MediaWiki plugged in unchanged (SPEC §7 `[[rcfeed]]`, §2.3 `mediawiki` style).
//!
//! * In: a datagram of MediaWiki's `$wgRCFeeds` with `JSONRCFeedFormatter`, optionally after a
//!   channel prefix and a space (`udp://host:port/#prefix`), becomes an event. Edits and page
//!   creations map to `page_changed` / `page_created`; log entries for deletions, moves, uploads
//!   and new accounts to the canonical actions; other log entries to `log_<type>`. What the IRC
//!   line needs and the model does not name (type, namespace, lengths, patrol state, log
//!   fields, the server) is kept in `extra` under `mw_` names, and the datagram's object is kept
//!   whole as the event's `source` (for `/v2/stream`). Category changes (`categorize`) and
//!   external changes are kept too; MediaWiki's IRC feed leaves category changes out, and so do
//!   our `mediawiki` channels ([`on_irc`]).
//! * Out: MediaWiki's `IRCColourfulRCFeedFormatter` line, byte for byte for events that came
//!   from a MediaWiki, so RC-feed bots (CVNBot, Huggle, ClueBot-style parsers) read ours as they
//!   read irc.wikimedia.org; events from other wikis are written in the same shape.

use serde_json::{Map, Value};

use crate::text::clean;
use crate::wiki::{self, WikiDescription};
use crate::{Action, Event, Timestamp};

/// The `extra` field keeping a datagram's channel prefix, when its `[[rcfeed]]` makes channels
/// from prefixes.
pub const CHANNEL_EXTRA: &str = "mw_channel";

/// Largest datagram read; MediaWiki cuts its UDP lines at 64 KiB.
pub const MAX_DATAGRAM: usize = 65_536;

/// A datagram that is not a usable MediaWiki change, with the reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RcFeedError {
    #[error("not JSON from JSONRCFeedFormatter: {0}")]
    NotJson(String),
    #[error("missing or wrong field {0:?}")]
    Field(&'static str),
}

/// A MediaWiki change as the datagram gave it: the names it goes by (`wiki`, `server_name`)
/// and the event, whose `wiki` is still the datagram's `wiki` id until the caller respells it
/// as the publisher's wiki.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RcChange {
    pub wiki_id: Option<String>,
    pub server_name: Option<String>,
    /// What came before the JSON (`udp://host:port/<prefix>` in `$wgRCFeeds`; Wikimedia's
    /// `#en.wikipedia\t`), trimmed: the channel irc.wikimedia.org says the change in.
    pub prefix: Option<String>,
    pub event: Event,
}

/// Reads one datagram.
pub fn parse_datagram(datagram: &[u8]) -> Result<RcChange, RcFeedError> {
    if datagram.len() > MAX_DATAGRAM {
        return Err(RcFeedError::NotJson(format!("over {MAX_DATAGRAM} bytes")));
    }
    let text = std::str::from_utf8(datagram).map_err(|_| RcFeedError::NotJson("not UTF-8".into()))?;
    let text = text.trim_end_matches(['\n', '\r']);
    // `udp://host:port/prefix` puts "prefix " before the line.
    let json = match text.find('{') {
        Some(0) => text,
        Some(start) if !text[..start].trim_end().contains(char::is_whitespace) => &text[start..],
        _ => return Err(RcFeedError::NotJson("no JSON object".into())),
    };
    let value: Value = serde_json::from_str(json).map_err(|error| RcFeedError::NotJson(error.to_string()))?;
    let Value::Object(fields) = value else {
        return Err(RcFeedError::NotJson("not a JSON object".into()));
    };
    let prefix = text[..text.len() - json.len()].trim();
    let mut change = from_fields(&fields)?;
    change.prefix = (!prefix.is_empty()).then(|| prefix.to_owned());
    Ok(change)
}

fn from_fields(fields: &Map<String, Value>) -> Result<RcChange, RcFeedError> {
    let text = |name: &str| fields.get(name).and_then(Value::as_str).map(str::to_owned);
    let integer = |name: &str| fields.get(name).and_then(Value::as_i64);
    let flag = |name: &str| fields.get(name).and_then(Value::as_bool).unwrap_or(false);
    let kind = text("type").ok_or(RcFeedError::Field("type"))?;
    let title = text("title").ok_or(RcFeedError::Field("title"))?;
    let seconds = integer("timestamp").ok_or(RcFeedError::Field("timestamp"))?;
    let time = Timestamp::from_unix_seconds(seconds as f64).map_err(|_| RcFeedError::Field("timestamp"))?;
    let log_type = text("log_type").unwrap_or_default();
    let log_action = text("log_action").unwrap_or_default();
    let action = match kind.as_str() {
        "edit" => "page_changed".to_owned(),
        "new" => "page_created".to_owned(),
        "log" => match (log_type.as_str(), log_action.as_str()) {
            ("delete", "delete" | "delete_redir") => "page_deleted".into(),
            ("move", _) => "page_renamed".into(),
            ("upload", _) => "file_attached".into(),
            ("newusers", _) => "user_created".into(),
            _ => log_action_name(&log_type),
        },
        "categorize" => "categorize".into(),
        _ => "external".into(),
    };
    let action = Action::parse(&action).map_err(|_| RcFeedError::Field("log_type"))?;
    let mut event = Event::new(&text("wiki").unwrap_or_default(), action, time);
    event.user = text("user");
    event.comment = text("comment");
    event.minor = flag("minor");
    event.bot = flag("bot");
    let revision = |which: &str| {
        fields.get("revision").and_then(|revisions| revisions.get(which)).and_then(Value::as_i64)
    };
    event.revision = revision("new").map(|id| id.to_string());
    event.old_revision = revision("old").map(|id| id.to_string());
    match event.action.as_str() {
        "page_renamed" => {
            // The log entry's title is the old name; the target is in the log parameters.
            event.old_name = Some(title.clone());
            let params = fields.get("log_params");
            let target = params
                .and_then(|params| params.get("target").or_else(|| params.get("4::target")))
                .and_then(Value::as_str);
            event.page = Some(target.unwrap_or(&title).to_owned());
        }
        "file_attached" => {
            event.file = Some(title.split_once(':').map_or(title.as_str(), |(_, name)| name).to_owned());
            event.page = Some(title.clone());
        }
        "user_created" => {}
        _ => event.page = Some(title.clone()),
    }
    let mut keep = |name: &str, value: Option<String>| {
        if let Some(value) = value.filter(|value| !value.is_empty()) {
            event.extra.insert(format!("mw_{name}"), value);
        }
    };
    keep("type", Some(kind));
    keep("title", Some(title));
    keep("id", integer("id").map(|id| id.to_string()));
    keep("namespace", integer("namespace").map(|id| id.to_string()));
    let length =
        |which: &str| fields.get("length").and_then(|lengths| lengths.get(which)).and_then(Value::as_i64);
    keep("length_old", length("old").map(|n| n.to_string()));
    keep("length_new", length("new").map(|n| n.to_string()));
    keep("patrolled", fields.get("patrolled").and_then(Value::as_bool).map(|yes| yes.to_string()));
    keep("log_type", Some(log_type));
    keep("log_action", Some(log_action));
    keep("log_action_comment", text("log_action_comment"));
    keep("server_url", text("server_url"));
    keep("server_script_path", text("server_script_path"));
    event.source = Some(std::sync::Arc::new(fields.clone()));
    Ok(RcChange { wiki_id: text("wiki"), server_name: text("server_name"), prefix: None, event })
}

/// `log_<type>` within the action syntax (`[a-z][a-z0-9_]{0,31}`).
fn log_action_name(log_type: &str) -> String {
    let cleaned: String = log_type
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '_' })
        .take(28)
        .collect();
    if cleaned.is_empty() { "log_other".into() } else { format!("log_{cleaned}") }
}

/// MediaWiki's `cleanupForIRC`: character references decoded, newlines become spaces, carriage
/// returns go. Other control characters (and so formatting codes) become spaces too, so a
/// title cannot paint or break the line.
fn irc_clean(text: &str) -> String {
    clean(&decode_references(text).replace('\r', ""))
}

/// `Sanitizer::decodeCharReferences` for what wikis write: numeric references and the named
/// ones of XML and Latin-1 punctuation; anything else stays as written.
fn decode_references(text: &str) -> String {
    if !text.contains('&') {
        return text.to_owned();
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find('&') {
        out.push_str(&rest[..start]);
        let after = &rest[start + 1..];
        let decoded = after.find(';').filter(|end| *end <= 10).and_then(|end| {
            let name = &after[..end];
            let character = match name {
                "quot" => Some('"'),
                "amp" => Some('&'),
                "lt" => Some('<'),
                "gt" => Some('>'),
                "apos" => Some('\''),
                "nbsp" => Some('\u{a0}'),
                _ => match name.strip_prefix('#') {
                    Some(hex) if hex.starts_with(['x', 'X']) => {
                        u32::from_str_radix(&hex[1..], 16).ok().and_then(char::from_u32)
                    }
                    Some(decimal) => decimal.parse::<u32>().ok().and_then(char::from_u32),
                    None => None,
                },
            };
            character.map(|character| (character, end))
        });
        match decoded {
            Some((character, end)) => {
                out.push(character);
                rest = &after[end + 1..];
            }
            None => {
                out.push('&');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// Whether MediaWiki's IRC feed carries this event: it leaves category membership changes out
/// (`IRCColourfulRCFeedFormatter` returns no line for them, T127360).
pub fn on_irc(event: &Event) -> bool {
    event.extra.get("mw_type").is_none_or(|kind| kind != "categorize")
}

/// The `IRCColourfulRCFeedFormatter` line of an event (without the newline).
pub fn irc_line(event: &Event, wiki: Option<&WikiDescription>) -> String {
    let extra = |name: &str| event.extra.get(&format!("mw_{name}")).map(String::as_str);
    let kind = extra("type").unwrap_or(match event.action.as_str() {
        "page_changed" | "page_reverted" => "edit",
        "page_created" => "new",
        _ => "log",
    });
    let user = irc_clean(event.user_or_empty());
    let (title, flag, url, comment) = if kind == "log" {
        let (log_type, log_action, comment) = log_parts(event);
        // Cleaned before the target is painted, so only our own codes are in the line.
        let target = irc_clean(&extra("title").map(str::to_owned).unwrap_or_else(|| log_target(event)));
        let comment =
            irc_clean(&comment).replace(&format!("[[{target}]]"), &format!("[[\x0302{target}\x0310]]"));
        (irc_clean(&format!("Special:Log/{log_type}")), irc_clean(&log_action), String::new(), comment)
    } else {
        let title = extra("title").map(str::to_owned).unwrap_or_else(|| event.page_or_empty().to_owned());
        let patrol = extra("patrolled");
        let mut flag = String::new();
        if patrol == Some("false") {
            flag.push('!');
        }
        if kind == "new" {
            flag.push('N');
        }
        if event.minor {
            flag.push('M');
        }
        if event.bot {
            flag.push('B');
        }
        // The URL MediaWiki computed for this line (`RecentChange::getNotifyUrl`), as it gave it.
        let notify_url = event.source.as_ref().and_then(|source| source.get("notify_url")?.as_str());
        let url = match (notify_url, extra("server_url")) {
            (Some(url), _) => url.to_owned(),
            (None, Some(server)) => {
                let script_path = extra("server_script_path").unwrap_or("/").trim_end_matches('/');
                let mut url = format!("{server}{script_path}/index.php");
                let this = event.revision.as_deref().unwrap_or("0");
                if kind == "new" {
                    url.push_str(&format!("?oldid={this}"));
                } else {
                    url.push_str(&format!(
                        "?diff={this}&oldid={}",
                        event.old_revision.as_deref().unwrap_or("0")
                    ));
                }
                if let (Some(_), Some(id)) = (patrol, extra("id")) {
                    url.push_str(&format!("&rcid={id}"));
                }
                url
            }
            (None, None) => wiki::primary_url(event, wiki).unwrap_or_default(),
        };
        (irc_clean(&title), flag, irc_clean(&url), irc_clean(event.comment.as_deref().unwrap_or("")))
    };
    // A creation has no old length in the datagram; MediaWiki's own line counts from 0.
    let old_length = extra("length_old").and_then(|n| n.parse::<i64>().ok()).or((kind == "new").then_some(0));
    let size = match (old_length, extra("length_new").and_then(|n| n.parse::<i64>().ok())) {
        (Some(old), Some(new)) => {
            let difference = new - old;
            if difference < -500 {
                format!("(\x02{difference}\x02)")
            } else if difference >= 0 {
                format!("(+{difference})")
            } else {
                format!("({difference})")
            }
        }
        _ => String::new(),
    };
    format!(
        "\x0314[[\x0307{title}\x0314]]\x034 {flag}\x0310 \x0302{url}\x03 \x035*\x03 \x0303{user}\x03 \x035*\x03 {size} \x0310{comment}\x03"
    )
}

/// Log type, log action and the action comment of a log line; for events from other wikis, the
/// English text MediaWiki would write.
pub(crate) fn log_parts(event: &Event) -> (String, String, String) {
    let extra = |name: &str| event.extra.get(&format!("mw_{name}")).cloned();
    if let (Some(log_type), Some(comment)) = (extra("log_type"), extra("log_action_comment")) {
        return (log_type, extra("log_action").unwrap_or_default(), comment);
    }
    let target = log_target(event);
    let reason = event.comment.as_deref().map(|reason| format!(": {reason}")).unwrap_or_default();
    let (log_type, log_action, text) = match event.action.as_str() {
        "page_deleted" => ("delete", "delete", format!("deleted \"[[{target}]]\"{reason}")),
        "page_renamed" => {
            ("move", "move", format!("moved [[{target}]] to [[{}]]{reason}", event.page_or_empty()))
        }
        "file_attached" => ("upload", "upload", format!("uploaded \"[[{target}]]\"{reason}")),
        "file_removed" => ("delete", "delete", format!("deleted \"[[{target}]]\"{reason}")),
        "user_created" => ("newusers", "create", "New user account".to_owned()),
        other => (other, other, event.comment.clone().unwrap_or_default()),
    };
    (log_type.to_owned(), log_action.to_owned(), text)
}

/// The page a log line is about.
pub(crate) fn log_target(event: &Event) -> String {
    match event.action.as_str() {
        "page_renamed" => event.old_name.clone().unwrap_or_default(),
        "file_attached" | "file_removed" => format!("File:{}", event.file.as_deref().unwrap_or("")),
        "user_created" => format!("User:{}", event.user_or_empty()),
        _ => event.page_or_empty().to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Datagrams in the shape MediaWiki's `MachineReadableRCFeedFormatter` writes (1.39), and
    /// the lines its `IRCColourfulRCFeedFormatter` writes for the same changes (worked out from
    /// that formatter's source: title, flags, URL, size difference, user, comment).
    const EDIT: &str = r#"{"$schema":"/mediawiki/recentchange/1.0.0","meta":{"uri":"https://wiki.example/wiki/Main_Page","domain":"wiki.example"},"id":1234,"type":"edit","namespace":0,"title":"Main Page","title_url":"https://wiki.example/wiki/Main_Page","comment":"fix typo","timestamp":1764000000,"user":"Alice","bot":false,"notify_url":"https://wiki.example/w/index.php?diff=42&oldid=41","minor":true,"length":{"old":120,"new":118},"revision":{"old":41,"new":42},"server_url":"https://wiki.example","server_name":"wiki.example","server_script_path":"/w","wiki":"examplewiki","parsedcomment":"fix typo"}"#;
    const EDIT_LINE: &str = "\x0314[[\x0307Main Page\x0314]]\x034 M\x0310 \x0302https://wiki.example/w/index.php?diff=42&oldid=41\x03 \x035*\x03 \x0303Alice\x03 \x035*\x03 (-2) \x0310fix typo\x03";

    const NEW_PATROLLED: &str = r#"{"id":77,"type":"new","namespace":1,"title":"Talk:Hello","comment":"new section","timestamp":1764000100,"user":"192.0.2.4","bot":false,"minor":false,"patrolled":false,"length":{"old":null,"new":900},"revision":{"old":null,"new":50},"server_url":"https://wiki.example","server_name":"wiki.example","server_script_path":"/w","wiki":"examplewiki"}"#;
    const NEW_PATROLLED_LINE: &str = "\x0314[[\x0307Talk:Hello\x0314]]\x034 !N\x0310 \x0302https://wiki.example/w/index.php?oldid=50&rcid=77\x03 \x035*\x03 \x0303192.0.2.4\x03 \x035*\x03 (+900) \x0310new section\x03";

    const DELETE: &str = r#"{"id":90,"type":"log","namespace":0,"title":"Spam Page","comment":"spam","timestamp":1764000200,"user":"Admin","bot":false,"log_id":12,"log_type":"delete","log_action":"delete","log_params":[],"log_action_comment":"deleted &quot;[[Spam Page]]&quot;: spam","server_url":"https://wiki.example","server_name":"wiki.example","server_script_path":"/w","wiki":"examplewiki"}"#;

    const BIG_REMOVAL: &str = r#"{"id":91,"type":"edit","namespace":0,"title":"Big","comment":"","timestamp":1764000300,"user":"Vandal","bot":true,"minor":false,"length":{"old":5000,"new":10},"revision":{"old":7,"new":8},"server_url":"http://localhost","server_name":"localhost","server_script_path":"/","wiki":"my_wiki"}"#;
    const BIG_REMOVAL_LINE: &str = "\x0314[[\x0307Big\x0314]]\x034 B\x0310 \x0302http://localhost/index.php?diff=8&oldid=7\x03 \x035*\x03 \x0303Vandal\x03 \x035*\x03 (\x02-4990\x02) \x0310\x03";

    #[test]
    fn edits_and_new_pages_read_and_render_as_mediawiki_does() {
        for (datagram, line) in
            [(EDIT, EDIT_LINE), (NEW_PATROLLED, NEW_PATROLLED_LINE), (BIG_REMOVAL, BIG_REMOVAL_LINE)]
        {
            let change = parse_datagram(datagram.as_bytes()).unwrap();
            assert_eq!(irc_line(&change.event, None), line);
        }
        let edit = parse_datagram(EDIT.as_bytes()).unwrap();
        assert_eq!(edit.wiki_id.as_deref(), Some("examplewiki"));
        assert_eq!(edit.server_name.as_deref(), Some("wiki.example"));
        assert_eq!(edit.event.action.as_str(), "page_changed");
        assert_eq!(edit.event.page.as_deref(), Some("Main Page"));
        assert_eq!(
            (edit.event.revision.as_deref(), edit.event.old_revision.as_deref()),
            (Some("42"), Some("41"))
        );
        assert!(edit.event.minor && !edit.event.bot);
        assert_eq!(edit.event.time, Timestamp::from_unix_seconds(1764000000.0).unwrap());
    }

    #[test]
    fn log_entries_and_prefixes() {
        let prefixed = format!("#examplewiki {DELETE}\n");
        let change = parse_datagram(prefixed.as_bytes()).unwrap();
        assert_eq!(change.event.action.as_str(), "page_deleted");
        assert_eq!(change.prefix.as_deref(), Some("#examplewiki"));
        // Wikimedia's `$wgRCFeeds` URI ends its prefix with a tab; MediaWiki adds a space.
        let wikimedia = format!("#en.wikipedia\t {EDIT}");
        assert_eq!(parse_datagram(wikimedia.as_bytes()).unwrap().prefix.as_deref(), Some("#en.wikipedia"));
        assert_eq!(parse_datagram(EDIT.as_bytes()).unwrap().prefix, None);
        // MediaWiki's line carries the log action comment as given, the target painted.
        assert_eq!(
            irc_line(&change.event, None),
            "\x0314[[\x0307Special:Log/delete\x0314]]\x034 delete\x0310 \x0302\x03 \x035*\x03 \x0303Admin\x03 \x035*\x03  \x0310deleted \"[[\x0302Spam Page\x0310]]\": spam\x03"
        );
        let mv = r#"{"type":"log","title":"Old","timestamp":1764000000,"user":"U","log_type":"move","log_action":"move","log_params":{"target":"New","noredir":"0"},"log_action_comment":"moved [[Old]] to [[New]]","wiki":"w"}"#;
        let moved = parse_datagram(mv.as_bytes()).unwrap().event;
        assert_eq!(
            (moved.action.as_str(), moved.page.as_deref(), moved.old_name.as_deref()),
            ("page_renamed", Some("New"), Some("Old"))
        );
        let block = r#"{"type":"log","title":"User:Spammer","timestamp":1764000000,"user":"Admin","log_type":"block","log_action":"block","wiki":"w"}"#;
        assert_eq!(parse_datagram(block.as_bytes()).unwrap().event.action.as_str(), "log_block");
        let categorize = r#"{"type":"categorize","title":"Category:X","timestamp":1764000000,"wiki":"w"}"#;
        let categorized = parse_datagram(categorize.as_bytes()).unwrap().event;
        assert_eq!(categorized.action.as_str(), "categorize");
        assert!(!on_irc(&categorized) && on_irc(&moved));
    }

    #[test]
    fn broken_datagrams_are_refused_with_a_reason() {
        assert!(matches!(parse_datagram(b"not json"), Err(RcFeedError::NotJson(_))));
        assert!(matches!(parse_datagram(b"two words {\"type\":\"edit\"}"), Err(RcFeedError::NotJson(_))));
        assert!(matches!(parse_datagram(b"\xff\xfe{}"), Err(RcFeedError::NotJson(_))));
        assert_eq!(parse_datagram(b"{\"type\":\"edit\"}"), Err(RcFeedError::Field("title")));
        assert_eq!(parse_datagram(b"[1,2]"), Err(RcFeedError::NotJson("no JSON object".into())));
    }

    #[test]
    fn character_references_are_decoded_as_mediawiki_does() {
        assert_eq!(decode_references("a &amp; b &lt;&#65;&#x42;&gt; &unknown; &"), "a & b <AB> &unknown; &");
    }

    #[test]
    fn a_title_cannot_paint_or_break_the_line() {
        let evil = EDIT.replace("Main Page", "Main\\u0003Page\\nPRIVMSG #x :hi");
        let line = irc_line(&parse_datagram(evil.as_bytes()).unwrap().event, None);
        assert!(
            !line.contains('\n') && line.contains("[[\x0307Main Page PRIVMSG #x :hi\x0314]]"),
            "{line:?}"
        );
    }

    #[test]
    fn events_from_other_wikis_take_the_same_shape() {
        let mut event = Event::new("MoinMaster", Action::parse("page_created").unwrap(), Timestamp::MIN);
        event.page = Some("Front Page".into());
        event.user = Some("Alice".into());
        event.comment = Some("hello".into());
        let description = WikiDescription::new(
            "MoinMaster",
            "moin",
            crate::Engine::Moin,
            Some("https://m.example/"),
            &Default::default(),
        );
        assert_eq!(
            irc_line(&event, Some(&description)),
            "\x0314[[\x0307Front Page\x0314]]\x034 N\x0310 \x0302https://m.example/Front%20Page\x03 \x035*\x03 \x0303Alice\x03 \x035*\x03  \x0310hello\x03"
        );
        event.action = Action::parse("page_deleted").unwrap();
        assert_eq!(
            irc_line(&event, Some(&description)),
            "\x0314[[\x0307Special:Log/delete\x0314]]\x034 delete\x0310 \x0302\x03 \x035*\x03 \x0303Alice\x03 \x035*\x03  \x0310deleted \"[[\x0302Front Page\x0310]]\": hello\x03"
        );
    }
}
