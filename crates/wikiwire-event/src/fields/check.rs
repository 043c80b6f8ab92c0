//! Every rule about field contents, applied to a finished event whatever it was read from:
//! lengths in bytes, control characters, wiki and extra names, link schemes, required fields.

use super::{FieldError, RESERVED_NAMES, TEXT_FIELDS, limits};
use crate::Event;

/// Links become `href`s on the live page and Atom entry links: only web links (or links relative
/// to the wiki) may come in, never `javascript:`, `data:` and the like, nor a link that only looks
/// relative and leads to another site (`//host/`, `\\host`, `/\\host`). Applied to submissions
/// only, so events stored before this rule still read back.
pub(super) fn check_link_schemes(event: &Event) -> Result<(), FieldError> {
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

/// Empty optional strings mean "absent"; one spelling keeps the encodings round-tripping.
pub(super) fn normalise(event: &mut Event) {
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
pub(super) fn check(event: &Event, id_required: bool, fields_required: bool) -> Result<(), FieldError> {
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
