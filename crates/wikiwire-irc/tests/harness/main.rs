//! The IRC server driven without a socket (`support`): one client over an in-memory stream per
//! test, under tokio's paused clock where time matters, so every timer is crossed exactly and
//! at once.

mod labels;
mod limits;
mod pipeline;
mod support;
mod timers;
