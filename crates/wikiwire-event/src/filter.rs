//! The one filter language (SPEC §2.4) used by IRC channels, SSE, XMPP subscriptions and relays.
//!
//! Text form is a query string: `wiki=Moin*,FooWiki&action=page_changed&page=Help/*&bot=false`.
//! `wiki` and `action` take comma-separated lists; `page` and `user` may repeat (their values may
//! contain commas). A `page` value starting with `re:` is a regular expression, else a glob with
//! `*` and `?`. Wiki globs ignore ASCII case (IRC channel names do); the rest is case-sensitive.
//! Within one key any value may match; all keys must match.

use std::fmt;

use regex::Regex;

use crate::fields::FieldError;
use crate::{Action, Event};

/// Longest pattern accepted, in bytes.
const MAX_PATTERN: usize = 512;
/// Most values per key.
const MAX_VALUES: usize = 64;
/// Compiled size limit for page regexes, so a hostile pattern cannot take memory.
const REGEX_SIZE_LIMIT: usize = 256 * 1024;

/// Which events an output wants.
#[derive(Clone, Debug, Default)]
pub struct Filter {
    wikis: Vec<Glob>,
    actions: Vec<Action>,
    pages: Vec<PagePattern>,
    users: Vec<Glob>,
    bot: Option<bool>,
    minor: Option<bool>,
}

#[derive(Clone, Debug)]
enum PagePattern {
    Glob(Glob),
    Regex(Regex),
}

/// A `*`/`?` glob, matched over characters.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Glob {
    pattern: String,
    ignore_ascii_case: bool,
}

impl Filter {
    /// The filter that passes everything.
    pub fn all() -> Filter {
        Filter::default()
    }

    pub fn is_all(&self) -> bool {
        self.wikis.is_empty()
            && self.actions.is_empty()
            && self.pages.is_empty()
            && self.users.is_empty()
            && self.bot.is_none()
            && self.minor.is_none()
    }

    /// Parses the query-string form.
    pub fn parse(text: &str) -> Result<Filter, FieldError> {
        let pairs: Vec<(String, String)> = text
            .split('&')
            .filter(|pair| !pair.is_empty())
            .map(|pair| {
                let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
                Ok((unescape(name)?, unescape(value)?))
            })
            .collect::<Result<_, FieldError>>()?;
        Filter::from_pairs(pairs.iter().map(|(name, value)| (name.as_str(), value.as_str())))
    }

    /// Builds a filter from decoded `(key, value)` pairs; an unknown key is an error.
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Result<Filter, FieldError> {
        let mut filter = Filter::default();
        for (name, value) in pairs {
            filter.add(name, value)?;
        }
        Ok(filter)
    }

