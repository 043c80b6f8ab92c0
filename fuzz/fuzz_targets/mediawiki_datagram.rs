//! MediaWiki RCFeed datagrams (from any local process, with the default allow list): never a
//! panic; a datagram that is accepted gives an event that validates as a submission would,
//! survives its own stored JSON (the datagram kept whole), and renders as an EventStreams
//! recentchange event whose `meta.offset` is its id.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wikiwire_event::{Draft, Event, eventstreams, mediawiki};

fuzz_target!(|data: &[u8]| {
    if let Ok(change) = mediawiki::parse_datagram(data) {
        if let Ok(draft) = Draft::validate(change.event) {
            let event = draft.commit(1);
            assert_eq!(Event::from_json(&event.to_stored_json()), Ok(event.clone()));
            let body = eventstreams::recentchange(&event, None, eventstreams::STREAM);
            assert_eq!(body["meta"]["offset"], 1);
            assert_eq!(body["$schema"], eventstreams::SCHEMA);
        }
    }
});
