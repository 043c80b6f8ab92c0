//! Publishers: who may announce for which wiki, how they prove it, and how fast they may go.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use wikiwire_event::WikiDescription;

use crate::config::{LimitsConfig, PublisherConfig};
use crate::token;

/// One authenticated source of events.
#[derive(Debug)]
pub struct Publisher {
    pub name: String,
    /// As spelled in the configuration; events are respelled to match.
    pub wikis: Vec<String>,
    token_hash: [u8; 32],
    bucket: Mutex<Bucket>,
}

impl Publisher {
    pub fn verify(&self, token: &str) -> bool {
        token::verify(token, &self.token_hash)
    }

    /// The configured spelling of `wiki` when this publisher may announce for it.
    pub fn canonical_wiki(&self, wiki: &str) -> Option<&str> {
        self.wikis.iter().find(|own| own.eq_ignore_ascii_case(wiki)).map(String::as_str)
    }

    /// Takes `events` from the rate budget, or says how long to wait.
    pub fn take(&self, events: usize) -> Result<(), Duration> {
        // A poisoned bucket only means a panic mid-arithmetic; the numbers are still usable.
        let mut bucket = self.bucket.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        bucket.take(events as f64, Instant::now())
    }
}

/// A token bucket that may go into debt: a batch larger than the burst still passes when the
/// bucket is full, so no batch size is refused forever.
#[derive(Debug)]
struct Bucket {
    tokens: f64,
    updated: Instant,
    rate: f64,
    burst: f64,
}

impl Bucket {
    fn take(&mut self, wanted: f64, now: Instant) -> Result<(), Duration> {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        self.updated = now;
        if self.tokens >= wanted.min(self.burst) {
            self.tokens -= wanted;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((wanted.min(self.burst) - self.tokens) / self.rate))
        }
    }
}

/// A publisher the configuration describes but that cannot be made (`config check` refuses these
/// first).
#[derive(Debug, thiserror::Error)]
pub enum PublisherError {
    #[error("{publisher}: {reason}")]
    TokenHash { publisher: String, reason: &'static str },
    #[error("{publisher}: no token")]
    NoToken { publisher: String },
}

/// Every publisher and every wiki's description block.
#[derive(Debug, Default)]
pub struct Publishers {
    list: Vec<Arc<Publisher>>,
    wikis: Vec<WikiDescription>,
}

impl Publishers {
    /// From checked configuration (`Config::check` passed, so hashes parse).
    pub fn new(configs: &[PublisherConfig], limits: &LimitsConfig) -> Result<Publishers, PublisherError> {
        let mut publishers = Publishers::default();
        for config in configs {
            let token_hash = match (&config.token, &config.token_hash) {
                (_, Some(hash)) => token::parse_hash(hash)
                    .map_err(|reason| PublisherError::TokenHash { publisher: config.name.clone(), reason })?,
                (Some(token), None) => token::hash(token),
                (None, None) => return Err(PublisherError::NoToken { publisher: config.name.clone() }),
            };
            for wiki in &config.wikis {
                publishers.wikis.push(WikiDescription::new(
                    wiki,
                    &config.name,
                    config.engine,
                    config.base_url.as_deref(),
                    &config.links,
                ));
            }
            publishers.list.push(Arc::new(Publisher {
                name: config.name.clone(),
                wikis: config.wikis.clone(),
                token_hash,
                bucket: Mutex::new(Bucket {
                    tokens: limits.publish_burst,
                    updated: Instant::now(),
                    rate: limits.publish_rate,
                    burst: limits.publish_burst,
                }),
            }));
        }
        publishers.wikis.sort_by_key(|wiki| wiki.name.to_ascii_lowercase());
        Ok(publishers)
    }

    /// The publisher whose token this is. Every publisher is compared, each in constant time, so
    /// the time taken says nothing about which one nearly matched.
    pub fn by_token(&self, token: &str) -> Option<Arc<Publisher>> {
        let mut found = None;
        for publisher in &self.list {
            if publisher.verify(token) {
                found = Some(Arc::clone(publisher));
            }
        }
        found
    }

    pub fn by_name(&self, name: &str) -> Option<Arc<Publisher>> {
        self.list.iter().find(|publisher| publisher.name.eq_ignore_ascii_case(name)).cloned()
    }

    /// A name and a token that belong together.
    pub fn authenticate(&self, name: &str, token: &str) -> Option<Arc<Publisher>> {
        let publisher = self.by_name(name)?;
        publisher.verify(token).then_some(publisher)
    }

    pub fn all(&self) -> &[Arc<Publisher>] {
        &self.list
    }

    pub fn wikis(&self) -> &[WikiDescription] {
        &self.wikis
    }

    pub fn wiki(&self, name: &str) -> Option<&WikiDescription> {
        self.wikis.iter().find(|wiki| wiki.name.eq_ignore_ascii_case(name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bucket_refills_and_allows_debt_when_full() {
        let start = Instant::now();
        let mut bucket = Bucket { tokens: 10.0, updated: start, rate: 10.0, burst: 10.0 };
        assert!(bucket.take(10.0, start).is_ok());
        let wait = bucket.take(1.0, start).unwrap_err();
        assert!(wait > Duration::ZERO && wait <= Duration::from_millis(100));
        assert!(bucket.take(1.0, start + Duration::from_millis(100)).is_ok());
        let full = start + Duration::from_secs(10);
        assert!(bucket.take(50.0, full).is_ok(), "a batch above the burst passes when the bucket is full");
        assert!(bucket.take(1.0, full).is_err());
    }
}
