//! One line per event in a chosen format: the renderer IRC channels (live and history), relays
//! and XMPP rooms share, so every output shows an event the same way.

use serde::Deserialize;

use crate::text::{self, TextOptions, TextStyle};
use crate::wiki::WikiDescription;
use crate::{Event, packed};

/// How a channel, relay or room shows events.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// A readable line without formatting codes.
    #[default]
    Text,
    /// A readable line with mIRC colours.
    #[serde(alias = "color")]
    Colour,
    /// The packed query string, for programs (SPEC §2.3).
    Packed,
    /// MediaWiki's IRC colour line (`IRCColourfulRCFeedFormatter`), for RC-feed bots.
    Mediawiki,
}

impl Format {
    pub fn name(self) -> &'static str {
        match self {
            Format::Text => "text",
            Format::Colour => "colour",
            Format::Packed => "packed",
            Format::Mediawiki => "mediawiki",
        }
    }
}

/// Renders `event` within `budget` bytes; `show_wiki` prefixes the wiki name on readable lines
/// (outputs that carry several wikis).
pub fn render(
    event: &Event,
    wiki: Option<&WikiDescription>,
    format: Format,
    show_wiki: bool,
    budget: usize,
) -> String {
    match format {
        Format::Text => text::render(event, wiki, TextOptions { style: TextStyle::Plain, show_wiki }, budget),
        Format::Colour => {
            text::render(event, wiki, TextOptions { style: TextStyle::Colour, show_wiki }, budget)
        }
        Format::Packed => packed::encode_within(event, budget).text,
        Format::Mediawiki => {
            let line = crate::mediawiki::irc_line(event, wiki);
            if line.len() <= budget { line } else { text::cut_at_boundary(&line, budget).to_owned() }
        }
    }
}
