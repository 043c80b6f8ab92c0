//! The accept loop on a loopback socket (port 0): what happens before a connection is handed to
//! `connection::run`, which the in-memory stream cannot show.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

use crate::support::TestServer;

async fn listen(test: &TestServer, tls: Option<tokio_rustls::TlsAcceptor>) -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("a loopback port");
    let address = listener.local_addr().expect("its address");
    tokio::spawn(wikiwire_irc::listener::serve(Arc::clone(&test.server), listener, tls));
    address
}

#[tokio::test]
async fn a_connection_past_the_limit_per_address_is_refused_with_a_reason() {
    let test = TestServer::with(|irc| irc.max_per_ip = 1);
    let address = listen(&test, None).await;
    let _first = TcpStream::connect(address).await.expect("the first connects");
    let second = TcpStream::connect(address).await.expect("the second connects, to be told");
    let mut lines = BufReader::new(second).lines();
    let line = tokio::time::timeout(Duration::from_secs(10), lines.next_line()).await.expect("an answer");
    assert_eq!(line.unwrap().as_deref(), Some("ERROR :Closing link: Too many connections from your address"));
    assert_eq!(lines.next_line().await.unwrap(), None, "and closed");
    assert_eq!(test.hub.metrics().irc_refused.get(), 1);
    assert_eq!(test.server.counts().connections, 1, "the refused one was never counted");
}

/// A throwaway self-signed certificate for `localhost` and its key, for tests only (made by
/// `openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 36500
/// -subj /CN=localhost`).
fn acceptor() -> tokio_rustls::TlsAcceptor {
    let folder = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/harness/tls");
    wikiwire_irc::tls::acceptor(&folder.join("localhost.crt"), &folder.join("localhost.key"))
        .expect("the test certificate loads")
}

#[tokio::test(start_paused = true)]
async fn a_tls_client_that_never_says_hello_is_let_go_after_ten_seconds() {
    let test = TestServer::start();
    let address = listen(&test, Some(acceptor())).await;
    let mut silent = TcpStream::connect(address).await.expect("connects");
    let connected = Instant::now();
    let mut rest = Vec::new();
    tokio::time::timeout(Duration::from_secs(60), silent.read_to_end(&mut rest))
        .await
        .expect("the handshake is bounded")
        .expect("closed, not reset");
    let waited = connected.elapsed();
    assert!(rest.is_empty(), "nothing is said to a client that never started TLS");
    assert!(waited >= Duration::from_secs(10) && waited < Duration::from_secs(11), "let go after {waited:?}");
    assert_eq!(test.server.counts().connections, 0, "its place is given back");
}
