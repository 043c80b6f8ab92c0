//! The IRC server driven without a socket (`support`): one client over an in-memory stream per
//! test, under tokio's paused clock where time matters, so every timer is crossed exactly and
//! at once.
//!
//! The accept loop needs a socket: `listener` binds a loopback port for its refusals and the TLS
//! handshake's bound. HistServ's DCC transfers, which listen on ports of their own, are left to
//! `tests/python/test_histserv_dcc.py`, which drives the real binary.

mod labels;
mod limits;
mod listener;
mod pipeline;
mod support;
mod timers;
