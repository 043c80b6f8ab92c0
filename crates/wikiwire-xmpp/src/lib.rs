//! The Jabber notification bot (SPEC §5, seed 2).
pub mod connector;
pub mod i18n;
pub mod notification;
pub mod render;
pub mod state;
