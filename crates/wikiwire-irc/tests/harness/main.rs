//! The IRC server driven without a socket (`support`): one client over an in-memory stream per
//! test, under tokio's paused clock where time matters, so every timer is crossed exactly and
//! at once.
//!
//! What needs a socket is not here: the accept loop (`listener`: refusals past `max_clients` or
//! `max_per_ip`, the TLS handshake and its bound) and HistServ's DCC transfers, which listen on
//! ports of their own. `tests/python/test_irc_limits.py` and `test_histserv_dcc.py` drive those
//! through the real binary; the TLS handshake's time bound is tested nowhere yet.

mod labels;
mod limits;
mod pipeline;
mod support;
mod timers;
