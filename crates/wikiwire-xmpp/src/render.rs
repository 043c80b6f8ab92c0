//! Stanzas the bot sends. A notification is a `normal` message with a subject, rendered for what
//! the recipient's client supports (SPEC §5): a body that stands on its own (the text, then the
//! links appended by the bot: the wiki's text never holds URLs, seed 2), with a Data Form
//! (XEP-0004) carrying every field and link, or XEP-0066 OOB links, beside it for clients that
//! show them. Command replies are `chat` messages.

use tokio_xmpp::jid::Jid;
use tokio_xmpp::minidom::Element;
use tokio_xmpp::parsers::data_forms::{DataForm, DataFormType, Field, FieldType, Option_};
use tokio_xmpp::parsers::message::{Id, Lang, Message};
use tokio_xmpp::parsers::oob::Oob;

use crate::i18n;
use crate::notification::Notification;

/// FORM_TYPE of notification forms.
pub const NOTIFICATION_FORM: &str = "urn:wikiwire:notification";
/// FORM_TYPE of the search form.
pub const SEARCH_FORM: &str = "urn:wikiwire:search";

pub const NS_DATA_FORMS: &str = "jabber:x:data";
pub const NS_OOB: &str = "jabber:x:oob";

/// What a recipient's clients can show, from service discovery.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Features {
    pub forms: bool,
    pub oob: bool,
}

pub fn notification(
    to: Jid,
    id: &str,
    notification: &Notification,
    features: Features,
    lang: &str,
) -> Message {
    let mut message = Message::normal(Some(to));
    message.id = Some(Id(id.to_owned()));
    let subject = if notification.subject.is_empty() {
        notification.action.clone()
    } else {
        notification.subject.clone()
    };
    message.subjects.insert(Lang(String::new()), subject.clone());
    // The body stands on its own in every case: most clients (Conversations, Dino, Gajim,
    // Monal) advertise forms for ad-hoc commands yet show only a message's body. The form or the
    // OOB links come beside it for clients that show them. An action seed 2 does not name gets
    // the body alone.
    let known = notification.is_known_action();
    let mut body = notification.text.clone();
    // MoinMoin sends the diff of a change beside the text: shown after it, unless already in it.
    if let Some(diff) = &notification.diff
        && !body.contains(diff.as_str())
    {
        body.push_str("\n\n");
        body.push_str(diff);
    }
    if !notification.url_list.is_empty() {
        body.push_str("\n\n");
        body.push_str(i18n::text(lang, "links"));
        for link in &notification.url_list {
            body.push('\n');
            if !link.description.is_empty() {
                body.push_str(&link.description);
                body.push_str(": ");
            }
            body.push_str(&link.url);
        }
    }
    if known && features.forms {
        message.payloads.push(Element::from(form(notification, &subject, lang)));
    } else if known && features.oob {
        for link in &notification.url_list {
            let oob = Oob {
                url: link.url.clone(),
                desc: Some(link.description.clone()).filter(|desc| !desc.is_empty()),
            };
            message.payloads.push(Element::from(oob));
        }
    }
    message.bodies.insert(Lang(String::new()), body);
    message
}

/// Every field of the notification and every link, for clients that show forms.
fn form(notification: &Notification, subject: &str, lang: &str) -> DataForm {
    let mut fields = Vec::new();
    let values = [
        ("page_name", "field.page", &notification.page_name),
        ("editor", "field.editor", &notification.editor),
        ("comment", "field.comment", &notification.comment),
        ("revision", "field.revision", &notification.revision),
        ("old_name", "field.old_name", &notification.old_name),
        ("attach_name", "field.file", &notification.attach_name),
        ("attach_size", "field.size", &notification.attach_size),
    ];
    for (var, label, value) in values {
        if let Some(value) = value {
            let mut field = Field::new(var, FieldType::TextSingle).with_value(value);
            field.label = Some(i18n::text(lang, label).to_owned());
            fields.push(field);
        }
    }
    if let Some(diff) = &notification.diff {
        let mut field = Field::new("diff", FieldType::TextMulti);
        field.values = diff.lines().map(str::to_owned).collect();
        field.label = Some(i18n::text(lang, "field.diff").to_owned());
        fields.push(field);
    }
    for (index, link) in notification.url_list.iter().enumerate() {
        let mut field = Field::new(&format!("url{index}"), FieldType::TextSingle).with_value(&link.url);
        field.label =
            Some(if link.description.is_empty() { link.url.clone() } else { link.description.clone() });
        fields.push(field);
    }
    let mut form = DataForm::new(DataFormType::Form, NOTIFICATION_FORM, fields);
    form.title = Some(subject.to_owned());
    form.instructions = Some(notification.text.clone());
    form
}

