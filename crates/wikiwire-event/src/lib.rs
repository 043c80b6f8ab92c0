//! The wikiwire event: what a wiki announces, and every way it is written down. Pure code: no
//! I/O, no clocks except where a caller passes `now`, so everything here is testable alone.
//!
//! | module | owns |
//! |---|---|
//! | [`api`] | the HTTP API's paths, and the URLs that point at them |
//! | [`time`] | `Timestamp`, RFC 3339 / unix-seconds parsing |
//! | [`action`] | canonical actions, MoinMoin aliases, required fields |
//! | [`event`] | `Event`, `Draft`, `Link` |
//! | [`fields`] | input → validated event, `FieldError`, limits |
//! | [`json`] | canonical JSON, publisher JSON bodies |
//! | [`mediawiki`] | MediaWiki's RCFeed datagram in, its IRC colour line out |
//! | [`eventstreams`] | Wikimedia's EventStreams: `mediawiki/recentchange` bodies, KafkaSSE ids, `since` |
//! | [`packed`] | the IRC query-string encoding with its 512-byte budget |
//! | [`xml`] | the `<changes>` history document |
//! | [`text`] | one readable line per event |
//! | [`line`] | `Format`: the one-line renderer every line-based output shares |
//! | [`atom`] | Atom feeds |
//! | [`filter`] | the filter language shared by every output |
//! | [`wiki`] | wiki description blocks and link templates |

pub mod action;
pub mod api;
pub mod atom;
pub mod event;
pub mod eventstreams;
pub mod fields;
pub mod filter;
pub mod json;
pub mod line;
pub mod mediawiki;
pub mod packed;
pub mod text;
pub mod time;
pub mod wiki;
pub mod xml;

pub use action::{Action, Required};
pub use event::{Draft, Event, Link};
pub use fields::{FieldError, Mode};
pub use filter::Filter;
pub use line::Format;
pub use time::{TimeError, Timestamp};
pub use wiki::{Engine, LinkTemplates, WikiDescription};
