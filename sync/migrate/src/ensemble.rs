//! An ensemble as its servers report it through ZooKeeper's four-letter commands: whether
//! each serves and in which mode (`srvr`), whether they form a quorum, and the client
//! sessions connected to each (`cons`).
use std::time::Duration;

use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::TcpStream,
};

/// The servers of a connect string (`h1:2181,h2:2181/chroot`).
pub fn servers(connect: &str) -> Vec<String> {
    let hosts = connect.split('/').next().unwrap_or_default();
    hosts
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Sends a four-letter command; `None` when the server does not answer.
pub async fn four_letter(server: &str, command: &str) -> Option<String> {
    let exchange = async {
        let mut stream = TcpStream::connect(server).await.ok()?;
        stream.write_all(command.as_bytes()).await.ok()?;
        let mut reply = String::new();
        stream.read_to_string(&mut reply).await.ok()?;
        Some(reply)
    };
    tokio::time::timeout(Duration::from_secs(2), exchange)
        .await
        .ok()
        .flatten()
}

/// One server's answer to `srvr`.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ServerHealth {
    pub server: String,
    /// `leader`, `follower`, `standalone`, … or `None` when it does not serve.
    pub mode: Option<String>,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct EnsembleHealth {
    pub servers: Vec<ServerHealth>,
}

impl EnsembleHealth {
    pub async fn probe(connect: &str) -> Self {
        let list = servers(connect);
        let answers = futures::future::join_all(list.iter().map(|s| four_letter(s, "srvr"))).await;
        Self {
            servers: list
                .into_iter()
                .zip(answers)
                .map(|(server, reply)| ServerHealth {
                    server,
                    mode: reply.as_deref().and_then(mode),
                })
                .collect(),
        }
    }

    pub fn serving(&self) -> usize {
        self.servers.iter().filter(|s| s.mode.is_some()).count()
    }

    /// One leader (or a standalone server) and a majority serving.
    pub fn has_quorum(&self) -> bool {
        let leaders = self
            .servers
            .iter()
            .filter(|s| matches!(s.mode.as_deref(), Some("leader" | "standalone")))
            .count();
        leaders == 1 && self.serving() * 2 > self.servers.len()
    }

    pub fn all_serving(&self) -> bool {
        self.serving() == self.servers.len()
    }

    pub fn describe(&self) -> String {
        self.servers
            .iter()
            .map(|s| format!("{} {}", s.server, s.mode.as_deref().unwrap_or("down")))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

fn mode(srvr: &str) -> Option<String> {
    srvr.lines()
        .find_map(|l| l.strip_prefix("Mode: "))
        .map(|m| m.trim().to_owned())
}

/// Client sessions connected to each server, by server: each as `client-address sid`
/// (`cons` lines with a session id; the command's own connection has none); `None` for a
/// server that does not answer.
pub async fn sessions(connect: &str) -> Vec<(String, Option<Vec<String>>)> {
    let list = servers(connect);
    let answers = futures::future::join_all(list.iter().map(|s| four_letter(s, "cons"))).await;
    list.into_iter()
        .zip(answers)
        .map(|(s, reply)| (s, reply.as_deref().map(client_sessions)))
        .collect()
}

fn client_sessions(cons: &str) -> Vec<String> {
    cons.lines()
        .filter_map(|l| {
            let sid = l.split("sid=").nth(1)?.split([',', ')']).next()?;
            let client = l
                .trim()
                .split('[')
                .next()
                .unwrap_or_default()
                .trim_start_matches('/');
            Some(format!("{client} {sid}"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn servers_come_from_a_connect_string_with_or_without_a_chroot() {
        assert_eq!(servers("a:1, b:2,c:3/orca"), vec!["a:1", "b:2", "c:3"]);
        assert_eq!(servers("a:1"), vec!["a:1"]);
    }

    #[test]
    fn srvr_and_cons_replies_are_read() {
        assert_eq!(
            mode(
                "Zookeeper version: 3.8.4\nLatency min/avg/max: 0/0.1/3\nMode: follower\nNode count: 5\n"
            ),
            Some("follower".into())
        );
        let cons = " /127.0.0.1:41234[1](queued=0,recved=12,sent=12,sid=0x10000a1b2c30001,lop=PING,est=1,to=10000)\n /127.0.0.1:41240[0](queued=0,recved=1,sent=0)\n\n";
        assert_eq!(
            client_sessions(cons),
            vec!["127.0.0.1:41234 0x10000a1b2c30001"]
        );
    }

    #[test]
    fn a_quorum_needs_one_leader_and_a_majority() {
        let h = |modes: &[Option<&str>]| EnsembleHealth {
            servers: modes
                .iter()
                .enumerate()
                .map(|(i, m)| ServerHealth {
                    server: format!("s{i}"),
                    mode: m.map(str::to_owned),
                })
                .collect(),
        };
        assert!(h(&[Some("leader"), Some("follower"), None]).has_quorum());
        assert!(!h(&[Some("follower"), Some("follower"), None]).has_quorum());
        assert!(!h(&[Some("leader"), None, None]).has_quorum());
        assert!(h(&[Some("standalone")]).has_quorum());
    }
}
