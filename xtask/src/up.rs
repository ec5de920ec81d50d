//! `cargo xtask up`: a master and an agent on this host — the agent reports the topology and
//! runs tasks for the master — and a live summary of both. (The terminal UI, `orca up`, will
//! replace the printed summary.)
use std::{
    io::{Read as _, Write as _},
    net::TcpStream,
    process::{Child, Command},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};

use crate::workspace_root;

struct Children(Vec<Child>);

impl Drop for Children {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn http_get(addr: &str, path: &str) -> Result<serde_json::Value> {
    let mut stream = TcpStream::connect(addr).with_context(|| format!("connecting to {addr}"))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b)
        .context("malformed HTTP response")?;
    Ok(serde_json::from_str(body)?)
}

pub fn up(grpc_addr: &str, http_addr: &str, seconds: Option<u64>) -> Result<()> {
    let root = workspace_root();
    crate::run(Command::new("cargo").current_dir(&root).args([
        "build",
        "--release",
        "-p",
        "orca-master",
        "-p",
        "orca-agent",
    ]))?;
    let bin = root.join("target/release");
    let state = root.join("target/orca-up");
    let registry = state.join("master/registry.jsonl");
    let work_dir = state.join("agent");
    let mut children = Children(Vec::new());
    children.0.push(
        Command::new(bin.join("orca-master"))
            .args(["--grpc-addr", grpc_addr, "--http-addr", http_addr])
            .arg("--registry")
            .arg(&registry)
            .spawn()
            .context("starting orca-master")?,
    );
    children.0.push(
        Command::new(bin.join("orca-agent"))
            .args([
                "run",
                "--master",
                grpc_addr,
                "--metrics-addr",
                "127.0.0.1:9100",
            ])
            .arg("--work-dir")
            .arg(&work_dir)
            .spawn()
            .context("starting orca-agent")?,
    );
    println!(
        "Orca is up: master gRPC {grpc_addr}; HTTP http://{http_addr}/api/v1/scheduler (Mesos v1 \
         scheduler API), /master/state, /api/topology?view=hosts|containers|processes, /metrics; \
         agent metrics http://127.0.0.1:9100/metrics. Ctrl-C stops."
    );
    let started = Instant::now();
    loop {
        std::thread::sleep(Duration::from_secs(2));
        for child in &mut children.0 {
            if let Some(status) = child.try_wait()? {
                bail!("a component exited early ({status}); see its messages above");
            }
        }
        match summary(http_addr) {
            Ok(text) => println!("{text}"),
            Err(err) => println!("(waiting for the collector: {err})"),
        }
        if seconds.is_some_and(|s| started.elapsed() >= Duration::from_secs(s)) {
            return Ok(());
        }
    }
}

fn summary(http_addr: &str) -> Result<String> {
    let agents = http_get(http_addr, "/api/agents")?;
    let processes = http_get(http_addr, "/api/topology?view=processes")?;
    let cluster = http_get(http_addr, "/master/state")?;
    let mut out = String::new();
    for a in cluster["slaves"].as_array().into_iter().flatten() {
        let r = |k: &str, f: &str| a[k][f].as_f64().unwrap_or(0.0);
        out += &format!(
            "agent {} ({}) — cpus {}/{} used, mem {}/{} MB used, {} offered cpus\n",
            a["id"].as_str().unwrap_or("?"),
            a["hostname"].as_str().unwrap_or("?"),
            r("used_resources", "cpus"),
            r("resources", "cpus"),
            r("used_resources", "mem"),
            r("resources", "mem"),
            r("offered_resources", "cpus"),
        );
    }
    let frameworks = cluster["frameworks"].as_array().map_or(0, Vec::len);
    let tasks: usize = cluster["frameworks"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|f| f["tasks"].as_array().map_or(0, Vec::len))
        .sum();
    out += &format!("{frameworks} frameworks, {tasks} live tasks\n");
    for a in agents["agents"].as_array().into_iter().flatten() {
        out += &format!(
            "host {} — mode {}, {} nodes, {} connections, agent cpu {:.1}% rss {} MB\n",
            a["hostname"].as_str().unwrap_or("?"),
            a["stats"]["probeMode"].as_str().unwrap_or("?"),
            a["nodes"],
            a["connections"],
            a["stats"]["cpuPercent"].as_f64().unwrap_or(0.0),
            a["stats"]["rssBytes"]
                .as_str()
                .and_then(|s| s.parse::<u64>().ok())
                .unwrap_or(0)
                >> 20,
        );
    }
    let label = |id: &str| -> String {
        processes["nodes"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|n| n["node"]["id"] == id)
            .and_then(|n| n["node"]["process"]["comm"].as_str().map(String::from))
            .map(|comm| format!("{comm}({})", id.rsplit(':').next().unwrap_or(id)))
            .unwrap_or_else(|| id.to_string())
    };
    let mut edges: Vec<&serde_json::Value> = processes["edges"]
        .as_array()
        .into_iter()
        .flatten()
        .collect();
    let bytes = |e: &serde_json::Value| {
        ["bytesSent", "bytesReceived"]
            .iter()
            .filter_map(|k| e[*k].as_str().and_then(|s| s.parse::<u64>().ok()))
            .sum::<u64>()
    };
    edges.sort_by_key(|e| std::cmp::Reverse(bytes(e)));
    out += &format!("{} process edges; busiest:\n", edges.len());
    for e in edges.iter().take(8) {
        out += &format!(
            "  {} -> {}  {} conns, {} bytes\n",
            label(e["source"].as_str().unwrap_or("?")),
            label(e["target"].as_str().unwrap_or("?")),
            e["connections"],
            bytes(e)
        );
    }
    Ok(out)
}
