//! Publisher JSON bodies: never a panic; every accepted event survives its own JSON.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wikiwire_event::{Event, Timestamp, json};

fuzz_target!(|data: &[u8]| {
    if let Ok(drafts) = json::parse_submissions(data, Timestamp::MIN) {
        for draft in drafts {
            let event = draft.commit(1);
            assert_eq!(Event::from_json(&event.to_json()), Ok(event));
        }
    }
});
