//! The embedded IRC server (SPEC §3): broadcast channels that only the wiki can speak in.
//!
//! | module | owns |
//! |---|---|
//! | (`wikiwire-irc-wire`, imported directly) | framing with byte limits; `Request` and `Line` on the wire; numerics |
//! | [`caps`] | protocol table: IRCv3 capabilities |
//! | [`config`] | `[irc]`: the server's section of the configuration, its defaults and its check |
//! | [`server`] | shared state: settings, nick and publisher-session registry, connection counts |
//! | [`client`] | a client's identity and its send queue, bounded in bytes |
//! | [`channels`] | the fixed channel directory and its members |
//! | [`pipeline`] | a publisher's events committed together, answered in order, bounded (`publish_queue`) |
//! | [`connection`] | one connection: reader loop, timers, flood control, writer task, goodbye |
//! | [`respond`] | `Context` for handlers, labeled-response and batches |
//! | [`commands`] | the command table and one module per group of commands |
//! | [`render`] | events as PRIVMSG lines, shared by live delivery and CHATHISTORY |
//! | [`dcc`] | HistServ's DCC SEND offers: one port per transfer, only for the peer that asked, bounded per client, per address and in total |
//! | [`turns`] | one row-by-row history query at a time per client address |
//! | [`fanout`] | following the log into every matching channel |
//! | [`listener`] | the accept loop: admission, the TLS handshake, refusals; shutdown's wait for goodbyes |
//! | [`tls`] | the TLS listener's rustls configuration |
//!
//! Nothing here stores or validates events itself: publishing goes through `Hub::publish`, and
//! every line comes from the same renderer.

pub mod caps;
pub mod channels;
pub mod client;
pub mod commands;
pub mod config;
pub mod connection;
pub mod dcc;
pub mod fanout;
pub mod listener;
pub mod pipeline;
pub mod render;
pub mod respond;
pub mod server;
pub mod tls;
pub mod turns;

pub use config::Config;
pub use server::Server;
