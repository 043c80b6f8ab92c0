//! Bytes from an IRC client: framing never panics or yields a line past the limits, and every
//! line is parsed (by irc-proto) and normalised without panicking.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use wikiwire_irc_wire::framing::{Frame, MAX_MESSAGE, MAX_TAGS, next_frame};
use wikiwire_irc_wire::wire::Request;

fuzz_target!(|data: &[u8]| {
    let mut buffer = BytesMut::from(data);
    let mut discarding = false;
    while let Some(frame) = next_frame(&mut buffer, &mut discarding) {
        if let Frame::Line(line) = frame {
            assert!(line.len() <= MAX_TAGS + MAX_MESSAGE);
            if let Some(request) = Request::parse(&line) {
                assert!(!request.verb.is_empty());
            }
        }
    }
});
