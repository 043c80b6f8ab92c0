//! Where an EventStreams client asks to start (`/v2/stream`): the `Last-Event-ID` header and the
//! `since` parameter, from anyone. Never a panic; an exact position read from an id is the one
//! the id the hub writes for it names again, and a time read from `since` reads back from its
//! RFC 3339 rendering.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wikiwire_event::eventstreams::{self, Resume};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(Resume::After(id)) = eventstreams::parse_last_event_id(text) {
        if id < i64::MAX as u64 - 1 {
            assert_eq!(eventstreams::parse_last_event_id(&eventstreams::position_id(id)), Ok(Resume::After(id)));
        }
    }
    if let Ok(time) = eventstreams::parse_since(text) {
        assert_eq!(eventstreams::parse_since(&time.to_string()), Ok(time));
    }
});
