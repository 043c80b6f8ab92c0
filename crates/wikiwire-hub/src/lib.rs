//! The hub: what every front end shares. It owns no socket and speaks no protocol.
//!
//! | module | owns |
//! |---|---|
//! | [`config`] | the TOML configuration and `config check` |
//! | [`channels`] | the IRC channel directory: names, formats, filters, speakers |
//! | [`token`] | publisher tokens and their hashes |
//! | [`publisher`] | publishers, the wikis each may announce for, rate limits, description blocks |
//! | [`hub`] | `Hub`: the one publish path, retention, metrics page |
//! | [`follow`] | `Follower`: history from a cursor, then live, no gap, no duplicate |
//! | [`metrics`] | counters and gauges, Prometheus rendering |
//! | [`log_gate`] | at most one log line per interval for refusals anyone can cause |
//! | [`login_guard`] | failed logins make their address wait, longer each time |

pub mod channels;
pub mod config;
pub mod follow;
pub mod hub;
pub mod log_gate;
pub mod login_guard;
pub mod metrics;
pub mod publisher;
pub mod token;

pub use channels::ChannelSpec;
pub use config::Config;
pub use follow::{FollowError, Follower, Item, Lag};
pub use hub::{Hub, PublishError};
pub use log_gate::LogGate;
pub use login_guard::{Claim, LoginGuard};
pub use metrics::Metrics;
pub use publisher::{Publisher, Publishers};