/// A reply to a command.
pub fn chat(to: Jid, text: &str) -> Message {
    let mut message = Message::chat(Some(to));
    message.bodies.insert(Lang(String::new()), text.to_owned());
    message
}

/// The search form (`searchform`); its submission comes back as a `submit` form.
pub fn search_form(to: Jid, lang: &str) -> Message {
    let option = |value: &str, label: &str| Option_ {
        label: Some(i18n::text(lang, label).to_owned()),
        value: value.to_owned(),
    };
    let mut query = Field::new("query", FieldType::TextSingle);
    query.label = Some(i18n::text(lang, "form.query").to_owned());
    query.required = true;
    let mut kind = Field::new("type", FieldType::ListSingle).with_value("text");
    kind.label = Some(i18n::text(lang, "form.type").to_owned());
    kind.options = vec![option("text", "form.type.text"), option("title", "form.type.title")];
    let mut case = Field::new("case", FieldType::Boolean).with_value("0");
    case.label = Some(i18n::text(lang, "form.case").to_owned());
    let mut regexp = Field::new("regexp", FieldType::Boolean).with_value("0");
    regexp.label = Some(i18n::text(lang, "form.regexp").to_owned());
    let mut form = DataForm::new(DataFormType::Form, SEARCH_FORM, vec![query, kind, case, regexp]);
    form.title = Some(i18n::text(lang, "form.title").to_owned());
    form.instructions = Some(i18n::text(lang, "form.instructions").to_owned());
    let mut message = chat(to, i18n::text(lang, "form.title"));
    message.payloads.push(Element::from(form));
    message
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notification::Link;

    fn sample() -> Notification {
        Notification {
            action: "page_changed".into(),
            subject: "Changed: Front Page".into(),
            text: "Alice changed Front Page".into(),
            url_list: vec![Link { url: "https://wiki/FrontPage".into(), description: "Page".into() }],
            editor: Some("Alice".into()),
            page_name: Some("Front Page".into()),
            ..Notification::default()
        }
    }

    fn render(features: Features, notification: &Notification) -> String {
        String::from(&Element::from(super::notification(
            Jid::new("u@x.test").unwrap(),
            "ww-1",
            notification,
            features,
            "en",
        )))
    }

    #[test]
    fn forms_oob_or_plain_text() {
        let form = render(Features { forms: true, oob: true }, &sample());
        assert!(
            form.contains("jabber:x:data")
                && form.contains("https://wiki/FrontPage")
                && !form.contains("jabber:x:oob")
        );
        // Clients that advertise forms but show only the body still see the link.
        assert!(
            form.contains("<body>Alice changed Front Page\n\nLinks:\nPage: https://wiki/FrontPage</body>"),
            "{form}"
        );
        // `normal` is the default type (RFC 6121 §5.2.2), written by leaving `type` out.
        assert!(!form.contains("type=\"chat\"") && !form.contains("type=\"headline\""));
        assert!(form.contains("<subject>Changed: Front Page</subject>"), "{form}");
        let oob = render(Features { forms: false, oob: true }, &sample());
        assert!(oob.contains("jabber:x:oob") && oob.contains("<body>Alice changed Front Page\n\nLinks:"));
        let plain = render(Features::default(), &sample());
        assert!(
            plain.contains("<body>Alice changed Front Page\n\nLinks:\nPage: https://wiki/FrontPage</body>"),
            "{plain}"
        );
        let mut unknown = sample();
        unknown.action = "something_else".into();
        let text = render(Features { forms: true, oob: true }, &unknown);
        assert!(!text.contains("jabber:x:data") && text.contains("Links:"));
    }
}
