//! `[[stream]]`: more streams for `GET /v2/stream/{streams}` beside the built-in `recentchange`
//! and `mediawiki.recentchange` (which carry every event), each a name and a filter, as an
//! EventStreams client names the streams it wants.

use serde::Deserialize;
use wikiwire_event::Filter;
use wikiwire_event::eventstreams::STREAM_NAMES;

/// Streams the configuration may add, at most.
pub const MAX_STREAMS: usize = 100;

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamConfig {
    /// What clients ask for: `/v2/stream/<name>` (letters, digits, `.`, `_`, `-`).
    pub name: String,
    /// Which events it carries (the filter language of channels and `/api/v1/stream`).
    pub filter: String,
}

impl StreamConfig {
    /// Every problem of the `[[stream]]` entries, each naming its entry.
    pub fn check_all(streams: &[StreamConfig], problems: &mut Vec<String>) {
        if streams.len() > MAX_STREAMS {
            problems.push(format!("stream: at most {MAX_STREAMS} streams, not {}", streams.len()));
        }
        let mut seen = std::collections::HashSet::new();
        for (index, stream) in streams.iter().enumerate() {
            let name = &stream.name;
            let valid = !name.is_empty()
                && name.len() <= 64
                && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
            if !valid {
                problems.push(format!(
                    "stream[{index}].name: {name:?} is not a stream name (1 to 64 letters, digits, '.', '_', '-')"
                ));
            } else if STREAM_NAMES.contains(&name.as_str()) {
                problems.push(format!(
                    "stream[{index}].name: {name:?} is built in (every event); choose another"
                ));
            } else if !seen.insert(name.as_str()) {
                problems.push(format!("stream[{index}].name: {name:?} is named twice"));
            }
            if let Err(error) = Filter::parse(&stream.filter) {
                problems.push(format!("stream[{index}].filter: {error}"));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream(name: &str, filter: &str) -> StreamConfig {
        StreamConfig { name: name.into(), filter: filter.into() }
    }

    #[test]
    fn names_are_unique_plain_and_not_built_in_and_filters_parse() {
        let mut problems = Vec::new();
        StreamConfig::check_all(
            &[
                stream("antispam", "action=antispam_updated"),
                stream("en.edits", "wiki=enwiki&action=page_changed"),
            ],
            &mut problems,
        );
        assert!(problems.is_empty(), "{problems:?}");
        let bad = [
            stream("recentchange", "wiki=a"),
            stream("a/b", "wiki=a"),
            stream("twice", "wiki=a"),
            stream("twice", "wiki=b"),
            stream("broken", "page=re:("),
        ];
        StreamConfig::check_all(&bad, &mut problems);
        let fields: Vec<&str> = problems.iter().map(|problem| problem.split(':').next().unwrap()).collect();
        assert_eq!(
            fields,
            ["stream[0].name", "stream[1].name", "stream[3].name", "stream[4].filter"],
            "{problems:?}"
        );
    }
}
