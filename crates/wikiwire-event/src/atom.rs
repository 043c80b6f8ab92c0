//! Atom feeds (RFC 4287) of events. Each entry also carries the canonical JSON of its event in
//! the `ww:event` extension element (RFC 4287 §6.4), so a program reading the feed loses nothing.

use crate::text::{self, TextOptions, TextStyle};
use crate::wiki::WikiDescription;
use crate::xml::escape;
use crate::{Event, Timestamp};

/// The namespace of the `ww:event` extension element.
pub const NAMESPACE: &str = "urn:wikiwire:event";

/// Feed-level metadata.
pub struct FeedMeta<'a> {
    /// The hub's public URL, without a trailing slash; entry ids are
    /// `{public_url}/api/v1/events/{id}`.
    pub public_url: &'a str,
    pub title: &'a str,
    /// This feed's own URL (`rel="self"`), also its id.
    pub self_url: &'a str,
    /// When the feed has no entries, its `updated` time.
    pub now: Timestamp,
    /// Prefix titles with the wiki name (the all-wikis feed).
    pub show_wiki: bool,
}

/// Renders a feed; entries come newest first, as feed readers expect.
pub fn feed(meta: &FeedMeta<'_>, entries: &[(&Event, Option<&WikiDescription>)]) -> String {
    let updated = entries.iter().map(|(event, _)| event.time).max().unwrap_or(meta.now);
    let mut out = String::with_capacity(1024 + entries.len() * 1024);
    out.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    out.push_str(&format!("<feed xmlns=\"http://www.w3.org/2005/Atom\" xmlns:ww=\"{NAMESPACE}\">\n"));
    out.push_str(&format!("  <id>{}</id>\n", escape(meta.self_url)));
    out.push_str(&format!("  <title>{}</title>\n", escape(meta.title)));
    out.push_str(&format!("  <updated>{updated}</updated>\n"));
    out.push_str(&format!("  <link rel=\"self\" href=\"{}\"/>\n", escape(meta.self_url)));
    out.push_str(&format!("  <link rel=\"alternate\" href=\"{}/\"/>\n", escape(meta.public_url)));
    out.push_str("  <generator>wikiwire</generator>\n");
    for (event, wiki) in entries {
        entry(&mut out, meta, event, *wiki);
    }
    out.push_str("</feed>\n");
    out
}

fn entry(out: &mut String, meta: &FeedMeta<'_>, event: &Event, wiki: Option<&WikiDescription>) {
    let subject = match &event.page {
        Some(page) => format!("[[{page}]] {}", event.action),
        None => event.action.to_string(),
    };
    let mut title = if meta.show_wiki { format!("{}: {subject}", event.wiki) } else { subject };
    if let Some(user) = &event.user {
        title.push_str(&format!(" by {user}"));
    }
    out.push_str("  <entry>\n");
    out.push_str(&format!("    <id>{}</id>\n", escape(&crate::api::event(meta.public_url, event.id))));
    out.push_str(&format!("    <title type=\"text\">{}</title>\n", escape(&text::clean(&title))));
    out.push_str(&format!("    <updated>{}</updated>\n", event.time));
    let author = event.user.as_deref().unwrap_or(&event.wiki);
    out.push_str(&format!("    <author><name>{}</name></author>\n", escape(author)));
    let mut links = event.urls.clone();
    if let Some(wiki) = wiki {
        links.extend(wiki.links_for(event));
    }
    for (index, link) in links.iter().enumerate() {
        let relation = if index == 0 { "alternate" } else { "related" };
        out.push_str(&format!(
            "    <link rel=\"{relation}\" href=\"{}\" title=\"{}\"/>\n",
            escape(&link.url),
            escape(&link.description)
        ));
    }
    out.push_str(&format!("    <category term=\"{}\" label=\"action\"/>\n", escape(event.action.as_str())));
    out.push_str(&format!("    <category term=\"{}\" label=\"wiki\"/>\n", escape(&event.wiki)));
    if let Some(comment) = &event.comment {
        out.push_str(&format!("    <summary type=\"text\">{}</summary>\n", escape(comment)));
    }
    let line =
        text::render(event, wiki, TextOptions { style: TextStyle::Plain, show_wiki: meta.show_wiki }, 8192);
    out.push_str(&format!("    <content type=\"text\">{}</content>\n", escape(&line)));
    out.push_str(&format!("    <ww:event>{}</ww:event>\n", escape(&event.to_json())));
    out.push_str("  </entry>\n");
}
