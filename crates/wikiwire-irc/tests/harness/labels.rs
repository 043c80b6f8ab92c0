//! IRCv3 labeled-response (https://ircv3.net/specs/extensions/labeled-response): one reply
//! carries the label, several come in a `labeled-response` batch, none gives an `ACK`; a
//! client that did not ask for the capability gets no labels.

use crate::support::{Peer, SERVER_NAME, TestServer};

const CAPS: &[&str] = &["labeled-response", "batch", "message-tags"];

/// A server and a client registered as `labels` with labeled-response. The test keeps the
/// server alive (dropping it removes the folder its store is in).
async fn labelled() -> (TestServer, Peer) {
    let test = TestServer::start();
    let mut client = test.connect();
    client.register("labels", CAPS).await;
    (test, client)
}

#[tokio::test(start_paused = true)]
async fn one_reply_carries_the_label() {
    let (_test, mut client) = labelled().await;
    client.send(&["@label=one PING :x"]).await;
    assert_eq!(client.line().await, Some(format!("@label=one :{SERVER_NAME} PONG {SERVER_NAME} x")));
    client.quiet().await;
}

#[tokio::test(start_paused = true)]
async fn no_reply_is_acknowledged() {
    let (_test, mut client) = labelled().await;
    client.send(&["@label=none PONG :x"]).await;
    assert_eq!(client.line().await, Some(format!("@label=none :{SERVER_NAME} ACK")));
    client.quiet().await;
}

#[tokio::test(start_paused = true)]
async fn several_replies_come_in_a_labelled_batch() {
    let (_test, mut client) = labelled().await;
    client.send(&["@label=many VERSION"]).await;
    let start = client.line().await.expect("the batch opens");
    let prefix = format!("@label=many :{SERVER_NAME} BATCH +");
    let reference = start
        .strip_prefix(&prefix)
        .and_then(|rest| rest.strip_suffix(" labeled-response"))
        .unwrap_or_else(|| panic!("not a labeled-response batch: {start}"))
        .to_owned();
    let mut inside = Vec::new();
    loop {
        let line = client.line().await.expect("the batch closes");
        if line == format!(":{SERVER_NAME} BATCH -{reference}") {
            break;
        }
        let tagged = format!("@batch={reference} :{SERVER_NAME} ");
        assert!(line.starts_with(&tagged), "a line of the batch without its tag: {line}");
        inside.push(line);
    }
    assert!(inside[0].contains(" 351 labels "), "RPL_VERSION first: {inside:?}");
    assert!(inside[1..].iter().all(|line| line.contains(" 005 labels ")), "then ISUPPORT: {inside:?}");
    client.quiet().await;
}

#[tokio::test(start_paused = true)]
async fn a_line_refused_as_too_long_still_answers_its_label() {
    let (_test, mut client) = labelled().await;
    let long = format!("@label=long PRIVMSG HistServ :{}", "x".repeat(600));
    client.send(&[&long]).await;
    assert_eq!(
        client.line().await,
        Some(format!("@label=long :{SERVER_NAME} 417 labels :Input line was too long"))
    );
    client.quiet().await;
}

#[tokio::test(start_paused = true)]
async fn without_the_capability_labels_are_ignored() {
    let test = TestServer::start();
    let mut client = test.connect();
    client.register("plain", &["batch", "message-tags"]).await;
    client.send(&["@label=one PING :x", "@label=none PONG :x"]).await;
    assert_eq!(client.line().await, Some(format!(":{SERVER_NAME} PONG {SERVER_NAME} x")));
    client.quiet().await;
}
