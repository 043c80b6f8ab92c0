//! HTTP query strings: strict decoding never panics, whatever the bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wikiwire_http::params::Params;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(mut params) = Params::parse(Some(text)) {
        let _ = params.take_id("since");
        let _ = params.take_time("from");
        let _ = params.take_limit(100, 1000);
        let _ = params.into_filter();
    }
});
