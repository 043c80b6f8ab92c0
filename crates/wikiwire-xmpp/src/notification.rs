//! A notification: seed 2's struct (action, subject, url_list, text, editor, comment, old_name,
//! page_name, revision — and what MoinMoin also sends: diff, attach_name, attach_size), read from
//! an XML-RPC call or made from a hub event.

use std::collections::HashMap;

use dxr::{TryFromValue, Value};
use serde::{Deserialize, Serialize};
use wikiwire_event::text::{TextOptions, TextStyle};
use wikiwire_event::{Event, WikiDescription, text};

use crate::i18n;

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Link {
    pub url: String,
    pub description: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notification {
    pub action: String,
    pub subject: String,
    pub text: String,
    pub url_list: Vec<Link>,
    pub editor: Option<String>,
    pub comment: Option<String>,
    pub old_name: Option<String>,
    pub page_name: Option<String>,
    pub revision: Option<String>,
    pub diff: Option<String>,
    pub attach_name: Option<String>,
    pub attach_size: Option<String>,
}

/// Longest text field taken from a wiki, in bytes (a diff can be long; a stanza must not be).
const MAX_FIELD: usize = 32 * 1024;

impl Notification {
    /// Reads the XML-RPC struct. `action` and `text` are required; other missing keys are
    /// tolerated (SPEC §5).
    pub fn from_value(value: &Value) -> Result<Notification, String> {
        let members = HashMap::<String, Value>::try_from_value(value)
            .map_err(|_| "notification: must be a struct".to_owned())?;
        let text = |name: &str| -> Result<Option<String>, String> {
            match members.get(name) {
                None | Some(Value::Nil) => Ok(None),
                Some(value) => {
                    // MoinMoin sends sizes and revisions as numbers or strings.
                    let text = match value {
                        Value::String(text) => text.clone(),
                        Value::Integer(number) => number.to_string(),
                        Value::Long(number) => number.to_string(),
                        _ => return Err(format!("notification: {name} must be a string")),
                    };
                    if text.len() > MAX_FIELD {
                        return Err(format!("notification: {name} longer than {MAX_FIELD} bytes"));
                    }
                    Ok(Some(text).filter(|text| !text.is_empty()))
                }
            }
        };
        let required = |name: &str| text(name)?.ok_or_else(|| format!("notification: {name} is required"));
        let mut url_list = Vec::new();
        if let Some(list) = members.get("url_list") {
            let items = Vec::<Value>::try_from_value(list)
                .map_err(|_| "notification: url_list must be an array".to_owned())?;
            for item in items {
                let link = HashMap::<String, Value>::try_from_value(&item)
                    .map_err(|_| "notification: url_list items are structs".to_owned())?;
                let field = |name: &str| {
                    link.get(name).and_then(|value| String::try_from_value(value).ok()).unwrap_or_default()
                };
                if !field("url").is_empty() {
                    url_list.push(Link { url: field("url"), description: field("description") });
                }
            }
        }
        Ok(Notification {
            action: required("action")?,
            subject: text("subject")?.unwrap_or_default(),
            text: required("text")?,
            url_list,
            editor: text("editor")?,
            comment: text("comment")?,
            old_name: text("old_name")?,
            page_name: text("page_name")?,
            revision: text("revision")?,
            diff: text("diff")?,
            attach_name: text("attach_name")?,
            attach_size: text("attach_size")?,
        })
    }

    /// A hub event as a notification, in the recipient's language.
    pub fn from_event(event: &Event, wiki: Option<&WikiDescription>, lang: &str) -> Notification {
        let page = event.page.clone().unwrap_or_default();
        let user = event.user.clone().unwrap_or_default();
        let key = format!("subject.{}", event.action);
        let key = if event.action.is_canonical() { key.as_str() } else { "subject.other" };
        let subject = i18n::fill(
            lang,
            key,
            &[("page", &page), ("user", &user), ("wiki", &event.wiki), ("action", event.action.as_str())],
        );
        let mut links: Vec<Link> = event
            .urls
            .iter()
            .map(|link| Link { url: link.url.clone(), description: link.description.clone() })
            .collect();
        if let Some(wiki) = wiki {
            links.extend(
                wiki.links_for(event)
                    .into_iter()
                    .map(|link| Link { url: link.url, description: link.description }),
            );
        }
        // The text carries no URLs (seed 2): they go in url_list.
        let mut plain = event.clone();
        plain.urls.clear();
        let line = text::render(&plain, None, TextOptions { style: TextStyle::Plain, show_wiki: true }, 4096);
        Notification {
            action: event.action.to_string(),
            subject,
            text: line,
            url_list: links,
            editor: event.user.clone(),
            comment: event.comment.clone(),
            old_name: event.old_name.clone(),
            page_name: event.page.clone(),
            revision: event.revision.clone(),
            diff: None,
            attach_name: event.file.clone(),
            attach_size: event.size.map(|size| size.to_string()),
        }
    }

    /// Seed 2's actions; anything else is rendered as plain text.
    pub fn is_known_action(&self) -> bool {
        matches!(
            self.action.as_str(),
            "page_changed" | "page_deleted" | "page_renamed" | "file_attached" | "user_created"
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn string(text: &str) -> Value {
        Value::String(text.to_owned())
    }

    #[test]
    fn reads_moinmoins_struct_and_tolerates_missing_optional_keys() {
        let mut members: HashMap<String, Value> = HashMap::new();
        members.insert("action".into(), string("page_changed"));
        members.insert("subject".into(), string("[Wiki] Changed: Front Page"));
        members.insert("text".into(), string("Alice changed Front Page."));
        members.insert("attach_size".into(), Value::Integer(2048));
        let mut link: HashMap<String, Value> = HashMap::new();
        link.insert("url".into(), string("https://wiki/FrontPage?action=diff"));
        link.insert("description".into(), string("Changes"));
        members.insert(
            "url_list".into(),
            dxr::TryToValue::try_to_value(&vec![dxr::TryToValue::try_to_value(&link).unwrap()]).unwrap(),
        );
        let value = dxr::TryToValue::try_to_value(&members).unwrap();
        let notification = Notification::from_value(&value).unwrap();
        assert_eq!(
            notification.url_list,
            vec![Link { url: "https://wiki/FrontPage?action=diff".into(), description: "Changes".into() }]
        );
        assert_eq!(notification.attach_size.as_deref(), Some("2048"));
        assert_eq!(notification.editor, None);
        members.remove("text");
        let error = Notification::from_value(&dxr::TryToValue::try_to_value(&members).unwrap()).unwrap_err();
        assert_eq!(error, "notification: text is required");
        assert!(Notification::from_value(&string("nope")).is_err());
    }
}
