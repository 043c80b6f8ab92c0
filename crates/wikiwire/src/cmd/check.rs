//! `wikiwire config check`: every mistake in the file, each on its own line.

use std::path::Path;

pub fn run(path: Option<&Path>) -> anyhow::Result<()> {
    let Some(path) = path else {
        println!("no configuration file given: `wikiwire serve` uses the embedded defaults");
        return Ok(());
    };
    let config = crate::config::Config::load(path)?;
    let warnings = config.warnings();
    let config = config.hub;
    let wikis: usize = config.publishers.iter().map(|publisher| publisher.wikis.len()).sum();
    for warning in warnings {
        println!("warning: {warning}");
    }
    let log = match &config.cluster {
        Some(cluster) => format!(
            "log in NATS JetStream as node {:?} ({} servers, {} replicas)",
            cluster.node,
            cluster.nats.len(),
            cluster.replicas
        ),
        None => "log in SQLite".to_owned(),
    };
    println!(
        "{}: ok ({} publishers, {wikis} wikis, HTTP on {}, data in {}, {log})",
        path.display(),
        config.publishers.len(),
        config.http.listen,
        config.data_dir.display()
    );
    Ok(())
}
