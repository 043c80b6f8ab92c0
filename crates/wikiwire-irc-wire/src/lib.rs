//! IRC on the wire, shared by the embedded server, the subscriber client and the relay: nothing
//! here knows who is talking.
//!
//! | module | owns |
//! |---|---|
//! | [`framing`] | reading lines with byte limits applied while reading |
//! | [`wire`] | `Request` (a parsed line: tags, source, verb, params) and `Line` (writing one) |
//! | [`target`] | `irc://host[:port]/#channel` and `ircs://` |

pub mod framing;
pub mod target;
pub mod wire;

pub use target::IrcTarget;