    /// The keys this language knows, for callers that mix filter keys with their own parameters.
    pub const KEYS: &'static [&'static str] = &["wiki", "action", "page", "user", "bot", "minor"];

    /// Adds one `key=value` condition.
    pub fn add(&mut self, name: &str, value: &str) -> Result<(), FieldError> {
        match name {
            "wiki" => {
                for wiki in value.split(',').map(str::trim).filter(|wiki| !wiki.is_empty()) {
                    let glob = Glob::new(name, wiki, true)?;
                    push_bounded(name, &mut self.wikis, glob)?;
                }
            }
            "action" => {
                for action in value.split(',').map(str::trim).filter(|action| !action.is_empty()) {
                    let action = Action::parse(action).map_err(|reason| FieldError::new(name, reason))?;
                    push_bounded(name, &mut self.actions, action)?;
                }
            }
            "page" => {
                let pattern = match value.strip_prefix("re:") {
                    Some(expression) => {
                        check_length(name, expression)?;
                        let regex = regex::RegexBuilder::new(expression)
                            .size_limit(REGEX_SIZE_LIMIT)
                            .build()
                            .map_err(|error| {
                                FieldError::new(name, format!("bad regular expression: {error}"))
                            })?;
                        PagePattern::Regex(regex)
                    }
                    None => PagePattern::Glob(Glob::new(name, value, false)?),
                };
                push_bounded(name, &mut self.pages, pattern)?;
            }
            "user" => {
                let glob = Glob::new(name, value, false)?;
                push_bounded(name, &mut self.users, glob)?;
            }
            "bot" => self.bot = Some(flag(name, value)?),
            "minor" => self.minor = Some(flag(name, value)?),
            _ => {
                return Err(FieldError::new(
                    name,
                    "unknown filter key; use wiki, action, page, user, bot or minor",
                ));
            }
        }
        Ok(())
    }

    pub fn matches(&self, event: &Event) -> bool {
        (self.wikis.is_empty() || self.wikis.iter().any(|glob| glob.matches(&event.wiki)))
            && (self.actions.is_empty() || self.actions.contains(&event.action))
            && (self.pages.is_empty()
                || event
                    .page
                    .as_deref()
                    .is_some_and(|page| self.pages.iter().any(|pattern| pattern.matches(page))))
            && (self.users.is_empty()
                || event.user.as_deref().is_some_and(|user| self.users.iter().any(|glob| glob.matches(user))))
            && self.bot.is_none_or(|bot| bot == event.bot)
            && self.minor.is_none_or(|minor| minor == event.minor)
    }

    /// The wiki names when every wiki condition is a plain name (no glob), for the store to use
    /// an index; `None` when any wiki may match.
    pub fn exact_wikis(&self) -> Option<Vec<&str>> {
        if self.wikis.is_empty() || self.wikis.iter().any(Glob::is_pattern) {
            return None;
        }
        Some(self.wikis.iter().map(|glob| glob.pattern.as_str()).collect())
    }

    /// The users this filter names, when it names them all exactly (no glob): a store may look
    /// them up (users compare exactly, with case).
    pub fn exact_users(&self) -> Option<Vec<&str>> {
        if self.users.is_empty() || self.users.iter().any(Glob::is_pattern) {
            return None;
        }
        Some(self.users.iter().map(|glob| glob.pattern.as_str()).collect())
    }

    /// Whether some condition is left once a store looked up exact wikis, exact users and actions
    /// by index: then every row of the range must be read and matched, which costs CPU per row.
    pub fn needs_row_scan(&self) -> bool {
        !self.pages.is_empty()
            || self.bot.is_some()
            || self.minor.is_some()
            || self.wikis.iter().any(Glob::is_pattern)
            || self.users.iter().any(Glob::is_pattern)
    }

    /// Whether events of `wiki` can pass the wiki condition (the other conditions aside).
    pub fn allows_wiki(&self, wiki: &str) -> bool {
        self.wikis.is_empty() || self.wikis.iter().any(|glob| glob.matches(wiki))
    }

    pub fn actions(&self) -> &[Action] {
        &self.actions
    }

    /// The one wiki this filter can match, if it names exactly one and no glob.
    pub fn single_wiki(&self) -> Option<&str> {
        match self.exact_wikis()?.as_slice() {
            [wiki] => Some(wiki),
            _ => None,
        }
    }

    /// This filter narrowed to what `other` also passes.
    pub fn and(mut self, other: &Filter) -> Filter {
        self.wikis.extend(other.wikis.iter().cloned());
        self.actions.extend(other.actions.iter().cloned());
        self.pages.extend(other.pages.iter().cloned());
        self.users.extend(other.users.iter().cloned());
        self.bot = self.bot.or(other.bot);
        self.minor = self.minor.or(other.minor);
        self
    }
}

/// The query-string form, the same text `parse` reads.
impl fmt::Display for Filter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts: Vec<String> = Vec::new();
        if !self.wikis.is_empty() {
            let wikis: Vec<&str> = self.wikis.iter().map(|glob| glob.pattern.as_str()).collect();
            parts.push(format!("wiki={}", escape(&wikis.join(","))));
        }
        if !self.actions.is_empty() {
            let actions: Vec<&str> = self.actions.iter().map(Action::as_str).collect();
            parts.push(format!("action={}", actions.join(",")));
        }
        for page in &self.pages {
            let text = match page {
                PagePattern::Glob(glob) => glob.pattern.clone(),
                PagePattern::Regex(regex) => format!("re:{}", regex.as_str()),
            };
            parts.push(format!("page={}", escape(&text)));
        }
        for user in &self.users {
            parts.push(format!("user={}", escape(&user.pattern)));
        }
        if let Some(bot) = self.bot {
            parts.push(format!("bot={bot}"));
        }
        if let Some(minor) = self.minor {
            parts.push(format!("minor={minor}"));
        }
        f.write_str(&parts.join("&"))
    }
}

impl PagePattern {
    fn matches(&self, page: &str) -> bool {
        match self {
            PagePattern::Glob(glob) => glob.matches(page),
            PagePattern::Regex(regex) => regex.is_match(page),
        }
    }
}

impl Glob {
    fn new(field: &str, pattern: &str, ignore_ascii_case: bool) -> Result<Glob, FieldError> {
        check_length(field, pattern)?;
        if pattern.is_empty() {
            return Err(FieldError::new(field, "empty pattern"));
        }
        Ok(Glob { pattern: pattern.to_owned(), ignore_ascii_case })
    }

    fn is_pattern(&self) -> bool {
        self.pattern.contains(['*', '?'])
    }

    /// Iterative matching with one backtrack point: O(text × pattern) at worst, never recursive.
    fn matches(&self, text: &str) -> bool {
        let pattern: Vec<char> = self.pattern.chars().collect();
        let text: Vec<char> = text.chars().collect();
        let same = |a: char, b: char| {
            if self.ignore_ascii_case { a.eq_ignore_ascii_case(&b) } else { a == b }
        };
        let (mut p, mut t) = (0, 0);
        let mut backtrack: Option<(usize, usize)> = None;
        while t < text.len() {
            if p < pattern.len() && (pattern[p] == '?' || (pattern[p] != '*' && same(pattern[p], text[t]))) {
                p += 1;
                t += 1;
            } else if p < pattern.len() && pattern[p] == '*' {
                backtrack = Some((p, t));
                p += 1;
            } else if let Some((star, matched)) = backtrack {
                p = star + 1;
                t = matched + 1;
                backtrack = Some((star, matched + 1));
            } else {
                return false;
            }
        }
        pattern[p..].iter().all(|&c| c == '*')
    }
}

