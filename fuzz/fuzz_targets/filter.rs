//! Filter texts: never a panic; an accepted filter prints to text that parses again.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wikiwire_event::Filter;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(filter) = Filter::parse(text) {
        let printed = filter.to_string();
        let again = Filter::parse(&printed).expect("a printed filter parses");
        assert_eq!(again.to_string(), printed);
    }
});
