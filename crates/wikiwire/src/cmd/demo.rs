//! `wikiwire demo`: the hub plus a simulated wiki farm that keeps editing, so a newcomer sees the
//! live page, the IRC channels and the feeds fill at once. Without `--config` it runs two demo
//! wikis (a MoinMoin and a MediaWiki, with links that look real) on loopback with its data in
//! `./wikiwire-demo-data`; with `--config` it edits every configured wiki, as its publisher.
//! The simulated edits go through `Hub::publish` like any other publisher's.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use wikiwire_event::{Action, Draft, Engine, Event, Timestamp};
use wikiwire_hub::Hub;
use wikiwire_hub::config::PublisherConfig;

use crate::cmd::serve;
use crate::config::Config;

/// Pages, users and comments in the languages wikis are written in.
const PAGES: &[&str] = &[
    "FrontPage",
    "Help/Editing Pages",
    "Recent Changes",
    "BadContent",
    "Sandbox",
    "Installation Guide",
    "Hilfe/Seiten bearbeiten",
    "Startseite",
    "Page d'accueil",
    "עמוד ראשי",
    "ויקי/עזרה",
    "メインページ",
    "ヘルプ:編集",
    "首页",
    "Главная страница",
    "Página principal",
    "Release Notes 2.0",
    "Category:Howto",
    "User:Alice/Notes",
    "Project:Roadmap",
];
const USERS: &[&str] =
    &["Alice", "Bob", "Chloé", "Dmitri", "Eli", "פלוני אלמוני", "山田太郎", "Jürgen", "Ngozi", "192.0.2.44"];
const COMMENTS: &[&str] = &[
    "fixed a typo",
    "added a section on installation",
    "revert vandalism",
    "Tippfehler korrigiert",
    "תיקון קישורים",
    "誤字を修正",
    "update links",
    "new screenshots",
    "",
    "copyedit",
    "spam links removed from BadContent",
    "translated from English",
];
const FILES: &[&str] = &["diagram.png", "release-notes.pdf", "logo.svg", "תמונה.jpg"];

pub async fn run(config_path: Option<&Path>) -> anyhow::Result<()> {
    let config = match config_path {
        Some(path) => crate::config::Config::load(path)?,
        None => demo_config(),
    };
    let wikis: Vec<(String, String)> = config
        .hub
        .publishers
        .iter()
        .flat_map(|publisher| publisher.wikis.iter().map(|wiki| (publisher.name.clone(), wiki.clone())))
        .collect();
    let wikis =
        if wikis.is_empty() { vec![(serve::LOCAL.to_owned(), serve::LOCAL.to_owned())] } else { wikis };
    let running = serve::start(config).await?;
    serve::announce(&running);
    println!();
    println!(
        "A simulated wiki farm is editing {}.",
        wikis.iter().map(|(_, wiki)| wiki.as_str()).collect::<Vec<_>>().join(" and ")
    );
    println!("  Watch:  http://{}/  (live page)", running.http);
    if let Some(irc) = running.irc {
        let (_, wiki) = &wikis[0];
        println!(
            "  IRC:    weechat -r '/server add demo {}/{} -notls -autojoin=#{wiki}; /connect demo'",
            irc.ip(),
            irc.port()
        );
        println!("          or irssi -c {} -p {}, then /join #{wiki}", irc.ip(), irc.port());
        println!("          then /join #{wiki}.events for the packed lines, /msg HistServ help for history");
    }
    println!(
        "  Feeds:  http://{}/feeds/all.atom   SSE: curl -N http://{}/api/v1/stream",
        running.http, running.http
    );
    println!("Stop it with Ctrl-C.");
    let simulation = tokio::spawn(simulate(Arc::clone(&running.hub), wikis));
    serve::run_until_signal(running).await;
    simulation.abort();
    Ok(())
}

/// Two demo wikis with tokens made for this run (the demo keeps no secrets).
fn demo_config() -> Config {
    let mut config = Config::default();
    config.hub.data_dir = PathBuf::from("wikiwire-demo-data");
    let publisher = |name: &str, wiki: &str, engine: Engine, base: &str| PublisherConfig {
        name: name.into(),
        token: Some(wikiwire_hub::token::generate()),
        token_hash: None,
        wikis: vec![wiki.into()],
        base_url: Some(base.into()),
        engine,
        links: Default::default(),
        allow_weak_token: false,
    };
    config.hub.publishers = vec![
        publisher("moin", "MoinDemo", Engine::Moin, "https://moin.example.org/"),
        publisher("mediawiki", "WikiDemo", Engine::Mediawiki, "https://wiki.example.org/w/"),
    ];
    config
}

/// Edits forever: an event every half second to three seconds, on a random wiki.
async fn simulate(hub: Arc<Hub>, wikis: Vec<(String, String)>) {
    let mut random = Random::new();
    let mut revisions = std::collections::HashMap::<(usize, usize), u64>::new();
    loop {
        tokio::time::sleep(Duration::from_millis(500 + random.below(2500))).await;
        let which = random.below(wikis.len() as u64) as usize;
        let (publisher_name, wiki) = &wikis[which];
        let Some(publisher) = hub.publishers().by_name(publisher_name) else { return };
        let page_index = random.below(PAGES.len() as u64) as usize;
        let revision = revisions.entry((which, page_index)).or_insert_with(|| 1 + random.below(40));
        let roll = random.below(100);
        let action = match roll {
            0..=69 => "page_changed",
            70..=81 => "page_created",
            82..=87 => "file_attached",
            88..=92 => "page_renamed",
            93..=96 => "page_deleted",
            _ => "user_created",
        };
        let mut event =
            Event::new(wiki, Action::parse(action).expect("a canonical action"), Timestamp::now());
        let user = USERS[random.below(USERS.len() as u64) as usize];
        event.user = Some(user.to_owned());
        match action {
            "user_created" => {}
            "file_attached" => {
                event.page = Some(PAGES[page_index].to_owned());
                event.file = Some(FILES[random.below(FILES.len() as u64) as usize].to_owned());
                event.size = Some(1_000 + random.below(900_000));
            }
            "page_renamed" => {
                event.old_name = Some(PAGES[page_index].to_owned());
                event.page = Some(format!("{} (archive)", PAGES[page_index]));
            }
            _ => {
                event.page = Some(PAGES[page_index].to_owned());
                let comment = COMMENTS[random.below(COMMENTS.len() as u64) as usize];
                event.comment = Some(comment.to_owned()).filter(|comment| !comment.is_empty());
                event.old_revision = Some(revision.to_string());
                *revision += 1;
                event.revision = Some(revision.to_string());
                event.minor = random.below(5) == 0;
                event.bot = user == "192.0.2.44" && random.below(2) == 0;
            }
        }
        let draft = match Draft::validate(event) {
            Ok(draft) => draft,
            Err(error) => {
                tracing::error!(%error, "the demo made an invalid event");
                continue;
            }
        };
        if let Err(error) = hub.publish(&publisher, vec![draft]).await {
            tracing::warn!(%error, "the demo could not publish");
        }
    }
}

/// A small xorshift generator, seeded from the operating system: the demo needs variety, not
/// cryptography.
struct Random(u64);

impl Random {
    fn new() -> Random {
        let mut seed = [0u8; 8];
        let _ = getrandom::fill(&mut seed);
        Random(u64::from_le_bytes(seed) | 1)
    }

    fn below(&mut self, bound: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % bound.max(1)
    }
}