fn push_bounded<T>(field: &str, list: &mut Vec<T>, item: T) -> Result<(), FieldError> {
    if list.len() >= MAX_VALUES {
        return Err(FieldError::new(field, format!("at most {MAX_VALUES} values")));
    }
    list.push(item);
    Ok(())
}

fn check_length(field: &str, pattern: &str) -> Result<(), FieldError> {
    if pattern.len() > MAX_PATTERN {
        return Err(FieldError::new(field, format!("pattern too long (at most {MAX_PATTERN} bytes)")));
    }
    Ok(())
}

fn flag(field: &str, value: &str) -> Result<bool, FieldError> {
    match value {
        "true" | "1" | "yes" => Ok(true),
        "false" | "0" | "no" => Ok(false),
        _ => Err(FieldError::new(field, "must be true or false")),
    }
}

fn unescape(text: &str) -> Result<String, FieldError> {
    let spaced = text.replace('+', " ");
    percent_encoding::percent_decode_str(&spaced)
        .decode_utf8()
        .map(|text| text.into_owned())
        .map_err(|_| FieldError::new("filter", "not valid UTF-8 after %-decoding"))
}

fn escape(text: &str) -> String {
    const SET: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'*')
        .remove(b'?')
        .remove(b',')
        .remove(b'-')
        .remove(b'_')
        .remove(b'.')
        .remove(b'/')
        .remove(b':');
    percent_encoding::utf8_percent_encode(text, SET).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Timestamp;

    fn event(wiki: &str, action: &str, page: &str, user: &str) -> Event {
        let mut event = Event::new(wiki, Action::parse(action).unwrap(), Timestamp::MIN);
        event.page = Some(page.into());
        event.user = Some(user.into());
        event
    }

    #[test]
    fn globs_lists_and_flags() {
        let filter =
            Filter::parse("wiki=moin*,FooWiki&action=SAVE,page_created&page=Help/*&bot=false").unwrap();
        assert!(filter.matches(&event("MoinMaster", "page_changed", "Help/Editing", "A")));
        assert!(filter.matches(&event("foowiki", "page_created", "Help/X", "A")));
        assert!(!filter.matches(&event("Other", "page_changed", "Help/Editing", "A")));
        assert!(!filter.matches(&event("MoinMaster", "page_deleted", "Help/Editing", "A")));
        assert!(!filter.matches(&event("MoinMaster", "page_changed", "Front", "A")));
        let mut by_bot = event("MoinMaster", "page_changed", "Help/Editing", "A");
        by_bot.bot = true;
        assert!(!filter.matches(&by_bot));
    }

    #[test]
    fn regex_pages_and_unicode_globs() {
        let filter = Filter::parse("page=re:^(Bad|Local)Content$").unwrap();
        assert!(filter.matches(&event("W", "page_changed", "BadContent", "u")));
        assert!(!filter.matches(&event("W", "page_changed", "BadContentX", "u")));
        let hebrew = Filter::parse("page=%D7%A4%D7%AA*").unwrap();
        assert!(hebrew.matches(&event("W", "page_changed", "פתיחה", "u")));
        assert!(Filter::parse("page=?").unwrap().matches(&event("W", "page_changed", "ב", "u")));
    }

    #[test]
    fn errors_name_the_key() {
        for (text, field) in
            [("colour=red", "colour"), ("action=Nope", "action"), ("page=re:(", "page"), ("bot=maybe", "bot")]
        {
            assert_eq!(Filter::parse(text).unwrap_err().field, field);
        }
    }

    #[test]
    fn exact_wikis_only_without_globs() {
        assert_eq!(Filter::parse("wiki=A,B").unwrap().exact_wikis(), Some(vec!["A", "B"]));
        assert_eq!(Filter::parse("wiki=A*").unwrap().exact_wikis(), None);
        assert_eq!(Filter::parse("wiki=A").unwrap().single_wiki(), Some("A"));
    }

    #[test]
    fn display_parses_back_to_the_same_filter() {
        let text = "wiki=A,B*&action=page_changed&page=Help/*&page=re:^X$&user=Al+ice&bot=true&minor=false";
        let filter = Filter::parse(text).unwrap();
        let again = Filter::parse(&filter.to_string()).unwrap();
        assert_eq!(filter.to_string(), again.to_string());
        assert!(again.matches(&{
            let mut e = event("a", "page_changed", "Help/Z", "Al ice");
            e.bot = true;
            e
        }));
    }

    #[test]
    fn star_heavy_globs_stay_fast() {
        let glob = Glob::new("page", &"*a".repeat(200), false).unwrap();
        assert!(!glob.matches(&"a".repeat(150)));
    }
}
