//! Prometheus metrics, kept as plain atomics and rendered from one table. Front ends count into
//! the shared `Metrics`; nothing here allocates on the hot path.

use std::fmt::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    pub fn inc(&self) {
        self.add(1);
    }
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

#[derive(Debug, Default)]
pub struct Gauge(AtomicI64);

impl Gauge {
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
    pub fn dec(&self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
    pub fn set(&self, value: i64) {
        self.0.store(value, Ordering::Relaxed);
    }
    pub fn get(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Counts something in a gauge for exactly as long as the guard lives (an SSE stream, a relay's
/// session): incremented when made, decremented when dropped, even by a panic or a cancelled task.
pub struct GaugeGuard {
    metrics: Arc<Metrics>,
    gauge: fn(&Metrics) -> &Gauge,
}

impl GaugeGuard {
    pub fn new(metrics: Arc<Metrics>, gauge: fn(&Metrics) -> &Gauge) -> GaugeGuard {
        gauge(&metrics).inc();
        GaugeGuard { metrics, gauge }
    }
}

impl Drop for GaugeGuard {
    fn drop(&mut self) {
        (self.gauge)(&self.metrics).dec();
    }
}

#[derive(Debug, Default)]
pub struct Metrics {
    pub events_published: Counter,
    pub events_duplicate: Counter,
    pub rejected_invalid: Counter,
    pub rejected_unauthorized: Counter,
    pub rejected_forbidden: Counter,
    pub rejected_rate: Counter,
    pub rejected_too_large: Counter,
    pub http_requests: Counter,
    /// HTTP connections answered 503 and closed at once: too many from one address.
    pub http_refused: Counter,
    /// HTTP connections answered 503 and closed at once: no room (in total, or outside the
    /// reserve for addresses that hold none).
    pub http_refused_full: Counter,
    /// Open HTTP connections (the API's listener and the XML-RPC API's).
    pub http_connections: Gauge,
    pub sse_clients: Gauge,
    pub followers_lagged: Counter,
    pub irc_connections: Gauge,
    pub irc_refused: Counter,
    pub irc_sendq_exceeded: Counter,
    pub irc_flood_waits: Counter,
    pub irc_lines_delivered: Counter,
    pub irc_published: Counter,
    /// Times a publisher's IRC input waited for room in its queue of events to commit.
    pub irc_publish_waits: Counter,
    /// Times a row-by-row history query waited for its address's earlier one.
    pub irc_history_waits: Counter,
    /// HistServ DCC offers and transfers open.
    pub irc_dcc_open: Gauge,
    /// DCC requests refused: the address's or the server's limit, or no free port.
    pub irc_dcc_refused: Counter,
    /// Connections to a DCC port from an address other than the asking client's.
    pub irc_dcc_strangers: Counter,
    /// Channels made from RCFeed prefixes (`[[rcfeed]] channels = "from-prefix"`).
    pub irc_prefix_channels: Gauge,
    /// Changes whose prefix made no channel: the cap was reached, or another wiki has it.
    pub irc_prefix_refused: Counter,
    pub relay_connected: Gauge,
    pub relay_lines: Counter,
    pub relay_failures: Counter,
    pub rcfeed_accepted: Counter,
    pub rcfeed_refused: Counter,
    /// Valid datagrams dropped because the queue before the store was full.
    pub rcfeed_queue_dropped: Counter,
    /// Datagrams the kernel dropped before wikiwire could read them (`/proc/net/udp`).
    pub rcfeed_kernel_dropped: Counter,
    /// Wrong secrets (IRC PASS or SASL, HTTP tokens, the XML-RPC secret).
    pub login_failures: Counter,
    /// Logins refused unseen because their address must wait after failures.
    pub login_refused: Counter,
    /// Failed-login records forgotten while still recent because the table was full.
    pub login_forgotten: Counter,
    pub xmlrpc_calls: Counter,
    pub xmlrpc_faults: Counter,
    pub xmpp_connected: Gauge,
    pub xmpp_connections: Counter,
    pub xmpp_delivered: Counter,
    pub xmpp_outbox: Gauge,
    pub xmpp_resources: Gauge,
    pub xmpp_commands: Counter,
    pub xmpp_wiki_calls: Counter,
    pub xmpp_wiki_failures: Counter,
}

/// A value read at render time, for figures that live elsewhere (the store's last id).
pub struct Sample<'a> {
    pub name: &'a str,
    pub help: &'a str,
    pub kind: &'a str,
    pub value: i64,
}

enum Value<'a> {
    Counter(&'a Counter),
    Gauge(&'a Gauge),
}

impl Metrics {
    /// (name, labels, help, value): one row per series.
    fn table(&self) -> Vec<(&'static str, &'static str, &'static str, Value<'_>)> {
        const REJECTED: &str = "Events refused at publish, by reason.";
        const HTTP_REFUSED: &str =
            "HTTP connections answered 503 and closed at once, by cap: per address, or no room.";
        vec![
            (
                "wikiwire_events_published_total",
                "",
                "Events stored and announced.",
                Value::Counter(&self.events_published),
            ),
            (
                "wikiwire_events_duplicate_total",
                "",
                "Events not stored again because their (wiki, key) was known.",
                Value::Counter(&self.events_duplicate),
            ),
            (
                "wikiwire_publish_rejected_total",
                "reason=\"invalid\"",
                REJECTED,
                Value::Counter(&self.rejected_invalid),
            ),
            (
                "wikiwire_publish_rejected_total",
                "reason=\"unauthorized\"",
                REJECTED,
                Value::Counter(&self.rejected_unauthorized),
            ),
            (
                "wikiwire_publish_rejected_total",
                "reason=\"forbidden\"",
                REJECTED,
                Value::Counter(&self.rejected_forbidden),
            ),
            (
                "wikiwire_publish_rejected_total",
                "reason=\"rate_limited\"",
                REJECTED,
                Value::Counter(&self.rejected_rate),
            ),
            (
                "wikiwire_publish_rejected_total",
                "reason=\"too_large\"",
                REJECTED,
                Value::Counter(&self.rejected_too_large),
            ),
            (
                "wikiwire_login_failures_total",
                "",
                "Logins with a wrong secret (IRC PASS or SASL, HTTP publisher tokens, the XML-RPC secret).",
                Value::Counter(&self.login_failures),
            ),
            (
                "wikiwire_login_refused_total",
                "",
                "Logins refused without a look at the secret: their address must wait after repeated failures.",
                Value::Counter(&self.login_refused),
            ),
            (
                "wikiwire_login_forgotten_total",
                "",
                "Failed-login records (addresses, networks) forgotten early because the table was full.",
                Value::Counter(&self.login_forgotten),
            ),
            (
                "wikiwire_http_requests_total",
                "",
                "HTTP requests served.",
                Value::Counter(&self.http_requests),
            ),
            (
                "wikiwire_http_connections_refused_total",
                "reason=\"address\"",
                HTTP_REFUSED,
                Value::Counter(&self.http_refused),
            ),
            (
                "wikiwire_http_connections_refused_total",
                "reason=\"full\"",
                HTTP_REFUSED,
                Value::Counter(&self.http_refused_full),
            ),
            (
                "wikiwire_http_connections",
                "",
                "Open HTTP connections (the API's listener and the XML-RPC API's).",
                Value::Gauge(&self.http_connections),
            ),
            ("wikiwire_sse_clients", "", "Open Server-Sent Events streams.", Value::Gauge(&self.sse_clients)),
            (
                "wikiwire_followers_lagged_total",
                "",
                "Times an output fell behind the bus and resumed from the store or was dropped.",
                Value::Counter(&self.followers_lagged),
            ),
            ("wikiwire_irc_connections", "", "Open IRC connections.", Value::Gauge(&self.irc_connections)),
            (
                "wikiwire_irc_refused_total",
                "",
                "IRC connections refused by the per-address or total limit.",
                Value::Counter(&self.irc_refused),
            ),
            (
                "wikiwire_irc_sendq_exceeded_total",
                "",
                "IRC clients cut off because they did not read fast enough.",
                Value::Counter(&self.irc_sendq_exceeded),
            ),
            (
                "wikiwire_irc_flood_waits_total",
                "",
                "Times an IRC client's input was slowed by flood control.",
                Value::Counter(&self.irc_flood_waits),
            ),
            (
                "wikiwire_irc_lines_delivered_total",
                "",
                "Event lines queued to IRC clients.",
                Value::Counter(&self.irc_lines_delivered),
            ),
            (
                "wikiwire_irc_published_total",
                "",
                "Events published by PRIVMSG.",
                Value::Counter(&self.irc_published),
            ),
            (
                "wikiwire_irc_publish_waits_total",
                "",
                "Times a publisher's IRC input waited for the store (irc.publish_queue was full).",
                Value::Counter(&self.irc_publish_waits),
            ),
            (
                "wikiwire_irc_history_waits_total",
                "",
                "Times a row-by-row history query waited for the same address's earlier one.",
                Value::Counter(&self.irc_history_waits),
            ),
            (
                "wikiwire_irc_prefix_channels",
                "",
                "IRC channels made from RCFeed prefixes.",
                Value::Gauge(&self.irc_prefix_channels),
            ),
            (
                "wikiwire_irc_prefix_refused_total",
                "",
                "Changes whose RCFeed prefix made no channel (irc.max_prefix_channels reached, or another wiki's).",
                Value::Counter(&self.irc_prefix_refused),
            ),
            (
                "wikiwire_irc_dcc_open",
                "",
                "HistServ DCC offers and transfers open.",
                Value::Gauge(&self.irc_dcc_open),
            ),
            (
                "wikiwire_irc_dcc_refused_total",
                "",
                "HistServ DCC requests refused by the per-address or total limit, or for want of a port.",
                Value::Counter(&self.irc_dcc_refused),
            ),
            (
                "wikiwire_irc_dcc_strangers_total",
                "",
                "Connections to a DCC port from another address than the asking client's, closed.",
                Value::Counter(&self.irc_dcc_strangers),
            ),
            (
                "wikiwire_relay_connected",
                "",
                "Relays connected to their network.",
                Value::Gauge(&self.relay_connected),
            ),
            (
                "wikiwire_relay_lines_total",
                "",
                "Events relayed and acknowledged by the other network.",
                Value::Counter(&self.relay_lines),
            ),
            (
                "wikiwire_relay_failures_total",
                "",
                "Relay sessions that ended in an error.",
                Value::Counter(&self.relay_failures),
            ),
            (
                "wikiwire_rcfeed_datagrams_total",
                "result=\"accepted\"",
                "MediaWiki RCFeed datagrams, by result.",
                Value::Counter(&self.rcfeed_accepted),
            ),
            (
                "wikiwire_rcfeed_datagrams_total",
                "result=\"refused\"",
                "MediaWiki RCFeed datagrams, by result.",
                Value::Counter(&self.rcfeed_refused),
            ),
            (
                "wikiwire_rcfeed_datagrams_total",
                "result=\"queue_full\"",
                "MediaWiki RCFeed datagrams, by result.",
                Value::Counter(&self.rcfeed_queue_dropped),
            ),
            (
                "wikiwire_rcfeed_datagrams_total",
                "result=\"kernel_dropped\"",
                "MediaWiki RCFeed datagrams, by result.",
                Value::Counter(&self.rcfeed_kernel_dropped),
            ),
            (
                "wikiwire_xmlrpc_calls_total",
                "",
                "XML-RPC requests from wikis to the notification bot.",
                Value::Counter(&self.xmlrpc_calls),
            ),
            (
                "wikiwire_xmlrpc_faults_total",
                "",
                "XML-RPC requests answered with a fault.",
                Value::Counter(&self.xmlrpc_faults),
            ),
            (
                "wikiwire_xmpp_connected",
                "",
                "1 while the notification bot has a stream to its XMPP server.",
                Value::Gauge(&self.xmpp_connected),
            ),
            (
                "wikiwire_xmpp_connections_total",
                "",
                "XMPP streams started (not counting resumptions).",
                Value::Counter(&self.xmpp_connections),
            ),
            (
                "wikiwire_xmpp_delivered_total",
                "",
                "Outbox items (notifications, room lines, roster changes) acknowledged by the XMPP server.",
                Value::Counter(&self.xmpp_delivered),
            ),
            (
                "wikiwire_xmpp_outbox",
                "",
                "Items waiting in the bot's outbox.",
                Value::Gauge(&self.xmpp_outbox),
            ),
            (
                "wikiwire_xmpp_resources",
                "",
                "Online client resources of contacts whose features (forms, OOB) the bot knows.",
                Value::Gauge(&self.xmpp_resources),
            ),
            (
                "wikiwire_xmpp_commands_total",
                "",
                "Commands users sent to the bot.",
                Value::Counter(&self.xmpp_commands),
            ),
            (
                "wikiwire_xmpp_wiki_calls_total",
                "",
                "XML-RPC calls the bot made to the wiki.",
                Value::Counter(&self.xmpp_wiki_calls),
            ),
            (
                "wikiwire_xmpp_wiki_failures_total",
                "",
                "Calls to the wiki that failed (unreachable or malformed answer, not faults).",
                Value::Counter(&self.xmpp_wiki_failures),
            ),
        ]
    }

    /// The Prometheus text exposition format (version 0.0.4).
    pub fn render(&self, samples: &[Sample<'_>]) -> String {
        let mut out = String::new();
        let mut last_name = "";
        for (name, labels, help, value) in self.table() {
            let kind = match value {
                Value::Counter(_) => "counter",
                Value::Gauge(_) => "gauge",
            };
            if name != last_name {
                let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
                last_name = name;
            }
            let number = match value {
                Value::Counter(counter) => counter.get() as i64,
                Value::Gauge(gauge) => gauge.get(),
            };
            if labels.is_empty() {
                let _ = writeln!(out, "{name} {number}");
            } else {
                let _ = writeln!(out, "{name}{{{labels}}} {number}");
            }
        }
        for sample in samples {
            let _ = writeln!(
                out,
                "# HELP {0} {1}\n# TYPE {0} {2}\n{0} {3}",
                sample.name, sample.help, sample.kind, sample.value
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_field_is_rendered() {
        // One distinct value per counter and gauge: each must appear on the page.
        let metrics = Metrics::default();
        let rows = metrics.table();
        for (index, (_, _, _, value)) in rows.iter().enumerate() {
            match value {
                Value::Counter(counter) => counter.add(1000 + index as u64),
                Value::Gauge(gauge) => gauge.set(1000 + index as i64),
            }
        }
        let page = metrics.render(&[]);
        for index in 0..rows.len() {
            assert!(page.contains(&format!(" {}\n", 1000 + index)), "row {index} missing");
        }
        // Fields = rows: a field added to the struct but not the table fails here.
        let fields = format!("{metrics:?}").matches(": Counter(").count()
            + format!("{metrics:?}").matches(": Gauge(").count();
        assert_eq!(fields, rows.len());
    }
}
