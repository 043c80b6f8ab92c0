//! IRCv3 capabilities as a table that yields a bitset (CAP LS / REQ / LIST).

/// A set of capabilities, one bit each.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Caps(u32);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cap {
    pub name: &'static str,
    /// The value in `CAP LS 302`.
    pub value: Option<&'static str>,
    bit: u32,
}

macro_rules! caps {
    ($($constant:ident = $name:literal $(=> $value:literal)?;)*) => {
        caps!(@consts 0; $($constant = $name $(=> $value)?;)*);
        /// Every capability offered, in `CAP LS` order.
        pub const ALL: &[Cap] = &[$($constant),*];
    };
    (@consts $bit:expr; $constant:ident = $name:literal $(=> $value:literal)?; $($rest:tt)*) => {
        pub const $constant: Cap = Cap { name: $name, value: caps!(@value $($value)?), bit: 1 << $bit };
        caps!(@consts $bit + 1; $($rest)*);
    };
    (@consts $bit:expr;) => {};
    (@value $value:literal) => { Some($value) };
    (@value) => { None };
}

caps! {
    MESSAGE_TAGS = "message-tags";
    SERVER_TIME = "server-time";
    BATCH = "batch";
    ECHO_MESSAGE = "echo-message";
    ACCOUNT_TAG = "account-tag";
    LABELED_RESPONSE = "labeled-response";
    SASL = "sasl" => "PLAIN";
    CHATHISTORY = "draft/chathistory";
    STANDARD_REPLIES = "standard-replies";
    CAP_NOTIFY = "cap-notify";
    MULTI_PREFIX = "multi-prefix";
}

impl Cap {
    pub fn find(name: &str) -> Option<Cap> {
        ALL.iter().copied().find(|cap| cap.name.eq_ignore_ascii_case(name))
    }
}

impl Caps {
    pub fn from_bits(bits: u32) -> Caps {
        Caps(bits)
    }

    pub fn bits(self) -> u32 {
        self.0
    }

    pub fn has(self, cap: Cap) -> bool {
        self.0 & cap.bit != 0
    }

    pub fn with(self, cap: Cap) -> Caps {
        Caps(self.0 | cap.bit)
    }

    pub fn without(self, cap: Cap) -> Caps {
        Caps(self.0 & !cap.bit)
    }

    /// The names in this set, for `CAP LIST`.
    pub fn names(self) -> Vec<&'static str> {
        ALL.iter().filter(|cap| self.has(**cap)).map(|cap| cap.name).collect()
    }

    /// Applies a `CAP REQ` list (`-name` removes): all of it or, if any name is unknown, none.
    pub fn request(self, list: &str) -> Option<Caps> {
        let mut caps = self;
        for word in list.split(' ').filter(|word| !word.is_empty()) {
            match word.strip_prefix('-') {
                Some(name) => caps = caps.without(Cap::find(name)?),
                None => caps = caps.with(Cap::find(word)?),
            }
        }
        Some(caps)
    }
}

/// `CAP LS` words: with version 302 and later, values are included.
pub fn advertised(version: u32) -> Vec<String> {
    ALL.iter()
        .map(|cap| match (cap.value, version >= 302) {
            (Some(value), true) => format!("{}={value}", cap.name),
            _ => cap.name.to_owned(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_all_or_nothing() {
        let caps = Caps::default().request("message-tags sasl").unwrap();
        assert!(caps.has(MESSAGE_TAGS) && caps.has(SASL) && !caps.has(BATCH));
        assert_eq!(caps.request("batch nonsense"), None);
        assert!(!caps.request("-sasl").unwrap().has(SASL));
        assert_eq!(caps.names(), ["message-tags", "sasl"]);
        assert!(advertised(302).contains(&"sasl=PLAIN".to_owned()));
        assert!(advertised(301).contains(&"sasl".to_owned()));
        assert_eq!(ALL.len(), 11);
    }
}
