//! IRC on the wire, shared by the embedded server, the subscriber client and the relay: nothing
//! here knows who is talking.
//!
//! | module | owns |
//! |---|---|
//! | [`framing`] | reading lines with byte limits applied while reading |
//! | [`names`] | nick and channel-name rules, and the lengths ISUPPORT announces |
//! | [`numeric`] | numeric replies by name: the server sends them, the client and relay read them |
//! | [`sasl`] | the size of `AUTHENTICATE` chunks, and a payload cut into them |
//! | [`wire`] | `Request` (a parsed line: tags, source, verb, params) and `Line` (writing one) |
//! | [`target`] | `irc://host[:port]/#channel` and `ircs://` |

pub mod framing;
pub mod names;
pub mod numeric;
pub mod sasl;
pub mod target;
pub mod wire;

pub use target::IrcTarget;
