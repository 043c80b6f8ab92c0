//! `[store]` and `[limits]`: how long the log keeps events, how it commits, how fast a publisher
//! may go.

use std::time::Duration;

use serde::Deserialize;

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    /// Keep events this long (`90d`, `12h`, or seconds); unset keeps them forever.
    #[serde(default, deserialize_with = "super::optional_duration")]
    pub max_age: Option<Duration>,
    /// Keep at most this many events.
    pub max_events: Option<u64>,
    /// `full` (default): a commit survives power loss. `normal`: only a crash of the process.
    #[serde(default)]
    pub synchronous: Synchronous,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Synchronous {
    #[default]
    Full,
    Normal,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// Events per second one publisher may announce, sustained.
    pub publish_rate: f64,
    /// Events one publisher may announce in a burst.
    pub publish_burst: f64,
}

/// `limits.publish_rate`, events per second.
pub const DEFAULT_PUBLISH_RATE: f64 = 1000.0;
/// `limits.publish_burst`, events.
pub const DEFAULT_PUBLISH_BURST: f64 = 20_000.0;

impl Default for LimitsConfig {
    fn default() -> LimitsConfig {
        LimitsConfig { publish_rate: DEFAULT_PUBLISH_RATE, publish_burst: DEFAULT_PUBLISH_BURST }
    }
}

impl StoreConfig {
    pub(super) fn check(&self, problems: &mut Vec<String>) {
        if self.max_events == Some(0) {
            problems.push("store.max_events: at least 1 (leave it out to keep every event)".into());
        }
    }
}

impl LimitsConfig {
    pub(super) fn check(&self, problems: &mut Vec<String>) {
        if !(self.publish_rate > 0.0 && self.publish_burst >= 1.0) {
            problems.push("limits: publish_rate must be above 0 and publish_burst at least 1".into());
        }
    }
}
