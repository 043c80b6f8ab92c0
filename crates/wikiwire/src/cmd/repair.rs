//! `wikiwire repair`: a damaged SQLite log is salvaged into a new file (see
//! `wikiwire_store::salvage`); the damaged file is kept beside it, renamed.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use wikiwire_hub::Config;

pub fn run(config_path: Option<&Path>) -> anyhow::Result<()> {
    let config = match config_path {
        Some(path) => crate::config::Config::load(path)?.hub,
        None => Config::default(),
    };
    if config.cluster.is_some() {
        bail!(
            "this node runs in a cluster: its log is the NATS stream, and a damaged local replica is set aside \
             and rebuilt when the node starts; nothing to repair here"
        );
    }
    let path = config.data_dir.join("events.sqlite");
    if !path.exists() {
        bail!("{} does not exist: no log to repair", path.display());
    }
    match wikiwire_store::verify(&path) {
        Ok(()) => {
            println!("{}: no damage found; nothing to repair", path.display());
            return Ok(());
        }
        Err(damage) => println!("{}: damaged: {damage}", path.display()),
    }
    let repaired = sibling(&path, ".repairing");
    remove_if_present(&repaired)?;
    for suffix in ["-wal", "-shm"] {
        remove_if_present(&sibling(&repaired, suffix))?;
    }
    let started = std::time::Instant::now();
    let report = wikiwire_store::salvage(&path, &repaired)
        .with_context(|| format!("cannot salvage {}", path.display()))?;
    println!(
        "read {} rows in {:.1}s; {} of them were damage (unreadable, not the event their id names, out of id \
         order, or past the log's last id) and were passed over",
        report.examined,
        started.elapsed().as_secs_f64(),
        report.damaged_rows
    );
    if report.walk_cut {
        println!(
            "WARNING: the file read back more rows than it can hold; the walk stopped there, and what it had not \
             reached is counted lost"
        );
    }
    if let Err(damage) = wikiwire_store::verify(&repaired) {
        bail!(
            "the salvaged copy {} is not sound ({damage}); the damaged file was left as it is",
            repaired.display()
        );
    }
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs());
    let kept = sibling(&path, &format!(".damaged-{stamp}"));
    for suffix in ["", "-wal", "-shm"] {
        let from = sibling(&path, suffix);
        if from.exists() {
            std::fs::rename(&from, sibling(&kept, suffix))
                .with_context(|| format!("cannot move {} aside", from.display()))?;
        }
    }
    std::fs::rename(&repaired, &path)
        .with_context(|| format!("cannot put the repaired log in place at {}", path.display()))?;

    println!("recovered {} events; the log ends at id {}", report.recovered, report.last_id);
    if report.lost.is_empty() {
        println!("no event was lost");
    } else {
        let ranges: Vec<String> = report
            .lost
            .iter()
            .map(|&(from, to)| if from == to { from.to_string() } else { format!("{from}-{to}") })
            .collect();
        println!(
            "LOST {} events, ids {}: readers get a gap at these ids; restore them from a backup if you have one",
            report.lost_count(),
            ranges.join(", ")
        );
    }
    if !report.last_id_known {
        println!(
            "WARNING: the damaged file's record of its last id was unreadable (or beyond what the file can hold): \
             if events after {} were acknowledged, their ids will be handed out again; restore from a backup \
             instead if that matters",
            report.last_id
        );
    }
    if report.cursors_unreadable {
        println!(
            "WARNING: the relays' cursors were unreadable: each relay starts again from the newest event"
        );
    }
    println!("{} cursors kept; the damaged file is kept as {}", report.cursors, kept.display());
    println!("start the hub again");
    Ok(())
}

fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

fn remove_if_present(path: &Path) -> anyhow::Result<()> {
    match std::fs::remove_file(path) {
        Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
            Err(error).with_context(|| format!("cannot remove {}", path.display()))
        }
        _ => Ok(()),
    }
}
