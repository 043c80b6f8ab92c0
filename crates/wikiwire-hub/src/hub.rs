//! `Hub`: the one way in. Every ingest adapter (HTTP, IRC, XML-RPC, RCFeed) hands validated
//! drafts and the authenticated publisher to [`Hub::publish`]; every output follows the log
//! through [`Hub::follow`]. Nothing here knows a protocol.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use wikiwire_event::{Draft, Filter};
use wikiwire_store::{Appended, Retention, Store, StoreError};

use crate::channels::ChannelSpec;
use crate::follow::{Follower, Lag};
use crate::login_guard::LoginGuard;
use crate::metrics::{Metrics, Row, Value};
use crate::publisher::{Publisher, Publishers};

/// Why a publish was refused. Nothing was stored.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("publisher {publisher} may not announce for wiki {wiki:?}")]
    NotYourWiki { index: usize, wiki: String, publisher: String },
    #[error("too many events: retry in {:.1}s", retry_after.as_secs_f64())]
    RateLimited { retry_after: Duration },
    #[error(transparent)]
    Store(#[from] StoreError),
}

pub struct Hub {
    store: Arc<dyn Store>,
    publishers: Publishers,
    channels: Vec<ChannelSpec>,
    metrics: Arc<Metrics>,
    logins: Arc<LoginGuard>,
    public_url: String,
    shutdown: CancellationToken,
}

impl Hub {
    pub fn new(
        store: Arc<dyn Store>,
        publishers: Publishers,
        channels: Vec<ChannelSpec>,
        public_url: String,
        shutdown: CancellationToken,
    ) -> Arc<Hub> {
        let metrics = Arc::new(Metrics::default());
        Arc::new(Hub {
            store,
            publishers,
            channels,
            logins: Arc::new(LoginGuard::new(Arc::clone(&metrics))),
            metrics,
            public_url,
            shutdown,
        })
    }

    /// The IRC channel directory (also described over HTTP).
    pub fn channels(&self) -> &[ChannelSpec] {
        &self.channels
    }

    /// A channel by name; channel names compare without ASCII case.
    pub fn channel(&self, name: &str) -> Option<&ChannelSpec> {
        self.channels.iter().find(|channel| channel.name.eq_ignore_ascii_case(name))
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    pub fn publishers(&self) -> &Publishers {
        &self.publishers
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// The failed-login back-off every front end that checks a secret goes through.
    pub fn logins(&self) -> &Arc<LoginGuard> {
        &self.logins
    }

    /// The hub's public URL, without a trailing slash.
    pub fn public_url(&self) -> &str {
        &self.public_url
    }

    /// Cancelled when the hub shuts down; long-lived tasks end on it.
    pub fn shutdown(&self) -> &CancellationToken {
        &self.shutdown
    }

    /// Where a wiki's description block is served (it goes in channel topics).
    pub fn wiki_url(&self, wiki: &str) -> String {
        wikiwire_event::api::wiki(&self.public_url, wiki)
    }

    /// Stores the drafts, all or none, after checking the publisher may announce for each wiki
    /// and is within its rate. Returns once committed; the bus has them by then.
    pub async fn publish(
        &self,
        publisher: &Publisher,
        mut drafts: Vec<Draft>,
    ) -> Result<Vec<Appended>, PublishError> {
        for (index, draft) in drafts.iter_mut().enumerate() {
            match publisher.canonical_wiki(draft.wiki()) {
                Some(canonical) => draft.respell_wiki(canonical),
                None => {
                    self.metrics.rejected_forbidden.inc();
                    return Err(PublishError::NotYourWiki {
                        index,
                        wiki: draft.wiki().to_owned(),
                        publisher: publisher.name.clone(),
                    });
                }
            }
        }
        if let Err(retry_after) = publisher.take(drafts.len()) {
            self.metrics.rejected_rate.inc();
            return Err(PublishError::RateLimited { retry_after });
        }
        let appended = self.store.append(drafts).await?;
        let duplicates = appended.iter().filter(|appended| appended.duplicate).count() as u64;
        self.metrics.events_duplicate.add(duplicates);
        self.metrics.events_published.add(appended.len() as u64 - duplicates);
        Ok(appended)
    }

    /// Follows the log after `after` (or from now), through `filter`.
    pub async fn follow(&self, after: Option<u64>, filter: Filter, lag: Lag) -> Result<Follower, StoreError> {
        Follower::new(Arc::clone(&self.store), Arc::clone(&self.metrics), after, filter, lag).await
    }

    /// The metrics page, with the figures that live in the store.
    pub async fn render_metrics(&self) -> String {
        let bounds = self.store.bounds().await.unwrap_or_default();
        let mut store_rows = vec![
            Row::new("wikiwire_last_event_id", "The newest event id.", Value::Level(bounds.last_id as i64)),
            Row::new(
                "wikiwire_pruned_through_id",
                "Every event up to this id was removed by retention.",
                Value::Level(bounds.pruned_through as i64),
            ),
            Row::new(
                "wikiwire_bus_receivers",
                "Outputs listening to the bus.",
                Value::Level(self.store.bus().receivers() as i64),
            ),
        ];
        if let Some(cluster) = self.store.cluster_status() {
            let gauge = |name, help, value: u64| Row::new(name, help, Value::Level(value as i64));
            let counter = |name, help, value: u64| Row::new(name, help, Value::Total(value));
            store_rows.extend([
                gauge(
                    "wikiwire_cluster_applied_id",
                    "The newest event this node's replica applied and announced.",
                    cluster.applied_id,
                ),
                gauge(
                    "wikiwire_cluster_stream_last_id",
                    "The stream's last event id when last asked.",
                    cluster.stream_last_id,
                ),
                gauge(
                    "wikiwire_cluster_apply_lag",
                    "Events stored in the stream that this node has not applied yet.",
                    cluster.stream_last_id.saturating_sub(cluster.applied_id),
                ),
                gauge(
                    "wikiwire_cluster_connected",
                    "1 when connected to a NATS server.",
                    u64::from(cluster.connected),
                ),
                gauge(
                    "wikiwire_cluster_ready",
                    "1 when this node serves (see /healthz for why not).",
                    u64::from(cluster.unready.is_none()),
                ),
                counter(
                    "wikiwire_publish_retries_total",
                    "Appends sent again after a timeout or a lost connection.",
                    cluster.publish_retries,
                ),
                counter(
                    "wikiwire_publish_resolved_total",
                    "Appends whose outcome was read back from the stream (lost acknowledgement, key held).",
                    cluster.publish_resolved,
                ),
                counter(
                    "wikiwire_apply_wait_timeouts_total",
                    "Appends answered before this node's replica applied them.",
                    cluster.apply_wait_timeouts,
                ),
                counter(
                    "wikiwire_cluster_unreadable_total",
                    "Stream messages that are not events (unparseable, or not on their wiki's subject): each a gap.",
                    cluster.unreadable,
                ),
            ]);
        }
        self.metrics.render(store_rows)
    }

    /// Applies retention once a minute until shutdown.
    pub async fn run_retention(self: Arc<Self>, retention: Retention) {
        if retention == Retention::default() {
            return;
        }
        let mut ticker = tokio::time::interval(Duration::from_secs(60));
        loop {
            tokio::select! {
                _ = self.shutdown.cancelled() => return,
                _ = ticker.tick() => {}
            }
            loop {
                match self.store.prune(retention).await {
                    Ok(0) => break,
                    Ok(_) => tokio::task::yield_now().await,
                    Err(error) => {
                        tracing::error!(%error, "retention failed");
                        break;
                    }
                }
            }
        }
    }
}
