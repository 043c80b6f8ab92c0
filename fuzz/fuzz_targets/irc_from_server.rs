//! Bytes from an IRC server, as the subscriber and the relay read them: framing never yields a
//! line past the server-side limits, and everything the subscriber does with a line (parsing,
//! trust bookkeeping, sorting history batches, decoding events) never panics.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use wikiwire_client::subscriber::fuzz_server_line;
use wikiwire_irc_wire::framing::{Frame, Limits, MAX_MESSAGE, MAX_SERVER_TAGS, next_frame_within};

fuzz_target!(|data: &[u8]| {
    let mut buffer = BytesMut::from(data);
    let mut discarding = false;
    while let Some(frame) = next_frame_within(&mut buffer, &mut discarding, Limits::FROM_SERVER) {
        if let Frame::Line(line) = frame {
            assert!(line.len() <= MAX_SERVER_TAGS + MAX_MESSAGE);
            fuzz_server_line(&line);
        }
    }
});
