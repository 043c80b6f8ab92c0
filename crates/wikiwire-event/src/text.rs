//! One readable line per event (SPEC §2.3 "Text"), for IRC human channels, XMPP rooms and relays:
//! `[[Page name]] page_changed https://wiki/Page?action=diff&rev1=41&rev2=42 * Alice * fixed typo`.
//!
//! Lines never contain CR, LF, NUL or a publisher's own formatting codes, and fit a byte budget:
//! the comment is shortened first, then the line, always at a UTF-8 boundary.

use std::fmt::Write;

use crate::Event;
use crate::wiki::{self, WikiDescription};

/// How the line looks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TextStyle {
    /// No formatting codes.
    Plain,
    /// mIRC colours in the palette of MediaWiki's IRC feed.
    Colour,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TextOptions {
    pub style: TextStyle,
    /// Prefix `wiki: `, for outputs that carry several wikis.
    pub show_wiki: bool,
}

impl TextOptions {
    pub const PLAIN: TextOptions = TextOptions { style: TextStyle::Plain, show_wiki: false };
}

const ELLIPSIS: &str = "…";

/// Renders the line within `budget` bytes.
pub fn render(event: &Event, wiki: Option<&WikiDescription>, options: TextOptions, budget: usize) -> String {
    let paint = |code: &str, text: &str| -> String {
        match options.style {
            TextStyle::Plain => text.to_owned(),
            TextStyle::Colour => format!("\x03{code}{text}\x03"),
        }
    };
    let mut head = String::new();
    if options.show_wiki {
        head.push_str(&paint("14", &format!("{}:", event.wiki)));
        head.push(' ');
    }
    if let Some(page) = &event.page {
        match options.style {
            TextStyle::Plain => write!(head, "[[{}]] ", clean(page)),
            TextStyle::Colour => write!(head, "\x0314[[\x0307{}\x0314]]\x03 ", clean(page)),
        }
        .expect("writing to a String cannot fail");
    }
    head.push_str(&paint("04", event.action.as_str()));
    for detail in details(event) {
        head.push(' ');
        head.push_str(&paint("10", &detail));
    }
    if let Some(url) = wiki::primary_url(event, wiki) {
        head.push(' ');
        head.push_str(&paint("02", &clean(&url)));
    }
    let star = paint("05", "*");
    if let Some(user) = &event.user {
        write!(head, " {star} {} {star}", paint("03", &clean(user)))
            .expect("writing to a String cannot fail");
    } else if event.comment.is_some() {
        write!(head, " {star}").expect("writing to a String cannot fail");
    }
    if head.len() > budget {
        return shorten(&head, budget, options.style);
    }
    if let Some(comment) = &event.comment {
        let comment = clean(comment);
        // Room left for " " + the painted comment.
        let overhead = 1 + paint("10", "").len();
        let room = budget - head.len();
        if comment.len() + overhead <= room {
            head.push(' ');
            head.push_str(&paint("10", &comment));
        } else if room > overhead + ELLIPSIS.len() {
            let cut = cut_at_boundary(&comment, room - overhead - ELLIPSIS.len());
            head.push(' ');
            head.push_str(&paint("10", &format!("{cut}{ELLIPSIS}")));
        }
    }
    head
}

/// What follows the action: the old name of a rename, the file and its size, the flags.
fn details(event: &Event) -> Vec<String> {
    let mut details = Vec::new();
    if let Some(old_name) = &event.old_name {
        details.push(format!("from [[{}]]", clean(old_name)));
    }
    if let Some(file) = &event.file {
        match event.size {
            Some(size) => details.push(format!("{} ({size} bytes)", clean(file))),
            None => details.push(clean(file)),
        }
    }
    let flags: Vec<&str> = [(event.minor, "minor"), (event.bot, "bot")]
        .into_iter()
        .filter_map(|(set, name)| set.then_some(name))
        .collect();
    if !flags.is_empty() {
        details.push(format!("({})", flags.join(", ")));
    }
    details
}

/// Replaces control characters (CR, LF, NUL, mIRC formatting codes, C1) with spaces.
pub fn clean(text: &str) -> String {
    text.chars().map(|c| if c.is_control() { ' ' } else { c }).collect()
}

/// The longest prefix of `text` within `max` bytes that ends on a character boundary.
pub fn cut_at_boundary(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// Shortens a whole line to `budget`, marking the cut; colours are reset so the cut cannot
/// leave the rest of a client's screen painted.
fn shorten(line: &str, budget: usize, style: TextStyle) -> String {
    let tail = match style {
        TextStyle::Plain => ELLIPSIS.to_owned(),
        TextStyle::Colour => format!("{ELLIPSIS}\x0f"),
    };
    if budget < tail.len() {
        return cut_at_boundary(line, budget).to_owned();
    }
    format!("{}{tail}", cut_at_boundary(line, budget - tail.len()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wiki::{Engine, LinkTemplates};
    use crate::{Action, Timestamp};

    fn edit() -> Event {
        let mut event = Event::new("MoinMaster", Action::parse("page_changed").unwrap(), Timestamp::MIN);
        event.page = Some("Page name".into());
        event.user = Some("Alice".into());
        event.comment = Some("fixed typo".into());
        event.revision = Some("42".into());
        event.old_revision = Some("41".into());
        event
    }

    fn wiki() -> WikiDescription {
        WikiDescription::new(
            "MoinMaster",
            "moin",
            Engine::Moin,
            Some("https://wiki/"),
            &LinkTemplates::default(),
        )
    }

    #[test]
    fn plain_line_matches_the_spec_shape() {
        let line = render(&edit(), Some(&wiki()), TextOptions::PLAIN, 400);
        assert_eq!(
            line,
            "[[Page name]] page_changed https://wiki/Page%20name?action=diff&rev1=41&rev2=42 * Alice * fixed typo"
        );
    }

    #[test]
    fn colours_wiki_prefix_and_details() {
        let mut event = edit();
        event.action = Action::parse("ATTNEW").unwrap();
        event.file = Some("plan.png".into());
        event.size = Some(2048);
        event.minor = true;
        let options = TextOptions { style: TextStyle::Colour, show_wiki: true };
        let line = render(&event, None, options, 400);
        assert_eq!(
            line,
            "\x0314MoinMaster:\x03 \x0314[[\x0307Page name\x0314]]\x03 \x0304file_attached\x03 \x0310plan.png (2048 bytes)\x03 \x0310(minor)\x03 \x0305*\x03 \x0303Alice\x03 \x0305*\x03 \x0310fixed typo\x03"
        );
    }

    #[test]
    fn newlines_and_codes_in_comments_become_spaces() {
        let mut event = edit();
        event.comment = Some("one\r\ntwo\x03four".into());
        let line = render(&event, None, TextOptions::PLAIN, 400);
        assert!(line.ends_with("* Alice * one  two four"), "{line}");
    }

    #[test]
    fn long_comments_are_cut_at_a_character_boundary() {
        let mut event = edit();
        event.comment = Some("編集".repeat(200));
        for budget in 40..120 {
            let line = render(&event, Some(&wiki()), TextOptions::PLAIN, budget);
            assert!(line.len() <= budget, "{budget}: {} bytes", line.len());
        }
        let line = render(&event, None, TextOptions::PLAIN, 100);
        assert!(
            line.starts_with("[[Page name]] page_changed * Alice * 編集") && line.ends_with('…'),
            "{line}"
        );
    }
}
