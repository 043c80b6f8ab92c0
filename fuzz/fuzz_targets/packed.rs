//! Packed lines from anyone: decoding never panics, and whatever decodes re-encodes to a line
//! that decodes to the same event.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wikiwire_event::{Timestamp, packed};

fuzz_target!(|data: &[u8]| {
    let Ok(line) = std::str::from_utf8(data) else { return };
    let _ = packed::parse_submission(line, Timestamp::MIN);
    if let Ok(unpacked) = packed::decode(line) {
        let again = packed::decode(&packed::encode(&unpacked.event)).expect("our own encoding decodes");
        assert_eq!(again.event, unpacked.event);
        let shortened = packed::encode_within(&unpacked.event, packed::CORE_BUDGET);
        assert!(shortened.text.len() <= packed::CORE_BUDGET);
    }
});
