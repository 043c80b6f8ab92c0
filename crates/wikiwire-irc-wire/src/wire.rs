//! The wire format. Incoming lines are parsed by irc-proto (tags with their escapes, source,
//! command) and normalised to a [`Request`] — an upper-case verb and plain parameters — through
//! irc-proto's own serialisation, so every handler reads its parameters the same way. Outgoing
//! lines are [`Line`]s, written with escaped tags, a trailing parameter where one is needed, and
//! no CR, LF or NUL inside a parameter whatever the caller passed.

use std::fmt::Write;

use bytes::{BufMut, Bytes, BytesMut};

/// An incoming command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    pub tags: Vec<(String, Option<String>)>,
    /// `nick!user@host` or a server name, as the sender gave it.
    pub source: Option<String>,
    /// Upper case, e.g. `PRIVMSG`.
    pub verb: String,
    pub params: Vec<String>,
}

impl Request {
    /// Parses one line (without its line ending). `None` for a line irc-proto cannot read.
    pub fn parse(line: &str) -> Option<Request> {
        let message: irc_proto::Message = line.parse().ok()?;
        let tags = message
            .tags
            .unwrap_or_default()
            .into_iter()
            .map(|irc_proto::message::Tag(name, value)| (name, value))
            .collect();
        let source = message.prefix.as_ref().map(ToString::to_string);
        let wire = String::from(&message.command);
        let (head, trailing) = match wire.find(" :") {
            Some(index) => (&wire[..index], Some(&wire[index + 2..])),
            None => (wire.as_str(), None),
        };
        let mut words = head.split(' ').filter(|word| !word.is_empty());
        let typed = words.next()?;
        if typed.starts_with(':') {
            return None;
        }
        // The verb as sent: irc-proto 1.1 reads `ISON` as `USERHOST` (its Command enum maps both
        // to one variant), so its serialisation cannot be trusted for the verb.
        let verb = raw_verb(line).unwrap_or(typed).to_ascii_uppercase();
        let mut params: Vec<String> = words.map(str::to_owned).collect();
        params.extend(trailing.map(str::to_owned));
        Some(Request { tags, source, verb, params })
    }

    pub fn tag(&self, name: &str) -> Option<&str> {
        self.tags.iter().find(|(tag, _)| tag == name).and_then(|(_, value)| value.as_deref())
    }

    /// The changes a channel `MODE` line makes, in order: (adding, mode letter, its argument).
    /// Membership prefixes (`qaohv`) and list modes (`beI`) and `k` take an argument both ways,
    /// `l` only when set (the usual CHANMODES of networks with services).
    pub fn mode_changes(&self) -> Vec<(bool, char, Option<&str>)> {
        let mut changes = Vec::new();
        let mut adding = true;
        let mut arguments = self.params.iter().skip(2).map(String::as_str);
        for mode in self.param(1).unwrap_or("").chars() {
            match mode {
                '+' => adding = true,
                '-' => adding = false,
                'q' | 'a' | 'o' | 'h' | 'v' | 'b' | 'e' | 'I' | 'k' => {
                    changes.push((adding, mode, arguments.next()))
                }
                'l' if adding => changes.push((adding, mode, arguments.next())),
                _ => changes.push((adding, mode, None)),
            }
        }
        changes
    }

    pub fn param(&self, index: usize) -> Option<&str> {
        self.params.get(index).map(String::as_str)
    }

    /// The nick of the source (`nick` of `nick!user@host`).
    pub fn source_nick(&self) -> Option<&str> {
        self.source.as_deref().map(|source| source.split('!').next().unwrap_or(source))
    }
}

/// The verb of a line as written: the first word after the tags (`@...`) and the source (`:...`).
fn raw_verb(line: &str) -> Option<&str> {
    let mut words = line.split(' ').filter(|word| !word.is_empty()).peekable();
    if words.peek()?.starts_with('@') {
        words.next();
    }
    if words.peek()?.starts_with(':') {
        words.next();
    }
    words.next()
}

