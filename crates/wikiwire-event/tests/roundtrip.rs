//! Property tests: every encoding gives back the event it was made from (SPEC §2.3), for page
//! names in Hebrew and CJK with spaces and slashes, `+` and `%20`, and the IRC byte budget.
//! XML and Atom are read back with quick-xml, a parser this project did not write.

use std::collections::BTreeMap;

use proptest::prelude::*;
use quick_xml::Reader;
use quick_xml::events::{BytesRef, Event as XmlEvent};
use wikiwire_event::atom::{self, FeedMeta};
use wikiwire_event::packed::{self, CORE_BUDGET};
use wikiwire_event::text::{self, TextOptions, TextStyle};
use wikiwire_event::xml::{self, xml_safe};
use wikiwire_event::{Action, Event, Link, Timestamp, fields};

/// Characters of names: ASCII, Hebrew, CJK, space and the characters URL encodings care about.
fn name_char() -> impl Strategy<Value = char> {
    prop_oneof![
        proptest::char::range('a', 'z'),
        proptest::char::range('A', 'Z'),
        proptest::char::range('\u{05D0}', '\u{05EA}'),
        proptest::char::range('\u{4E00}', '\u{4E80}'),
        proptest::char::range('\u{3040}', '\u{309F}'),
        Just(' '),
        Just('/'),
        Just('+'),
        Just('%'),
        Just('&'),
        Just('='),
        Just(':'),
        Just('\''),
        Just('"'),
        Just('<'),
        Just('😀'),
    ]
}

fn name(max: usize) -> impl Strategy<Value = String> {
    proptest::collection::vec(name_char(), 1..max).prop_map(|chars| chars.into_iter().collect())
}

/// Free text may hold anything, newlines and control characters included.
fn free_text(max: usize) -> impl Strategy<Value = String> {
    prop_oneof![name(max), proptest::string::string_regex(&format!("(?s).{{1,{max}}}")).unwrap()]
}

fn action() -> impl Strategy<Value = Action> {
    let canonical: Vec<&str> = Action::canonical_names().collect();
    prop_oneof![
        proptest::sample::select(canonical).prop_map(|name| Action::parse(name).unwrap()),
        "[a-z][a-z0-9_]{0,31}".prop_map(|name| Action::parse(&name).unwrap()),
    ]
}

fn extra() -> impl Strategy<Value = BTreeMap<String, String>> {
    proptest::collection::btree_map("[a-z][a-z0-9_.:-]{0,15}", free_text(30), 0..4).prop_map(|mut map| {
        map.retain(|name, _| !fields::RESERVED_NAMES.contains(&name.as_str()));
        map
    })
}

prop_compose! {
    fn link()(url in "https://[a-z]{1,10}\\.example/[a-zA-Z0-9/?=&%-]{0,30}", description in proptest::option::of(name(20))) -> Link {
        Link { url, description: description.unwrap_or_default() }
    }
}

prop_compose! {
    fn event()(
        id in 1..u64::MAX,
        time in Timestamp::MIN.millis()..=Timestamp::MAX.millis(),
        wiki in "[A-Za-z0-9][A-Za-z0-9_-]{0,47}",
        action in action(),
        page in proptest::option::of(name(60)),
        user in proptest::option::of(name(30)),
        comment in proptest::option::of(free_text(300)),
        revision in proptest::option::of("[0-9]{1,9}"),
        old_revision in proptest::option::of("[0-9]{1,9}"),
        old_name in proptest::option::of(name(40)),
        file in proptest::option::of(name(20)),
        size in proptest::option::of(any::<u64>()),
        minor in any::<bool>(),
        bot in any::<bool>(),
        urls in proptest::collection::vec(link(), 0..3),
        key in proptest::option::of("[a-zA-Z0-9-]{1,40}"),
        extra in extra(),
    ) -> Event {
        let mut event = Event::new(&wiki, action, Timestamp::from_millis(time).unwrap());
        event.id = id;
        event.page = page;
        event.user = user;
        event.comment = comment;
        event.revision = revision;
        event.old_revision = old_revision;
        event.old_name = old_name;
        event.file = file;
        event.size = size;
        event.minor = minor;
        event.bot = bot;
        event.urls = urls;
        event.key = key;
        event.extra = extra;
        for required in event.action.required() {
            let slot = match required {
                wikiwire_event::Required::Page => &mut event.page,
                wikiwire_event::Required::User => &mut event.user,
                wikiwire_event::Required::OldName => &mut event.old_name,
                wikiwire_event::Required::File => &mut event.file,
            };
            slot.get_or_insert_with(|| "Required Name/חובה".to_owned());
        }
        event
    }
}

