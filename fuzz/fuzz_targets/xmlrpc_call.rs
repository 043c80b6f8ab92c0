//! XML-RPC bodies from anyone (the bot's API for wikis, and answers from a wiki): parsing never
//! panics, a fault never quotes the body, and a notification struct inside a call is read
//! without a panic whatever its shape.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wikiwire_xmpp::notification::Notification;
use wikiwire_xmpp::{wiki, xmlrpc};

fuzz_target!(|data: &[u8]| {
    match xmlrpc::parse(data) {
        Ok(call) => {
            for param in &call.params {
                let _ = Notification::from_value(param);
            }
        }
        Err(fault) => {
            if data.len() > 64 {
                if let Ok(text) = std::str::from_utf8(data) {
                    assert!(!fault.string().contains(text));
                }
            }
        }
    }
    let _ = wiki::parse_answer(data, "fuzz");
});