/// An outgoing line.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Line {
    pub tags: Vec<(String, Option<String>)>,
    pub source: Option<String>,
    pub verb: String,
    pub params: Vec<String>,
    /// Write the last parameter with `:` even when it would not need one: text parameters
    /// (messages, numeric texts) always look the same to clients that split on ` :`.
    pub text_last: bool,
}

impl Line {
    pub fn new(verb: impl Into<String>) -> Line {
        Line { verb: verb.into(), ..Line::default() }
    }

    pub fn source(mut self, source: impl Into<String>) -> Line {
        self.source = Some(source.into());
        self
    }

    pub fn param(mut self, param: impl Into<String>) -> Line {
        self.params.push(param.into());
        self
    }

    /// Adds the last parameter as text: always written after `:`.
    pub fn text(mut self, text: impl Into<String>) -> Line {
        self.params.push(text.into());
        self.text_last = true;
        self
    }

    pub fn tag(mut self, name: impl Into<String>, value: Option<String>) -> Line {
        self.tags.push((name.into(), value));
        self
    }

    pub fn has_tag(&self, name: &str) -> bool {
        self.tags.iter().any(|(tag, _)| tag == name)
    }

    /// The line with CR LF, ready for a send queue.
    pub fn to_bytes(&self) -> Bytes {
        let mut buffer = BytesMut::with_capacity(128);
        self.write_into(&mut buffer);
        buffer.freeze()
    }

    pub fn write_into(&self, buffer: &mut BytesMut) {
        if !self.tags.is_empty() {
            buffer.put_u8(b'@');
            for (index, (name, value)) in self.tags.iter().enumerate() {
                if index > 0 {
                    buffer.put_u8(b';');
                }
                buffer.put_slice(name.as_bytes());
                if let Some(value) = value.as_deref().filter(|value| !value.is_empty()) {
                    buffer.put_u8(b'=');
                    escape_tag_value(buffer, value);
                }
            }
            buffer.put_u8(b' ');
        }
        if let Some(source) = &self.source {
            buffer.put_u8(b':');
            buffer.put_slice(source.as_bytes());
            buffer.put_u8(b' ');
        }
        buffer.put_slice(self.verb.as_bytes());
        let last = self.params.len().saturating_sub(1);
        for (index, param) in self.params.iter().enumerate() {
            buffer.put_u8(b' ');
            let trailing = index == last
                && (self.text_last || param.is_empty() || param.contains(' ') || param.starts_with(':'));
            if trailing {
                buffer.put_u8(b':');
            }
            for &byte in param.as_bytes() {
                // A parameter can never end the line early or inject another command.
                buffer.put_u8(if matches!(byte, b'\r' | b'\n' | b'\0') { b' ' } else { byte });
            }
        }
        buffer.put_slice(b"\r\n");
    }

    /// Bytes of the line after its tags, including CR LF: what the 512-byte limit counts.
    pub fn message_length(&self) -> usize {
        let mut untagged = self.clone();
        untagged.tags.clear();
        untagged.to_bytes().len()
    }
}

/// Tag values escape `;`, space, `\`, CR and LF (IRCv3 message-tags, "Escaping values").
pub fn escape_tag_value(buffer: &mut BytesMut, value: &str) {
    for c in value.chars() {
        match c {
            ';' => buffer.put_slice(b"\\:"),
            ' ' => buffer.put_slice(b"\\s"),
            '\\' => buffer.put_slice(b"\\\\"),
            '\r' => buffer.put_slice(b"\\r"),
            '\n' => buffer.put_slice(b"\\n"),
            '\0' => {}
            c => {
                let mut utf8 = [0u8; 4];
                buffer.put_slice(c.encode_utf8(&mut utf8).as_bytes());
            }
        }
    }
}

/// The escaped length of a tag value, to check budgets before building a line.
pub fn escaped_length(value: &str) -> usize {
    value
        .chars()
        .map(|c| match c {
            ';' | ' ' | '\\' | '\r' | '\n' => 2,
            '\0' => 0,
            c => c.len_utf8(),
        })
        .sum()
}

