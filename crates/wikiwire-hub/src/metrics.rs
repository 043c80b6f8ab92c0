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

/// One series on the metrics page. The hub's own counters and gauges and the figures read from
/// the store when the page is written (its last id, the cluster's state) are rows alike, so one
/// writer lays out the page.
pub struct Row<'a> {
    pub name: &'a str,
    /// Prometheus labels as written between the braces (`reason="invalid"`); empty for none.
    pub labels: &'a str,
    pub help: &'a str,
    pub value: Value<'a>,
}

/// A row's number: one of the hub's counters or gauges, read as the page is written, or a figure
/// already read elsewhere.
pub enum Value<'a> {
    Counter(&'a Counter),
    Gauge(&'a Gauge),
    /// A figure that only goes up (a count the store keeps).
    Total(u64),
    /// A figure that moves both ways (an id, a lag, a 0-or-1 state).
    Level(i64),
}

impl<'a> From<&'a Counter> for Value<'a> {
    fn from(counter: &'a Counter) -> Value<'a> {
        Value::Counter(counter)
    }
}

impl<'a> From<&'a Gauge> for Value<'a> {
    fn from(gauge: &'a Gauge) -> Value<'a> {
        Value::Gauge(gauge)
    }
}

impl Value<'_> {
    /// The Prometheus type.
    fn kind(&self) -> &'static str {
        match self {
            Value::Counter(_) | Value::Total(_) => "counter",
            Value::Gauge(_) | Value::Level(_) => "gauge",
        }
    }

    fn number(&self) -> i64 {
        match self {
            Value::Counter(counter) => counter.get() as i64,
            Value::Gauge(gauge) => gauge.get(),
            Value::Total(total) => *total as i64,
            Value::Level(level) => *level,
        }
    }
}

