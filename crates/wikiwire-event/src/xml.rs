//! XML history (SPEC §2.3, seed 1's `action=changes`): valid, escaped XML. Characters XML 1.0
//! cannot carry are replaced with U+FFFD rather than emitted.

use crate::fields::TEXT_FIELDS;
use crate::{Event, Timestamp};

/// Renders a `<changes>` document; `next` is the cursor for the following page, if any.
pub fn changes(
    events: &[Event],
    from: Option<Timestamp>,
    to: Option<Timestamp>,
    next: Option<u64>,
) -> String {
    let mut out = String::with_capacity(256 + events.len() * 256);
    out.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<changes");
    if let Some(from) = from {
        attribute(&mut out, "from", &from.to_string());
    }
    if let Some(to) = to {
        attribute(&mut out, "to", &to.to_string());
    }
    if let Some(next) = next {
        attribute(&mut out, "next", &next.to_string());
    }
    out.push_str(">\n");
    for event in events {
        change(&mut out, event);
    }
    out.push_str("</changes>\n");
    out
}

fn change(out: &mut String, event: &Event) {
    out.push_str("  <change");
    attribute(out, "id", &event.id.to_string());
    attribute(out, "time", &event.time.to_string());
    attribute(out, "wiki", &event.wiki);
    attribute(out, "action", event.action.as_str());
    if event.minor {
        attribute(out, "minor", "true");
    }
    if event.bot {
        attribute(out, "bot", "true");
    }
    out.push('>');
    for field in TEXT_FIELDS {
        if let Some(value) = (field.get)(event) {
            element(out, field.name, &[], value);
        }
    }
    if let Some(key) = &event.key {
        element(out, "key", &[], key);
    }
    if let Some(size) = event.size {
        element(out, "size", &[], &size.to_string());
    }
    for link in &event.urls {
        element(out, "url", &[("description", &link.description)], &link.url);
    }
    for (name, value) in &event.extra {
        element(out, "extra", &[("name", name)], value);
    }
    out.push_str("</change>\n");
}

fn element(out: &mut String, name: &str, attributes: &[(&str, &str)], text: &str) {
    out.push('<');
    out.push_str(name);
    for (attribute_name, value) in attributes {
        attribute(out, attribute_name, value);
    }
    out.push('>');
    escape_into(out, text, false);
    out.push_str("</");
    out.push_str(name);
    out.push('>');
}

fn attribute(out: &mut String, name: &str, value: &str) {
    out.push(' ');
    out.push_str(name);
    out.push_str("=\"");
    escape_into(out, value, true);
    out.push('"');
}

/// Escapes for element text or attribute values. In attributes, tab and LF are written as
/// character references so parsers do not normalise them to spaces (XML 1.0 §3.3.3); CR is
/// always a reference so it survives end-of-line handling (§2.11). DEL, the C1 controls and
/// U+2028 are references too: XML 1.1 parsers (quick-xml among them) treat NEL and U+2028 as line
/// ends, and a reference is never normalised.
pub fn escape_into(out: &mut String, text: &str, in_attribute: bool) {
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' if in_attribute => out.push_str("&quot;"),
            '\r' => out.push_str("&#13;"),
            '\n' if in_attribute => out.push_str("&#10;"),
            '\t' if in_attribute => out.push_str("&#9;"),
            '\u{7F}'..='\u{9F}' | '\u{2028}' => out.push_str(&format!("&#{};", u32::from(c))),
            c if xml_char(c) => out.push(c),
            _ => out.push('\u{FFFD}'),
        }
    }
}

pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    escape_into(&mut out, text, true);
    out
}

/// The `Char` production of XML 1.0 §2.2.
pub fn xml_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..='\u{10FFFF}')
}

/// What a text becomes after going through XML: characters XML cannot carry turn into U+FFFD.
pub fn xml_safe(text: &str) -> String {
    text.chars().map(|c| if xml_char(c) { c } else { '\u{FFFD}' }).collect()
}
