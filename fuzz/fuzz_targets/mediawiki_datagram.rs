//! MediaWiki RCFeed datagrams (from any local process, with the default allow list): never a
//! panic; a datagram that is accepted gives an event that validates as a submission would and
//! survives its own JSON.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wikiwire_event::{Draft, Event, mediawiki};

fuzz_target!(|data: &[u8]| {
    if let Ok(change) = mediawiki::parse_datagram(data) {
        if let Ok(draft) = Draft::validate(change.event) {
            let event = draft.commit(1);
            assert_eq!(Event::from_json(&event.to_json()), Ok(event));
        }
    }
});