impl<'a> Row<'a> {
    pub fn new(name: &'a str, help: &'a str, value: impl Into<Value<'a>>) -> Row<'a> {
        Row { name, labels: "", help, value: value.into() }
    }

    /// The same series with labels: `reason="invalid"`.
    pub fn labelled(self, labels: &'a str) -> Row<'a> {
        Row { labels, ..self }
    }
}

/// The Prometheus text exposition format (version 0.0.4): `# HELP` and `# TYPE` once per name,
/// before the first of its rows (rows of one name must follow each other).
fn render_rows(rows: &[Row<'_>]) -> String {
    let mut out = String::new();
    let mut last_name = "";
    for Row { name, labels, help, value } in rows {
        if *name != last_name {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {}", value.kind());
            last_name = name;
        }
        let number = value.number();
        if labels.is_empty() {
            let _ = writeln!(out, "{name} {number}");
        } else {
            let _ = writeln!(out, "{name}{{{labels}}} {number}");
        }
    }
    out
}

impl Metrics {
    /// One row per series, in the order of the page.
    fn table(&self) -> Vec<Row<'_>> {
        const REJECTED: &str = "Events refused at publish, by reason.";
        const DATAGRAMS: &str = "MediaWiki RCFeed datagrams, by result.";
        const HTTP_REFUSED: &str =
            "HTTP connections answered 503 and closed at once, by cap: per address, or no room.";
        vec![
            Row::new(
                "wikiwire_events_published_total",
                "Events stored and announced.",
                &self.events_published,
            ),
            Row::new(
                "wikiwire_events_duplicate_total",
                "Events not stored again because their (wiki, key) was known.",
                &self.events_duplicate,
            ),
            Row::new("wikiwire_publish_rejected_total", REJECTED, &self.rejected_invalid)
                .labelled("reason=\"invalid\""),
            Row::new("wikiwire_publish_rejected_total", REJECTED, &self.rejected_unauthorized)
                .labelled("reason=\"unauthorized\""),
            Row::new("wikiwire_publish_rejected_total", REJECTED, &self.rejected_forbidden)
                .labelled("reason=\"forbidden\""),
            Row::new("wikiwire_publish_rejected_total", REJECTED, &self.rejected_rate)
                .labelled("reason=\"rate_limited\""),
            Row::new("wikiwire_publish_rejected_total", REJECTED, &self.rejected_too_large)
                .labelled("reason=\"too_large\""),
            Row::new(
                "wikiwire_login_failures_total",
                "Logins with a wrong secret (IRC PASS or SASL, HTTP publisher tokens, the XML-RPC secret).",
                &self.login_failures,
            ),
            Row::new(
                "wikiwire_login_refused_total",
                "Logins refused without a look at the secret: their address must wait after repeated failures.",
                &self.login_refused,
            ),
            Row::new(
                "wikiwire_login_forgotten_total",
                "Failed-login records (addresses, networks) forgotten early because the table was full.",
                &self.login_forgotten,
            ),
            Row::new("wikiwire_http_requests_total", "HTTP requests served.", &self.http_requests),
            Row::new("wikiwire_http_connections_refused_total", HTTP_REFUSED, &self.http_refused)
                .labelled("reason=\"address\""),
            Row::new("wikiwire_http_connections_refused_total", HTTP_REFUSED, &self.http_refused_full)
                .labelled("reason=\"full\""),
            Row::new(
                "wikiwire_http_connections",
                "Open HTTP connections (the API's listener and the XML-RPC API's).",
                &self.http_connections,
            ),
            Row::new("wikiwire_sse_clients", "Open Server-Sent Events streams.", &self.sse_clients),
            Row::new(
                "wikiwire_followers_lagged_total",
                "Times an output fell behind the bus and resumed from the store or was dropped.",
                &self.followers_lagged,
            ),
            Row::new("wikiwire_irc_connections", "Open IRC connections.", &self.irc_connections),
            Row::new(
                "wikiwire_irc_refused_total",
                "IRC connections refused by the per-address or total limit.",
                &self.irc_refused,
            ),
            Row::new(
                "wikiwire_irc_sendq_exceeded_total",
                "IRC clients cut off because they did not read fast enough.",
                &self.irc_sendq_exceeded,
            ),
            Row::new(
                "wikiwire_irc_flood_waits_total",
                "Times an IRC client's input was slowed by flood control.",
                &self.irc_flood_waits,
            ),
            Row::new(
                "wikiwire_irc_lines_delivered_total",
                "Event lines queued to IRC clients.",
                &self.irc_lines_delivered,
            ),
            Row::new("wikiwire_irc_published_total", "Events published by PRIVMSG.", &self.irc_published),
            Row::new(
                "wikiwire_irc_publish_waits_total",
                "Times a publisher's IRC input waited for the store (irc.publish_queue was full).",
                &self.irc_publish_waits,
            ),
            Row::new(
                "wikiwire_irc_history_waits_total",
                "Times a row-by-row history query waited for the same address's earlier one.",
                &self.irc_history_waits,
            ),
            Row::new(
                "wikiwire_irc_prefix_channels",
                "IRC channels made from RCFeed prefixes.",
                &self.irc_prefix_channels,
            ),
            Row::new(
                "wikiwire_irc_prefix_refused_total",
                "Changes whose RCFeed prefix made no channel (irc.max_prefix_channels reached, or another wiki's).",
                &self.irc_prefix_refused,
            ),
            Row::new("wikiwire_irc_dcc_open", "HistServ DCC offers and transfers open.", &self.irc_dcc_open),
            Row::new(
                "wikiwire_irc_dcc_refused_total",
                "HistServ DCC requests refused by the per-address or total limit, or for want of a port.",
                &self.irc_dcc_refused,
            ),
            Row::new(
                "wikiwire_irc_dcc_strangers_total",
                "Connections to a DCC port from another address than the asking client's, closed.",
                &self.irc_dcc_strangers,
            ),
            Row::new("wikiwire_relay_connected", "Relays connected to their network.", &self.relay_connected),
            Row::new(
                "wikiwire_relay_lines_total",
                "Events relayed and acknowledged by the other network.",
                &self.relay_lines,
            ),
            Row::new(
                "wikiwire_relay_failures_total",
                "Relay sessions that ended in an error.",
                &self.relay_failures,
            ),
            Row::new("wikiwire_rcfeed_datagrams_total", DATAGRAMS, &self.rcfeed_accepted)
                .labelled("result=\"accepted\""),
            Row::new("wikiwire_rcfeed_datagrams_total", DATAGRAMS, &self.rcfeed_refused)
                .labelled("result=\"refused\""),
            Row::new("wikiwire_rcfeed_datagrams_total", DATAGRAMS, &self.rcfeed_queue_dropped)
                .labelled("result=\"queue_full\""),
            Row::new("wikiwire_rcfeed_datagrams_total", DATAGRAMS, &self.rcfeed_kernel_dropped)
                .labelled("result=\"kernel_dropped\""),
            Row::new(
                "wikiwire_xmlrpc_calls_total",
                "XML-RPC requests from wikis to the notification bot.",
                &self.xmlrpc_calls,
            ),
            Row::new(
                "wikiwire_xmlrpc_faults_total",
                "XML-RPC requests answered with a fault.",
                &self.xmlrpc_faults,
            ),
            Row::new(
                "wikiwire_xmpp_connected",
                "1 while the notification bot has a stream to its XMPP server.",
                &self.xmpp_connected,
            ),
            Row::new(
                "wikiwire_xmpp_connections_total",
                "XMPP streams started (not counting resumptions).",
                &self.xmpp_connections,
            ),
            Row::new(
                "wikiwire_xmpp_delivered_total",
                "Outbox items (notifications, room lines, roster changes) acknowledged by the XMPP server.",
                &self.xmpp_delivered,
            ),
            Row::new("wikiwire_xmpp_outbox", "Items waiting in the bot's outbox.", &self.xmpp_outbox),
            Row::new(
                "wikiwire_xmpp_resources",
                "Online client resources of contacts whose features (forms, OOB) the bot knows.",
                &self.xmpp_resources,
            ),
            Row::new("wikiwire_xmpp_commands_total", "Commands users sent to the bot.", &self.xmpp_commands),
            Row::new(
                "wikiwire_xmpp_wiki_calls_total",
                "XML-RPC calls the bot made to the wiki.",
                &self.xmpp_wiki_calls,
            ),
            Row::new(
                "wikiwire_xmpp_wiki_failures_total",
                "Calls to the wiki that failed (unreachable or malformed answer, not faults).",
                &self.xmpp_wiki_failures,
            ),
        ]
    }

    /// The metrics page: the hub's rows, then `more` (the figures read from the store).
    pub fn render(&self, more: Vec<Row<'_>>) -> String {
        let mut rows = self.table();
        rows.extend(more);
        render_rows(&rows)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sets one distinct number in each counter and gauge of the table (gauges negative, as they
    /// may be) and returns them in the table's order.
    fn number_every_row(metrics: &Metrics) -> Vec<i64> {
        let rows = metrics.table();
        let mut numbers = Vec::new();
        for (index, row) in rows.iter().enumerate() {
            match row.value {
                Value::Counter(counter) => counter.add(1000 + index as u64),
                Value::Gauge(gauge) => gauge.set(-(index as i64)),
                Value::Total(_) | Value::Level(_) => {
                    panic!("{}: the table holds the hub's own series", row.name)
                }
            }
            numbers.push(row.value.number());
        }
        numbers
    }

    #[test]
    fn every_field_is_rendered() {
        // One distinct value per counter and gauge: each must appear on the page.
        let metrics = Metrics::default();
        let numbers = number_every_row(&metrics);
        let page = metrics.render(Vec::new());
        for (index, number) in numbers.iter().enumerate() {
            assert!(page.contains(&format!(" {number}\n")), "row {index} missing");
        }
        // Fields = rows: a field added to the struct but not the table fails here.
        let fields = format!("{metrics:?}").matches(": Counter(").count()
            + format!("{metrics:?}").matches(": Gauge(").count();
        assert_eq!(fields, numbers.len());
    }

    /// The page byte for byte, the store's figures after the hub's series (`metrics_page.txt`; a
    /// new series is added there too).
    #[test]
    fn the_page_is_laid_out_as_prometheus_reads_it() {
        let metrics = Metrics::default();
        number_every_row(&metrics);
        let store = vec![
            Row::new("wikiwire_last_event_id", "The newest event id.", Value::Level(7)),
            Row::new("wikiwire_publish_retries_total", "Appends sent again.", Value::Total(3)),
        ];
        assert_eq!(metrics.render(store), include_str!("metrics_page.txt"));
    }
}