/// `nick!user@host`.
pub fn mask(nick: &str, user: &str, host: &str) -> String {
    let mut out = String::with_capacity(nick.len() + user.len() + host.len() + 2);
    let _ = write!(out, "{nick}!{user}@{host}");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn requests_have_plain_params_whatever_irc_proto_typed() {
        let cases = [
            ("NICK alice", "NICK", vec!["alice"]),
            ("user a 0 * :Alice Liddell", "USER", vec!["a", "0", "*", "Alice Liddell"]),
            ("PRIVMSG #c ::-) smile", "PRIVMSG", vec!["#c", ":-) smile"]),
            ("PRIVMSG #c :", "PRIVMSG", vec!["#c", ""]),
            ("CAP LS 302", "CAP", vec!["LS", "302"]),
            ("CAP REQ :sasl message-tags", "CAP", vec!["REQ", "sasl message-tags"]),
            ("CHATHISTORY LATEST #w * 10", "CHATHISTORY", vec!["LATEST", "#w", "*", "10"]),
            ("JOIN #a,#b", "JOIN", vec!["#a,#b"]),
            ("PING :hello there", "PING", vec!["hello there"]),
            (":ignored!x@y QUIT :bye", "QUIT", vec!["bye"]),
            // irc-proto parses ISON as USERHOST; the verb must stay what was sent.
            ("ISON alice bob", "ISON", vec!["alice", "bob"]),
            ("@label=1 ison :alice bob", "ISON", vec!["alice bob"]),
            ("USERHOST alice", "USERHOST", vec!["alice"]),
        ];
        for (line, verb, params) in cases {
            let request = Request::parse(line).unwrap_or_else(|| panic!("{line} parses"));
            assert_eq!(
                (request.verb.as_str(), request.params.iter().map(String::as_str).collect::<Vec<_>>()),
                (verb, params),
                "{line}"
            );
        }
        let tagged = Request::parse("@label=a\\sb;+x=1 PING y").unwrap();
        assert_eq!(tagged.tag("label"), Some("a b"));
        let sourced = Request::parse(":moin!moin@publisher.example PRIVMSG #w :x").unwrap();
        assert_eq!(
            (sourced.source.as_deref(), sourced.source_nick()),
            (Some("moin!moin@publisher.example"), Some("moin"))
        );
    }

    #[test]
    fn lines_escape_tags_and_never_carry_line_breaks() {
        let line = Line::new("PRIVMSG")
            .tag("+wikiwire/event", Some("{\"a\": \"b;c\\\\\"}".into()))
            .tag("bot", None)
            .source("moin!moin@irc.test")
            .param("#w")
            .param("two words\r\nQUIT");
        assert_eq!(
            &line.to_bytes()[..],
            b"@+wikiwire/event={\"a\":\\s\"b\\:c\\\\\\\\\"};bot :moin!moin@irc.test PRIVMSG #w :two words  QUIT\r\n"
        );
        assert_eq!(Line::new("PING").param("x").to_bytes(), "PING x\r\n");
        assert_eq!(Line::new("001").param("n").param("").to_bytes(), "001 n :\r\n");
    }

    proptest! {
        #[test]
        fn escaped_tags_come_back_through_irc_proto(value in "(?s).{0,60}") {
            let line = Line::new("PING").tag("label", Some(value.clone())).param("x");
            let text = String::from_utf8(line.to_bytes().to_vec()).unwrap();
            let request = Request::parse(text.trim_end()).unwrap();
            let expected = value.replace('\0', "");
            prop_assert_eq!(request.tag("label").unwrap_or(""), expected.as_str());
            // A value of only NULs still writes `label=`: the tag was given a value.
            let overhead = if value.is_empty() { "@label PING x\r\n".len() } else { "@label= PING x\r\n".len() };
            prop_assert_eq!(escaped_length(&value) + overhead, text.len());
        }

        #[test]
        fn any_text_parses_without_panic(line in "(?s).{0,600}") {
            let _ = Request::parse(&line);
        }
    }
}
