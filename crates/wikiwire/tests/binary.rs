//! The `wikiwire` binary as an operator runs it: a real process, real signals, files on disk.
//! SPEC §8: an acknowledged event is never lost, even to `kill -9`.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::json;

const TOKEN: &str = "wwt_binary-test-publisher-token";

struct Hub {
    child: Child,
    url: String,
}

fn write_config(directory: &Path) -> std::path::PathBuf {
    let path = directory.join("wikiwire.toml");
    let hash = wikiwire_hub::token::format_hash(&wikiwire_hub::token::hash(TOKEN));
    std::fs::write(
        &path,
        format!(
            "data_dir = {:?}\n[http]\nlisten = \"127.0.0.1:0\"\n[irc]\nlisten = \"127.0.0.1:0\"\n[[publisher]]\nname = \"moin\"\ntoken_hash = \"{hash}\"\nwikis = [\"MoinMaster\"]\nengine = \"moin\"\nbase_url = \"https://master.example/\"\n",
            directory.join("data")
        ),
    )
    .unwrap();
    path
}

/// Starts `wikiwire serve` and waits for its "HTTP" line.
fn serve(directory: &Path, config: Option<&Path>) -> Hub {
    let mut command = Command::new(env!("CARGO_BIN_EXE_wikiwire"));
    command.arg("serve").current_dir(directory).stdout(Stdio::piped()).stderr(Stdio::inherit());
    if let Some(config) = config {
        command.arg("--config").arg(config);
    }
    let mut child = command.spawn().expect("wikiwire starts");
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let deadline = Instant::now() + Duration::from_secs(30);
    let url = loop {
        assert!(Instant::now() < deadline, "no HTTP line in time");
        let line = lines.next().expect("wikiwire printed its addresses").unwrap();
        if let Some(url) = line.trim().strip_prefix("HTTP  ") {
            break url.trim_end_matches('/').to_owned();
        }
    };
    // Keep draining stdout so the child never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    Hub { child, url }
}

