//! Events as IRC lines. One builder serves live delivery and history replay (SPEC: one renderer
//! per format). Live fan-out renders each (event, channel) once per tag set and shares the bytes
//! among every listener with those capabilities.

use bytes::Bytes;
use wikiwire_event::{Event, line};
use wikiwire_irc_wire::wire::{Line, escaped_length};

use crate::caps::{self, Caps};
use crate::channels::Channel;
use crate::server::{Server, WIKIMEDIA_SPEAKER};

/// Client-only tags may take 4094 bytes (IRCv3 message-tags, "Size limit").
const CLIENT_TAG_BUDGET: usize = 4094;
const EVENT_TAG: &str = "+wikiwire/event";

/// The tags a client gets depend on three capabilities: eight variants at most.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TagSet(u8);

impl TagSet {
    pub fn of(caps: Caps) -> TagSet {
        TagSet(
            u8::from(caps.has(caps::SERVER_TIME))
                | u8::from(caps.has(caps::MESSAGE_TAGS)) << 1
                | u8::from(caps.has(caps::ACCOUNT_TAG)) << 2,
        )
    }

    fn time(self) -> bool {
        self.0 & 1 != 0
    }
    fn message_tags(self) -> bool {
        self.0 & 2 != 0
    }
    fn account(self) -> bool {
        self.0 & 4 != 0
    }
}

/// The publisher that speaks for `event`'s wiki.
pub fn speaker<'a>(server: &'a Server, event: &Event) -> Option<&'a str> {
    server.hub.publishers().wiki(&event.wiki).map(|wiki| wiki.publisher.as_str())
}

/// The PRIVMSG that carries `event` in `channel`, with the tags of `tags`.
pub fn event_line(server: &Server, channel: &Channel, event: &Event, tags: TagSet) -> Line {
    let publisher = speaker(server, event).unwrap_or("wikiwire");
    let wikimedia = server.settings.wikimedia_speaks(channel);
    let source =
        if wikimedia { server.settings.wikimedia_mask() } else { server.settings.publisher_mask(publisher) };
    // `:source PRIVMSG #channel :payload\r\n` must fit 512 bytes.
    let overhead = 1 + source.len() + " PRIVMSG ".len() + channel.spec.name.len() + " :".len() + 2;
    let budget = 512usize.saturating_sub(overhead);
    let wiki = server.hub.publishers().wiki(&event.wiki);
    let payload = line::render(event, wiki, channel.spec.format, channel.spec.show_wiki, budget);
    let mut line = Line::new("PRIVMSG").source(source).param(channel.spec.name.clone()).text(payload);
    if tags.time() {
        line = line.tag("time", Some(event.time.to_string()));
    }
    if tags.message_tags() {
        line = line.tag("msgid", Some(event.id.to_string())).tag("bot", None);
    }
    // `rc-pmtpa` is the server's own reserved speaker: its account is its nick, as WHOIS says,
    // so clients that check the account against the speaker (wikiwire listen) trust it.
    if tags.account() {
        let account = if wikimedia { WIKIMEDIA_SPEAKER } else { publisher };
        line = line.tag("account", Some(account.to_owned()));
    }
    if tags.message_tags() {
        let json = event.to_json();
        if EVENT_TAG.len() + 1 + escaped_length(&json) <= CLIENT_TAG_BUDGET {
            line = line.tag(EVENT_TAG, Some(json));
        }
    }
    line
}

/// Lazily rendered variants of one event in one channel.
pub struct Variants<'a> {
    server: &'a Server,
    channel: &'a Channel,
    event: &'a Event,
    built: [Option<Bytes>; 8],
}

impl<'a> Variants<'a> {
    pub fn new(server: &'a Server, channel: &'a Channel, event: &'a Event) -> Variants<'a> {
        Variants { server, channel, event, built: Default::default() }
    }

    pub fn get(&mut self, caps: Caps) -> Bytes {
        let tags = TagSet::of(caps);
        self.built[usize::from(tags.0)]
            .get_or_insert_with(|| event_line(self.server, self.channel, self.event, tags).to_bytes())
            .clone()
    }
}
