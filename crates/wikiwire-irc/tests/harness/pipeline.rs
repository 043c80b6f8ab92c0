//! The publisher's pipeline: lines read on while earlier events are committed, yet every line
//! answered in the order it was sent. On the real clock: the store commits on its own thread,
//! and a paused clock would jump to the server's PING while the runtime waits for it.

use std::time::Duration;

use crate::support::TestServer;

fn event(page: &str) -> String {
    format!("wiki=MoinMaster&action=SAVE&page={page}&user=Alice")
}

/// The `label` tag and the `msgid` tag of a line, if it has them.
fn tags(line: &str) -> (Option<&str>, Option<u64>) {
    let Some(tags) = line.strip_prefix('@').and_then(|rest| rest.split(' ').next()) else {
        return (None, None);
    };
    let tag = |name: &str| tags.split(';').find_map(|tag| tag.strip_prefix(name)?.strip_prefix('='));
    (tag("label"), tag("msgid").and_then(|id| id.parse().ok()))
}

async fn answers_in_order(publish_queue: Option<usize>) {
    let test = TestServer::with(|irc| irc.publish_queue = publish_queue.unwrap_or(irc.publish_queue));
    let mut publisher = test.connect();
    publisher.register_publisher(&["echo-message", "message-tags", "labeled-response"]).await;
    let mut lines = Vec::new();
    let mut labels = Vec::new();
    for n in 0..60 {
        let label = match n {
            20 => "bad".to_owned(),
            40 => "ping".to_owned(),
            _ => format!("l{n}"),
        };
        lines.push(match n {
            // No page: not a valid event, refused before it is queued.
            20 => {
                format!("@label={label} PRIVMSG #MoinMaster.events :wiki=MoinMaster&action=SAVE&user=Alice")
            }
            // Not an event at all: waits until the events before it are answered.
            40 => format!("@label={label} PING :between"),
            _ => format!("@label={label} PRIVMSG #MoinMaster.events :{}", event(&format!("Piped{n}"))),
        });
        labels.push(label);
    }
    let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
    publisher.send(&lines).await;
    let mut answers = Vec::new();
    while answers.len() < labels.len() {
        let line = tokio::time::timeout(Duration::from_secs(30), publisher.line())
            .await
            .expect("every line is answered")
            .expect("the connection stays open");
        let (label, msgid) = tags(&line);
        if let Some(label) = label {
            answers.push((label.to_owned(), line.clone(), msgid));
        }
    }
    let answered: Vec<&str> = answers.iter().map(|(label, _, _)| label.as_str()).collect();
    assert_eq!(answered, labels, "answers come in the order of the lines");
    assert!(answers[20].1.contains(" FAIL PRIVMSG INVALID_EVENT "), "{}", answers[20].1);
    assert!(answers[40].1.contains(" PONG "), "{}", answers[40].1);
    let ids: Vec<u64> = answers
        .iter()
        .filter(|(_, line, _)| line.contains(" PRIVMSG #"))
        .map(|(_, line, id)| id.unwrap_or_else(|| panic!("an echo without its msgid: {line}")))
        .collect();
    assert_eq!(ids.len(), 58, "every valid event is echoed with its id");
    assert!(ids.windows(2).all(|pair| pair[0] < pair[1]), "ids increase in the order sent: {ids:?}");
    let bounds = test.hub.store().bounds().await.unwrap();
    assert_eq!(bounds.last_id, *ids.last().unwrap(), "every echoed event is stored");
}

#[tokio::test]
async fn a_publishers_lines_are_answered_in_the_order_sent() {
    answers_in_order(None).await;
}

/// A queue of one: the reader waits for room after nearly every line, and the order holds.
#[tokio::test]
async fn a_full_publish_queue_keeps_the_order() {
    answers_in_order(Some(1)).await;
}
