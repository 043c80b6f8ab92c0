//! Following wikiwire from a program.
//!
//! | module | owns |
//! |---|---|
//! | [`connection`] | an IRC client connection: TCP or TLS, the registration's lines carried, JOIN |
//! | [`registration`] | registration as a pure state machine: CAP, SASL/PASS/NickServ, nick fallbacks |
//! | [`subscriber`] | `Subscriber`: HTTP catch-up and live IRC merged by id, trusted, resumable |
//! | [`cursor`] | the cursor file, replaced atomically |

pub mod connection;
pub mod cursor;
pub mod registration;
pub mod subscriber;

pub use connection::{Auth, ClientError, Connection, Login, TlsSettings};
pub use subscriber::{Options, Subscriber, SubscriberError};
pub use wikiwire_irc_wire::IrcTarget;