async fn publish(client: &reqwest::Client, url: &str, page: &str) -> Result<u64, reqwest::Error> {
    let response = client
        .post(format!("{url}/api/v1/events"))
        .bearer_auth(TOKEN)
        .json(&json!({"wiki": "MoinMaster", "action": "SAVE", "page": page, "user": "u"}))
        .send()
        .await?
        .error_for_status()?;
    let answer: serde_json::Value = response.json().await?;
    Ok(answer["ids"][0].as_u64().expect("an id"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_events_survive_kill_9() {
    let directory = tempfile::tempdir().unwrap();
    let config = write_config(directory.path());
    let mut hub = serve(directory.path(), Some(&config));
    let acknowledged: Arc<Mutex<Vec<(u64, String)>>> = Arc::default();
    let publishers: Vec<_> = (0..4)
        .map(|worker| {
            let url = hub.url.clone();
            let acknowledged = Arc::clone(&acknowledged);
            tokio::spawn(async move {
                let client = reqwest::Client::new();
                for n in 0.. {
                    let page = format!("Worker {worker} page {n}");
                    match publish(&client, &url, &page).await {
                        Ok(id) => acknowledged.lock().unwrap().push((id, page)),
                        Err(_) => return,
                    }
                }
            })
        })
        .collect();
    while acknowledged.lock().unwrap().len() < 300 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    hub.child.kill().unwrap(); // SIGKILL: no chance to flush anything.
    hub.child.wait().unwrap();
    for publisher in publishers {
        publisher.await.unwrap();
    }
    let acknowledged = acknowledged.lock().unwrap().clone();

    let mut restarted = serve(directory.path(), Some(&config));
    let client = reqwest::Client::new();
    for (id, page) in &acknowledged {
        let event: serde_json::Value = client
            .get(format!("{}/api/v1/events/{id}", restarted.url))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(event["page"].as_str(), Some(page.as_str()), "event {id} lost after kill -9");
    }
    let highest = acknowledged.iter().map(|(id, _)| *id).max().unwrap();
    let next = publish(&client, &restarted.url, "After restart").await.unwrap();
    assert!(next > highest, "id {next} reused after restart (highest acknowledged {highest})");
    restarted.child.kill().unwrap();
    restarted.child.wait().unwrap();
}

#[tokio::test]
async fn sigterm_ends_open_streams_and_exits_cleanly() {
    stop_with_signal("-TERM").await;
}

#[tokio::test]
async fn sigint_ends_open_streams_and_exits_cleanly() {
    stop_with_signal("-INT").await;
}

async fn stop_with_signal(signal: &str) {
    let directory = tempfile::tempdir().unwrap();
    let config = write_config(directory.path());
    let mut hub = serve(directory.path(), Some(&config));
    let response = reqwest::get(format!("{}/api/v1/stream?since=0", hub.url)).await.unwrap();
    let mut body = response.bytes_stream();
    body.next().await.expect("the stream opened").unwrap();
    let started = Instant::now();
    let status = Command::new("kill").args([signal, &hub.child.id().to_string()]).status().unwrap();
    assert!(status.success());
    while let Some(chunk) =
        tokio::time::timeout(Duration::from_secs(10), body.next()).await.expect("the stream ended in time")
    {
        if chunk.is_err() {
            break;
        }
    }
    let exit = hub.child.wait().unwrap();
    assert!(exit.success(), "exit status {exit}");
    assert!(started.elapsed() < Duration::from_secs(10));
    // The store was closed properly: the WAL was folded into the database.
    let wal = directory.path().join("data/events.sqlite-wal");
    assert!(!wal.exists() || std::fs::metadata(&wal).unwrap().len() == 0);
}

#[tokio::test]
async fn with_no_configuration_a_local_publisher_works_at_once() {
    let directory = tempfile::tempdir().unwrap();
    // Port 8080 may be taken on a shared machine; the default data directory is what matters.
    std::fs::write(
        directory.path().join("port0.toml"),
        "[http]\nlisten = \"127.0.0.1:0\"\n[irc]\nlisten = \"127.0.0.1:0\"\n",
    )
    .unwrap();
    let mut hub = serve(directory.path(), Some(&directory.path().join("port0.toml")));
    let token_file = directory.path().join("wikiwire-data/local.token");
    assert!(token_file.exists(), "serve made ./wikiwire-data/local.token");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&token_file).unwrap().permissions().mode() & 0o777, 0o600);
    }
    let output = publish_page_changed(
        directory.path(),
        &hub.url,
        &["--page", "Front Page", "--user", "Alice", "--field", "origin=cli"],
    );
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), "1");
    let event: serde_json::Value =
        reqwest::get(format!("{}/api/v1/events/1", hub.url)).await.unwrap().json().await.unwrap();
    assert_eq!(event["extra"]["origin"], "cli");

    let refused = publish_page_changed(directory.path(), &hub.url, &["--user", "Alice"]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("page: required for page_changed"));

    let mut stdin_publish = Command::new(env!("CARGO_BIN_EXE_wikiwire"))
        .args(["publish", "--url", &hub.url, "--json", "-"])
        .current_dir(directory.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    stdin_publish.stdin.take().unwrap().write_all(br#"[{"wiki":"local","action":"SAVE","page":"A","user":"u"},{"wiki":"local","action":"SAVE","page":"B","user":"u"}]"#).unwrap();
    let output = stdin_publish.wait_with_output().unwrap();
    assert_eq!(String::from_utf8_lossy(&output.stdout), "2\n3\n");
    hub.child.kill().unwrap();
    hub.child.wait().unwrap();
}

/// `wikiwire publish --url URL --wiki local --action page_changed` with `fields` after it, run in
/// `directory` so that it finds the local token there.
fn publish_page_changed(directory: &Path, url: &str, fields: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_wikiwire"))
        .args(["publish", "--url", url, "--wiki", "local", "--action", "page_changed"])
        .args(fields)
        .current_dir(directory)
        .output()
        .unwrap()
}

fn config_check(path: &Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_wikiwire"))
        .args(["config", "check", "--config"])
        .arg(path)
        .output()
        .unwrap()
}

#[test]
fn config_check_reports_every_mistake() {
    let directory = tempfile::tempdir().unwrap();
    let good = write_config(directory.path());
    let output = config_check(&good);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(String::from_utf8_lossy(&output.stdout).contains("ok (1 publishers, 1 wikis"));

    let typo = directory.path().join("typo.toml");
    std::fs::write(&typo, "[http]\nlisten = \"127.0.0.1:0\"\npublic_ur = \"http://x\"\n").unwrap();
    let output = config_check(&typo);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("line 3") && stderr.contains("public_ur"), "{stderr}");

    let wrong = directory.path().join("wrong.toml");
    std::fs::write(&wrong, "[[publisher]]\nname = \"a b\"\ntoken = \"short\"\nwikis = [\"x.y\"]\n").unwrap();
    let output = config_check(&wrong);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    for expected in ["name:", "token: at least", "wikis: \"x.y\""] {
        assert!(stderr.contains(expected), "missing {expected:?} in {stderr}");
    }

    let weak = directory.path().join("weak.toml");
    std::fs::write(&weak, "[[publisher]]\nname = \"moin\"\ntoken = \"abcdefghijklmnop\"\nwikis = [\"W\"]\n")
        .unwrap();
    let output = config_check(&weak);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "a weak plaintext token is an error");
    assert!(stderr.contains("publisher[0] (\"moin\"): token: easy to guess: only 16 characters"), "{stderr}");
    assert!(stderr.contains("allow_weak_token = true"), "{stderr}");
    std::fs::write(
        &weak,
        "[[publisher]]\nname = \"moin\"\ntoken = \"abcdefghijklmnop\"\nwikis = [\"W\"]\nallow_weak_token = true\n",
    )
    .unwrap();
    let output = config_check(&weak);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "allowed explicitly, a weak token is a warning");
    assert!(
        stdout.contains("warning: publisher[0] (\"moin\"): token: easy to guess (only 16 characters"),
        "{stdout}"
    );

    let cluster = directory.path().join("cluster.toml");
    std::fs::write(&cluster, "[cluster]\nnode = \"hub a\"\nnats = [\"http://n1:4222\"]\nreplicas = 2\n")
        .unwrap();
    let output = config_check(&cluster);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    for expected in ["cluster.node", "cluster.nats: \"http://n1:4222\"", "cluster.replicas: 2"] {
        assert!(stderr.contains(expected), "missing {expected:?} in {stderr}");
    }
    let mut text = std::fs::read_to_string(&good).unwrap();
    text.push_str(
        "\n[cluster]\nnode = \"hub-a\"\nnats = [\"nats://10.0.0.1:4222\", \"nats://10.0.0.2:4222\"]\n",
    );
    std::fs::write(&cluster, text).unwrap();
    let output = config_check(&cluster);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("log in NATS JetStream as node \"hub-a\" (2 servers, 3 replicas)"), "{stdout}");

    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/wikiwire.example.toml");
    let output = config_check(&example);
    assert!(
        output.status.success(),
        "the documented example must pass: {}",
        String::from_utf8_lossy(&output.stderr)
    );

    let missing = Command::new(env!("CARGO_BIN_EXE_wikiwire"))
        .args(["config", "check", "--config", "/nonexistent.toml"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&missing.stderr).contains("cannot read /nonexistent.toml"));
}

#[test]
fn token_prints_a_token_and_its_hash() {
    let output =
        Command::new(env!("CARGO_BIN_EXE_wikiwire")).args(["token", "--name", "moin"]).output().unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    let token = text.lines().find_map(|line| line.strip_prefix("token:      ")).unwrap();
    let hash = text.lines().find_map(|line| line.strip_prefix("token_hash: ")).unwrap();
    assert!(wikiwire_hub::token::verify(token, &wikiwire_hub::token::parse_hash(hash).unwrap()));
    assert!(text.contains("name = \"moin\""));
}
