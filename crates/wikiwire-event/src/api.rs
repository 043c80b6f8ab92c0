//! The HTTP API's paths, written once: the routes the hub serves and every URL that points at
//! them (channel topics, description blocks, feeds, HistServ's advice, the subscriber, `wikiwire
//! publish`, the benchmarks). `base` is a hub's root URL without its trailing slash.

/// Where every API path starts; a URL that holds it points at a hub (`wikiwire listen` finds the
/// hub in a channel's topic by it).
pub const ROOT: &str = "/api/v1/";

pub const EVENTS: &str = "/api/v1/events";
pub const EVENT: &str = "/api/v1/events/{id}";
pub const STREAM: &str = "/api/v1/stream";
pub const WIKIS: &str = "/api/v1/wikis";
pub const WIKI: &str = "/api/v1/wikis/{wiki}";
pub const CHANNELS: &str = "/api/v1/channels";
pub const CHANNEL: &str = "/api/v1/channels/{name}";

/// Publishing, and history as JSON.
pub fn events(base: &str) -> String {
    format!("{base}{EVENTS}")
}

/// History after `since`, as JSON (query parameters may follow with `&`).
pub fn events_since(base: &str, since: u64) -> String {
    format!("{base}{EVENTS}?since={since}")
}

/// One event.
pub fn event(base: &str, id: u64) -> String {
    format!("{base}{EVENTS}/{id}")
}

/// The live stream (Server-Sent Events).
pub fn stream(base: &str) -> String {
    format!("{base}{STREAM}")
}

/// Every publisher's description block.
pub fn wikis(base: &str) -> String {
    format!("{base}{WIKIS}")
}

/// A wiki's description block.
pub fn wiki(base: &str, wiki: &str) -> String {
    format!("{base}{WIKIS}/{wiki}")
}

/// A channel's description (its `#` escaped).
pub fn channel(base: &str, name: &str) -> String {
    format!("{base}{CHANNELS}/{}", name.replace('#', "%23"))
}

/// The hub's root in a URL that points into its API (`http://hub:8080/api/v1/wikis/W` →
/// `http://hub:8080`).
pub fn hub_of(url: &str) -> Option<&str> {
    url.find(ROOT).map(|end| &url[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_the_routes_filled_in() {
        let base = "http://hub.example:8080";
        assert_eq!(event(base, 7), format!("{base}{}", EVENT.replace("{id}", "7")));
        assert_eq!(wiki(base, "W"), format!("{base}{}", WIKI.replace("{wiki}", "W")));
        assert_eq!(channel(base, "#W.events"), format!("{base}{}", CHANNEL.replace("{name}", "%23W.events")));
        assert_eq!(events_since(base, 3), format!("{base}/api/v1/events?since=3"));
        assert_eq!(hub_of(&wiki(base, "W")), Some(base));
        assert_eq!(hub_of("http://elsewhere/"), None);
        for path in [EVENTS, EVENT, STREAM, WIKIS, WIKI, CHANNELS, CHANNEL] {
            assert!(path.starts_with(ROOT.trim_end_matches('/')), "{path}");
        }
    }
}