/// The event as it reads after XML: characters XML cannot carry became U+FFFD.
fn through_xml(event: &Event) -> Event {
    let mut safe = event.clone();
    for value in [
        &mut safe.page,
        &mut safe.user,
        &mut safe.comment,
        &mut safe.revision,
        &mut safe.old_revision,
        &mut safe.old_name,
        &mut safe.file,
        &mut safe.key,
    ]
    .into_iter()
    .flatten()
    {
        *value = xml_safe(value);
    }
    for link in &mut safe.urls {
        link.description = xml_safe(&link.description);
    }
    for value in safe.extra.values_mut() {
        *value = xml_safe(value);
    }
    safe
}

/// Reads a `<changes>` document back into events with quick-xml.
fn read_changes(document: &str) -> Vec<Event> {
    let mut reader = Reader::from_str(document);
    let mut events = Vec::new();
    let mut current: Option<Event> = None;
    let mut element: Option<(String, BTreeMap<String, String>)> = None;
    let mut text = String::new();
    loop {
        match reader.read_event().expect("well-formed XML") {
            XmlEvent::Start(start) => {
                let attributes: BTreeMap<String, String> = start
                    .attributes()
                    .map(|attribute| {
                        let attribute = attribute.expect("valid attribute");
                        let name = String::from_utf8(attribute.key.as_ref().to_vec()).unwrap();
                        (name, attribute.unescape_value().expect("valid escape").into_owned())
                    })
                    .collect();
                let name = String::from_utf8(start.name().as_ref().to_vec()).unwrap();
                match name.as_str() {
                    "changes" => {}
                    "change" => {
                        let mut event = Event::new(
                            &attributes["wiki"],
                            Action::parse(&attributes["action"]).unwrap(),
                            Timestamp::parse(&attributes["time"]).unwrap(),
                        );
                        event.id = attributes["id"].parse().unwrap();
                        event.minor = attributes.get("minor").is_some_and(|v| v == "true");
                        event.bot = attributes.get("bot").is_some_and(|v| v == "true");
                        current = Some(event);
                    }
                    _ => {
                        element = Some((name, attributes));
                        text.clear();
                    }
                }
            }
            XmlEvent::Text(chunk) => text.push_str(&chunk.xml_content().expect("valid text")),
            XmlEvent::GeneralRef(reference) => {
                text.push_str(&resolve(&reference));
            }
            XmlEvent::End(end) => {
                let name = String::from_utf8(end.name().as_ref().to_vec()).unwrap();
                if name == "change" {
                    events.push(current.take().expect("change open"));
                } else if let Some((element_name, attributes)) = element.take() {
                    let event = current.as_mut().expect("field inside a change");
                    let value = std::mem::take(&mut text);
                    match element_name.as_str() {
                        "page" => event.page = Some(value),
                        "user" => event.user = Some(value),
                        "comment" => event.comment = Some(value),
                        "revision" => event.revision = Some(value),
                        "old_revision" => event.old_revision = Some(value),
                        "old_name" => event.old_name = Some(value),
                        "file" => event.file = Some(value),
                        "key" => event.key = Some(value),
                        "size" => event.size = Some(value.parse().unwrap()),
                        "url" => event
                            .urls
                            .push(Link { url: value, description: attributes["description"].clone() }),
                        "extra" => {
                            event.extra.insert(attributes["name"].clone(), value);
                        }
                        other => panic!("unexpected element {other}"),
                    }
                }
            }
            XmlEvent::Eof => break,
            _ => {}
        }
    }
    events
}

