//! `[cluster]`: present, the node keeps its log in a NATS JetStream stream shared with the other
//! hub nodes; absent, in SQLite on this machine.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

/// The store's defaults, written once there.
pub use wikiwire_store::jetstream::{DEFAULT_LEASE_TTL, DEFAULT_REPLICAS};

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// This node's unique, stable name: it appears in message ids and logs.
    pub node: String,
    /// `nats://host:port` (or `tls://host:port`) of the NATS servers; one is enough to find the
    /// rest, all of them survive the loss of one.
    pub nats: Vec<String>,
    /// Copies of the stream: 3 (survives the loss of a NATS server) or 1 (a single server).
    #[serde(default = "default_replicas")]
    pub replicas: usize,
    /// A NATS credentials file (`.creds`: user JWT and nkey seed), for NATS in operator mode.
    pub credentials: Option<PathBuf>,
    /// A file holding this node's NKEY seed (`SU…`), whose public key (`U…`) the NATS
    /// configuration lists with the hubs' permissions.
    pub nkey_file: Option<PathBuf>,
    /// CA certificates (PEM) for NATS over TLS; set, TLS is required.
    pub ca_file: Option<PathBuf>,
    /// How long a node may go without renewing the lease of a job it runs (each relay, the bot)
    /// before another node takes the job over.
    #[serde(default = "default_lease_ttl", deserialize_with = "super::duration")]
    pub lease_ttl: Duration,
}

fn default_replicas() -> usize {
    DEFAULT_REPLICAS
}

fn default_lease_ttl() -> Duration {
    DEFAULT_LEASE_TTL
}

impl ClusterConfig {
    /// Every problem, each as one sentence starting with the key.
    pub fn check(&self, problems: &mut Vec<String>) {
        let node_ok = !self.node.is_empty()
            && self.node.len() <= 32
            && self.node.bytes().all(|byte| byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_');
        if !node_ok {
            problems.push(format!(
                "cluster.node: {:?}: 1 to 32 letters, digits, '-' or '_', unique among the hub nodes",
                self.node
            ));
        }
        if self.nats.is_empty() {
            problems
                .push("cluster.nats: name at least one NATS server, e.g. \"nats://127.0.0.1:4222\"".into());
        }
        for url in &self.nats {
            if let Err(reason) = check_nats_url(url) {
                problems.push(format!("cluster.nats: {url:?}: {reason}"));
            }
        }
        if !matches!(self.replicas, 1 | 3) {
            problems.push(format!(
                "cluster.replicas: {}: 1 (one NATS server) or 3 (survives the loss of one)",
                self.replicas
            ));
        }
        if self.lease_ttl < Duration::from_secs(2) || self.lease_ttl > Duration::from_secs(300) {
            problems.push(format!(
                "cluster.lease_ttl: {:?}: between 2s and 5m (a dead node's jobs move after about this long)",
                self.lease_ttl
            ));
        }
        for (key, path) in
            [("credentials", &self.credentials), ("nkey_file", &self.nkey_file), ("ca_file", &self.ca_file)]
        {
            if let Some(path) = path
                && let Err(error) = std::fs::metadata(path)
            {
                problems.push(format!("cluster.{key}: {}: {error}", path.display()));
            }
        }
        if self.credentials.is_some() && self.nkey_file.is_some() {
            problems.push("cluster.nkey_file: set credentials or nkey_file, not both".into());
        }
        if let Some(path) = &self.nkey_file
            && let Ok(seed) = std::fs::read_to_string(path)
            && !seed.trim_start().starts_with("SU")
        {
            problems.push(format!(
                "cluster.nkey_file: {}: expected a user NKEY seed (a line starting with SU)",
                path.display()
            ));
        }
    }
}

impl ClusterConfig {
    /// What works but should not stay so.
    pub fn warnings(&self, warnings: &mut Vec<String>) {
        if self.nkey_file.is_none() && self.credentials.is_none() {
            warnings.push(
                "cluster: neither nkey_file nor credentials: the NATS servers must let anyone in, and whoever \
                 reaches them can write the log or delete it; docs/deploy/nats.conf lets only the hubs' keys \
                 write (operator guide, \"Who may write the log\")"
                    .into(),
            );
        }
    }
}

fn check_nats_url(url: &str) -> Result<(), String> {
    let Some((scheme, rest)) = url.split_once("://") else {
        return Err("expected nats://host:port".into());
    };
    if !matches!(scheme, "nats" | "tls") {
        return Err(format!("scheme {scheme:?}: nats or tls"));
    }
    let host_port = rest.rsplit_once('@').map_or(rest, |(_, host_port)| host_port);
    match host_port.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok_and(|port| port > 0) => Ok(()),
        None if !host_port.is_empty() && !host_port.contains('/') => Ok(()),
        _ => Err("expected nats://host:port".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(text: &str) -> Vec<String> {
        let config: ClusterConfig = toml::from_str(text).expect("parses");
        let mut problems = Vec::new();
        config.check(&mut problems);
        problems
    }

    #[test]
    fn a_good_section_has_no_problem() {
        assert!(
            problems("node = \"hub-a\"\nnats = [\"nats://10.0.0.1:4222\", \"tls://n2:4222\"]").is_empty()
        );
    }

    #[test]
    fn every_mistake_is_named() {
        let found = problems(
            "node = \"hub a\"\nnats = [\"http://x:1\", \"nats://x:0\"]\nreplicas = 2\nca_file = \"/nonexistent/ca.pem\"\nlease_ttl = \"1s\"",
        );
        let text = found.join("\n");
        for key in [
            "cluster.node",
            "scheme \"http\"",
            "nats://x:0",
            "cluster.replicas",
            "cluster.ca_file",
            "cluster.lease_ttl",
        ] {
            assert!(text.contains(key), "{key} not in {text}");
        }
        assert!(problems("node = \"a\"\nnats = []").iter().any(|problem| problem.contains("at least one")));
    }

    #[test]
    fn a_cluster_without_a_key_is_warned_about() {
        let warned = |text: &str| {
            let config: ClusterConfig = toml::from_str(text).expect("parses");
            let mut warnings = Vec::new();
            config.warnings(&mut warnings);
            warnings
        };
        let open = warned("node = \"a\"\nnats = [\"nats://n:4222\"]");
        assert!(open.iter().any(|warning| warning.contains("neither nkey_file nor credentials")), "{open:?}");
        assert!(warned("node = \"a\"\nnats = [\"nats://n:4222\"]\nnkey_file = \"/x\"").is_empty());
    }

    #[test]
    fn an_nkey_file_must_hold_a_user_seed_and_stand_alone() {
        let directory = tempfile::tempdir().unwrap();
        let (seed, public) = (directory.path().join("hub.nk"), directory.path().join("hub.pub"));
        std::fs::write(&seed, "SUANOTAREALSEED\nUNOTAREALKEY\n").unwrap();
        std::fs::write(&public, "UNOTAREALKEY\n").unwrap();
        let section = |extra: String| problems(&format!("node = \"a\"\nnats = [\"nats://n:4222\"]\n{extra}"));
        assert!(section(format!("nkey_file = {:?}", seed.display().to_string())).is_empty());
        let found = section(format!("nkey_file = {:?}", public.display().to_string()));
        assert!(found.iter().any(|problem| problem.contains("a user NKEY seed")), "{found:?}");
        let both = section(format!(
            "nkey_file = {:?}\ncredentials = {:?}",
            seed.display().to_string(),
            seed.display().to_string()
        ));
        assert!(both.iter().any(|problem| problem.contains("not both")), "{both:?}");
    }
}
