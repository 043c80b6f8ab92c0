//! What a user can ask the bot (SPEC §5), parsed from a message body. Command names ignore case.
//! A page name may be written plainly (`getpage Front Page`, the rest of the line) or in double
//! quotes (`revertpage "Front Page" 3`, where `\"` is a quote inside).

use crate::wiki::Request;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    Help(Option<String>),
    Ping,
    Wiki(Request),
    SearchForm,
    Subscribe {
        wiki: String,
        pages: Option<String>,
    },
    /// `wiki: None` removes every subscription.
    Unsubscribe {
        wiki: Option<String>,
        pages: Option<String>,
    },
    Subscriptions,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ParseError {
    Unknown(String),
    /// The command's name; the reply shows its usage.
    Usage(&'static str),
}

/// A command's parser: its name (for the usage reply) and the text after the name.
type Parser = fn(&'static str, &str) -> Result<Command, ParseError>;

/// Every command: its name (also the key of its usage line in the catalogue) and its parser.
const TABLE: &[(&str, Parser)] = &[
    ("help", |_, rest| Ok(Command::Help(Some(rest.to_lowercase()).filter(|topic| !topic.is_empty())))),
    ("ping", |_, _| Ok(Command::Ping)),
    ("getpage", |name, rest| Ok(Command::Wiki(Request::Page(page(name, rest)?)))),
    ("getpagehtml", |name, rest| Ok(Command::Wiki(Request::PageHtml(page(name, rest)?)))),
    ("getpagelist", |_, _| Ok(Command::Wiki(Request::AllPages))),
    ("getpageinfo", |name, rest| Ok(Command::Wiki(Request::PageInfo(page(name, rest)?)))),
    ("search", search),
    ("revertpage", revert),
    ("searchform", |_, _| Ok(Command::SearchForm)),
    ("subscribe", subscription),
    ("unsubscribe", subscription),
    ("subscriptions", |_, _| Ok(Command::Subscriptions)),
];

/// Every command's name, in the order `help` lists them.
pub const COMMANDS: [&str; TABLE.len()] = {
    let mut names = [""; TABLE.len()];
    let mut index = 0;
    while index < TABLE.len() {
        names[index] = TABLE[index].0;
        index += 1;
    }
    names
};

/// Longest argument text accepted.
const MAX_ARGUMENTS: usize = 4096;

pub fn parse(text: &str) -> Result<Command, ParseError> {
    let text = text.trim();
    let (name, rest) = match text.split_once(char::is_whitespace) {
        Some((name, rest)) => (name, rest.trim()),
        None => (text, ""),
    };
    let name = name.to_lowercase();
    let Some(&(name, parser)) = TABLE.iter().find(|(known, _)| *known == name) else {
        return Err(ParseError::Unknown(name));
    };
    if rest.len() > MAX_ARGUMENTS {
        return Err(ParseError::Usage(name));
    }
    parser(name, rest)
}

/// A page name as the whole argument.
fn page(name: &'static str, rest: &str) -> Result<String, ParseError> {
    one_argument(rest).ok_or(ParseError::Usage(name))
}

/// `search [title|text] [case] [regexp] <query>`.
fn search(name: &'static str, rest: &str) -> Result<Command, ParseError> {
    let (mut title, mut case, mut regexp) = (false, false, false);
    let mut rest = rest;
    loop {
        let (word, after) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
        match word.to_lowercase().as_str() {
            "title" => title = true,
            "text" => title = false,
            "case" => case = true,
            "regexp" => regexp = true,
            _ => break,
        }
        rest = after.trim_start();
    }
    let query = one_argument(rest).ok_or(ParseError::Usage(name))?;
    Ok(Command::Wiki(Request::Search { query, title, case, regexp }))
}

/// `revertpage <page> <revision>`.
fn revert(name: &'static str, rest: &str) -> Result<Command, ParseError> {
    let usage = || ParseError::Usage(name);
    let (page, revision) = rest.rsplit_once(char::is_whitespace).ok_or_else(usage)?;
    let revision = revision.parse::<i64>().ok().filter(|revision| *revision > 0).ok_or_else(usage)?;
    let page = one_argument(page.trim()).ok_or_else(usage)?;
    Ok(Command::Wiki(Request::Revert { page, revision }))
}

/// `subscribe <wiki> [pattern]`, `unsubscribe <wiki> [pattern]`, `unsubscribe all`.
fn subscription(name: &'static str, rest: &str) -> Result<Command, ParseError> {
    let usage = || ParseError::Usage(name);
    let (wiki, pattern) = match rest.split_once(char::is_whitespace) {
        Some((wiki, pattern)) => (wiki, Some(pattern.trim())),
        None => (rest, None),
    };
    if wiki.is_empty() {
        return Err(usage());
    }
    let pages = match pattern {
        Some(pattern) => Some(one_argument(pattern).ok_or_else(usage)?),
        None => None,
    };
    if name == "subscribe" {
        Ok(Command::Subscribe { wiki: wiki.to_owned(), pages })
    } else if wiki.eq_ignore_ascii_case("all") && pages.is_none() {
        Ok(Command::Unsubscribe { wiki: None, pages: None })
    } else {
        Ok(Command::Unsubscribe { wiki: Some(wiki.to_owned()), pages })
    }
}

/// The whole text as one argument: a quoted string (nothing may follow it), or the text as is.
fn one_argument(text: &str) -> Option<String> {
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    let Some(quoted) = text.strip_prefix('"') else {
        return Some(text.to_owned());
    };
    let mut out = String::new();
    let mut characters = quoted.chars();
    while let Some(character) = characters.next() {
        match character {
            '\\' => out.push(characters.next()?),
            '"' => {
                return (characters.as_str().trim().is_empty() && !out.is_empty()).then_some(out);
            }
            _ => out.push(character),
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn page_names_with_spaces_plain_or_quoted() {
        assert_eq!(parse("getpage Front Page"), Ok(Command::Wiki(Request::Page("Front Page".into()))));
        assert_eq!(parse("GetPage  \"Front Page\" "), Ok(Command::Wiki(Request::Page("Front Page".into()))));
        assert_eq!(
            parse(r#"getpageinfo "Say \"hi\"""#),
            Ok(Command::Wiki(Request::PageInfo("Say \"hi\"".into())))
        );
        assert_eq!(
            parse("revertpage \"Front Page\" 3"),
            Ok(Command::Wiki(Request::Revert { page: "Front Page".into(), revision: 3 }))
        );
        assert_eq!(
            parse("revertpage Front Page 12"),
            Ok(Command::Wiki(Request::Revert { page: "Front Page".into(), revision: 12 }))
        );
        assert_eq!(parse("revertpage Front Page"), Err(ParseError::Usage("revertpage")));
        assert_eq!(parse("getpage"), Err(ParseError::Usage("getpage")));
        assert_eq!(parse("getpage \"unterminated"), Err(ParseError::Usage("getpage")));
        assert_eq!(parse("getpage \"a\" b"), Err(ParseError::Usage("getpage")));
        assert_eq!(parse("frobnicate x"), Err(ParseError::Unknown("frobnicate".into())));
    }

    #[test]
    fn search_options_and_subscriptions() {
        assert_eq!(
            parse("search title case Front Page"),
            Ok(Command::Wiki(Request::Search {
                query: "Front Page".into(),
                title: true,
                case: true,
                regexp: false
            }))
        );
        assert_eq!(
            parse("search regexp \"^Help\""),
            Ok(Command::Wiki(Request::Search {
                query: "^Help".into(),
                title: false,
                case: false,
                regexp: true
            }))
        );
        assert_eq!(parse("search title"), Err(ParseError::Usage("search")));
        assert_eq!(
            parse("subscribe MoinMaster Help/*"),
            Ok(Command::Subscribe { wiki: "MoinMaster".into(), pages: Some("Help/*".into()) })
        );
        assert_eq!(
            parse("subscribe MoinMaster \"Front Page*\""),
            Ok(Command::Subscribe { wiki: "MoinMaster".into(), pages: Some("Front Page*".into()) })
        );
        assert_eq!(parse("unsubscribe all"), Ok(Command::Unsubscribe { wiki: None, pages: None }));
        assert_eq!(
            parse("unsubscribe MoinMaster"),
            Ok(Command::Unsubscribe { wiki: Some("MoinMaster".into()), pages: None })
        );
        assert_eq!(parse("unsubscribe"), Err(ParseError::Usage("unsubscribe")));
        assert_eq!(parse("help search"), Ok(Command::Help(Some("search".into()))));
    }

    proptest! {
        #[test]
        fn never_panics(text in ".{0,200}") {
            let _ = parse(&text);
        }

        #[test]
        fn a_quoted_page_comes_back(page in "[^\\\\\"]{1,40}") {
            prop_assume!(!page.trim().is_empty());
            let quoted = format!("getpage \"{page}\"");
            prop_assert_eq!(parse(&quoted), Ok(Command::Wiki(Request::Page(page.clone()))));
        }
    }
}