/// The text a character or entity reference stands for: a number, or one of XML's five named entities.
fn resolve(reference: &BytesRef) -> String {
    match reference.resolve_char_ref().expect("valid reference") {
        Some(c) => c.to_string(),
        None => match std::str::from_utf8(reference).unwrap() {
            "amp" => "&".into(),
            "lt" => "<".into(),
            "gt" => ">".into(),
            "quot" => "\"".into(),
            "apos" => "'".into(),
            other => panic!("unexpected entity {other}"),
        },
    }
}

/// The text of every `ww:event` element of an Atom feed.
fn read_atom_events(document: &str) -> Vec<String> {
    let mut reader = Reader::from_str(document);
    let mut inside = false;
    let mut found = Vec::new();
    let mut text = String::new();
    loop {
        match reader.read_event().expect("well-formed Atom") {
            XmlEvent::Start(start) if start.name().as_ref() == b"ww:event" => {
                inside = true;
                text.clear();
            }
            XmlEvent::Text(chunk) if inside => text.push_str(&chunk.xml_content().unwrap()),
            XmlEvent::GeneralRef(reference) if inside => {
                text.push_str(&resolve(&reference));
            }
            XmlEvent::End(end) if end.name().as_ref() == b"ww:event" => {
                inside = false;
                found.push(std::mem::take(&mut text));
            }
            XmlEvent::Eof => break,
            _ => {}
        }
    }
    found
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn json_round_trips(event in event()) {
        prop_assert_eq!(Event::from_json(&event.to_json()), Ok(event));
    }

    #[test]
    fn packed_round_trips_with_plus_or_percent_20(event in event()) {
        let line = packed::encode(&event);
        let unpacked = packed::decode(&line).unwrap();
        prop_assert!(!unpacked.more);
        prop_assert_eq!(&unpacked.event, &event);
        let with_percent_20 = line.replace('+', "%20");
        prop_assert_eq!(packed::decode(&with_percent_20).unwrap().event, event);
    }

    #[test]
    fn packed_fits_any_budget_and_keeps_what_it_sends(event in event(), budget in CORE_BUDGET..600usize) {
        let packed = packed::encode_within(&event, budget);
        prop_assert!(packed.text.len() <= budget, "{} > {}", packed.text.len(), budget);
        let unpacked = packed::decode(&packed.text).unwrap();
        prop_assert_eq!(unpacked.more, !packed.complete);
        let got = &unpacked.event;
        if packed.complete {
            prop_assert_eq!(got, &event);
        } else {
            prop_assert_eq!((got.id, got.time, &got.wiki, &got.action, got.minor, got.bot),
                            (event.id, event.time, &event.wiki, &event.action, event.minor, event.bot));
            for (kept, original) in [(&got.page, &event.page), (&got.user, &event.user), (&got.comment, &event.comment), (&got.revision, &event.revision), (&got.old_name, &event.old_name), (&got.file, &event.file), (&got.key, &event.key)] {
                prop_assert!(kept.is_none() || kept == original);
            }
            prop_assert!(got.urls.is_empty() || got.urls == event.urls);
            prop_assert!(got.extra.is_empty() || got.extra == event.extra);
        }
    }

    #[test]
    fn xml_round_trips_through_a_real_parser(events in proptest::collection::vec(event(), 0..4)) {
        let document = xml::changes(&events, Some(Timestamp::MIN), Some(Timestamp::MAX), Some(9));
        let expected: Vec<Event> = events.iter().map(through_xml).collect();
        prop_assert_eq!(read_changes(&document), expected);
    }

    #[test]
    fn atom_carries_every_event(events in proptest::collection::vec(event(), 0..4)) {
        let meta = FeedMeta { public_url: "http://hub.example", title: "All wikis", self_url: "http://hub.example/feeds/all.atom", now: Timestamp::MIN, show_wiki: true };
        let entries: Vec<(&Event, Option<&wikiwire_event::WikiDescription>)> = events.iter().map(|event| (event, None)).collect();
        let document = atom::feed(&meta, &entries);
        let carried: Vec<Event> = read_atom_events(&document).iter().map(|json| Event::from_json(json).unwrap()).collect();
        let expected: Vec<Event> = events.iter().map(|event| Event::from_json(&xml_safe(&event.to_json())).unwrap()).collect();
        prop_assert_eq!(carried, expected);
    }

    #[test]
    fn text_is_one_clean_line_within_budget(event in event(), budget in 20..600usize, colour in any::<bool>(), show_wiki in any::<bool>()) {
        let style = if colour { TextStyle::Colour } else { TextStyle::Plain };
        let line = text::render(&event, None, TextOptions { style, show_wiki }, budget);
        prop_assert!(line.len() <= budget);
        prop_assert!(!line.contains(['\r', '\n', '\0']));
        if !colour {
            prop_assert!(!line.chars().any(char::is_control));
        }
        let roomy = text::render(&event, None, TextOptions { style: TextStyle::Plain, show_wiki: false }, 100_000);
        if let Some(page) = &event.page {
            let expected = format!("[[{}]]", text::clean(page));
            prop_assert!(roomy.starts_with(&expected));
        }
    }

    #[test]
    fn packed_decoding_never_panics(line in "(?s).{0,300}") {
        let _ = packed::decode(&line);
        let _ = packed::parse_submission(&line, Timestamp::MIN);
    }

    #[test]
    fn json_submissions_never_panic(body in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = wikiwire_event::json::parse_submissions(&body, Timestamp::MIN);
    }

    /// MediaWiki datagrams, from arbitrary bytes and from near-valid JSON: never a panic, and an
    /// accepted one validates into an event that survives its own stored JSON.
    #[test]
    fn mediawiki_datagrams_never_panic_and_accepted_ones_round_trip(
        bytes in proptest::collection::vec(any::<u8>(), 0..300),
        kind in "(edit|new|log|categorize|[a-z]{0,6})",
        title in "(?s).{0,40}",
        url in "(https?://[a-z]{1,8}\\.example/|javascript:alert\\(1\\)|//x|[a-z]{0,6}:)[a-z]{0,8}",
    ) {
        let _ = wikiwire_event::mediawiki::parse_datagram(&bytes);
        let datagram = serde_json::json!({
            "type": kind, "namespace": 0, "title": title, "comment": "c", "timestamp": 1_700_000_000,
            "user": "Alice", "bot": false, "server_url": url, "server_name": "w.example",
            "server_script_path": "/w", "wiki": "wikiid", "minor": false,
            "revision": {"old": 1, "new": 2}, "length": {"old": 1, "new": 2},
            "log_type": "delete", "log_action": "delete"
        })
        .to_string();
        if let Ok(change) = wikiwire_event::mediawiki::parse_datagram(datagram.as_bytes())
            && let Ok(draft) = wikiwire_event::Draft::validate(change.event)
        {
            let event = draft.commit(1);
            // What a store keeps reads back whole, the datagram included; the canonical JSON
            // (`/api/v1`) leaves the datagram out.
            prop_assert!(event.source.is_some());
            prop_assert_eq!(Event::from_json(&event.to_stored_json()), Ok(event.clone()));
            let canonical = Event { source: None, ..event.clone() };
            prop_assert_eq!(Event::from_json(&event.to_json()), Ok(canonical));
            for link in &event.urls {
                let web = link.url.starts_with("http://") || link.url.starts_with("https://");
                prop_assert!(web || link.url.starts_with('/'), "{}", link.url);
            }
        }
    }
}
