//! `wikiwire migrate --to-jetstream`: the SQLite log of a single hub becomes the cluster's stream.
//!
//! The stream is made to start at the oldest retained id, and the retained events are appended in
//! id order in groups of up to 1000; SQLite's ids are contiguous above `pruned_through`, so every
//! event keeps its id, and keyed events go to their key subjects, so every key stays taken.
//! Each group's ids are checked against the originals; any difference stops the migration.

use anyhow::{Context, bail};
use wikiwire_event::Draft;
use wikiwire_store::{JetStreamStore, Query, Retention, SqliteOptions, SqliteStore, Store};

use crate::cli::MigrateArgs;
use crate::cmd::serve::jetstream_options;

/// Events per append: the stream's atomic batch limit.
const GROUP: usize = 1000;

pub async fn run(args: &MigrateArgs) -> anyhow::Result<()> {
    let config = crate::config::Config::load(&args.config)?.hub;
    let Some(cluster) = &config.cluster else {
        bail!("{}: no [cluster] section: nothing to migrate to", args.config.display());
    };
    let path = config.data_dir.join("events.sqlite");
    if !path.exists() {
        bail!("{} does not exist: no SQLite log to migrate", path.display());
    }
    let source = SqliteStore::open(SqliteOptions::new(&path))
        .with_context(|| format!("cannot open {}", path.display()))?;
    let bounds = source.bounds().await?;
    let first_id = if args.no_history { bounds.last_id + 1 } else { bounds.pruned_through + 1 };
    let retention = Retention { max_age: config.store.max_age, max_events: config.store.max_events };
    let mut options = jetstream_options(&config, cluster, retention);
    options.first_sequence = (first_id > 1).then_some(first_id);
    let target = JetStreamStore::open(options).await.context("cannot open the stream")?;
    let result = copy(&source, &target, first_id, bounds.last_id, args.no_history).await;
    target.close().await;
    source.close().await;
    let copied = result?;
    println!(
        "migrated {copied} events from {} into stream WIKIWIRE; the next id is {}",
        path.display(),
        bounds.last_id + 1
    );
    println!("now start every node with this [cluster] section; the SQLite file is no longer used");
    Ok(())
}

async fn copy(
    source: &SqliteStore,
    target: &JetStreamStore,
    first_id: u64,
    last_id: u64,
    no_history: bool,
) -> anyhow::Result<u64> {
    let (_, stream_last, messages) = target.stream_state().await?;
    if messages > 0 {
        bail!("the stream already holds {messages} events (up to {stream_last}): it is migrated, or in use");
    }
    if stream_last + 1 != first_id {
        bail!(
            "the empty stream would number from {}, not from {first_id}: a node made it before the migration; \
             delete it (`nats stream rm WIKIWIRE`) and run the migration again",
            stream_last + 1
        );
    }
    if no_history {
        return Ok(0);
    }
    let mut after = first_id - 1;
    let mut copied = 0u64;
    while after < last_id {
        let page = source.query(Query::after(after, GROUP)).await?;
        if page.events.is_empty() {
            break;
        }
        let expected: Vec<u64> = page.events.iter().map(|event| event.id).collect();
        if expected.first() != Some(&(after + 1)) || expected.windows(2).any(|pair| pair[1] != pair[0] + 1) {
            bail!("the SQLite log has a hole after id {after}: ids could not be kept");
        }
        let drafts: Vec<Draft> = page.events.into_iter().map(Draft::from_committed).collect();
        let appended = target.append(drafts).await?;
        let got: Vec<u64> = appended.iter().map(|appended| appended.event.id).collect();
        if got != expected || appended.iter().any(|appended| appended.duplicate) {
            bail!(
                "the stream numbered events {:?}.. as {:?}..: stopped",
                &expected[..1],
                &got[..1.min(got.len())]
            );
        }
        after = *expected.last().unwrap_or(&after);
        copied += expected.len() as u64;
        if copied % 10_000 < GROUP as u64 {
            eprintln!("  {copied} events copied (up to id {after})");
        }
    }
    Ok(copied)
}
