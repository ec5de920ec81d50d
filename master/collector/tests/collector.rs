//! The collector served for real on loopback: report streams from several agents, malformed
//! and invalid reports, cross-host edges, topology watches and the HTTP API.
use std::{net::SocketAddr, time::Duration};

use orca_collector::{Collector, CollectorConfig};
use orca_proto::topology::v1::{
    self as pb, collector_client::CollectorClient, collector_server::CollectorServer,
};
use tokio::{net::TcpListener, sync::mpsc};
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};

struct Running {
    grpc: SocketAddr,
    http: SocketAddr,
    collector: Collector,
    _stop: tokio::sync::oneshot::Sender<()>,
}

/// The collector alone on loopback: its gRPC service and its HTTP routes, as the master
/// mounts them.
async fn start() -> Running {
    let collector = Collector::new(CollectorConfig {
        publish_every: Duration::from_millis(20),
        ..Default::default()
    });
    let grpc_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let http_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (grpc, http) = (
        grpc_listener.local_addr().unwrap(),
        http_listener.local_addr().unwrap(),
    );
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let publisher = tokio::spawn(collector.clone().run_publisher());
    let grpc_server = tonic::transport::Server::builder()
        .add_service(CollectorServer::new(collector.clone()).max_decoding_message_size(64 << 20))
        .serve_with_incoming(TcpListenerStream::new(grpc_listener));
    let http_server = axum::serve(
        http_listener,
        orca_collector::http::router(collector.clone()),
    );
    tokio::spawn(async move {
        tokio::select! {
            _ = stopped => {}
            _ = grpc_server => {}
            _ = http_server.into_future() => {}
        }
        publisher.abort();
    });
    Running {
        grpc,
        http,
        collector,
        _stop: stop,
    }
}

fn host(name: &str, ips: &[&str]) -> pb::Node {
    pb::Node {
        id: format!("host:{name}"),
        kind: pb::NodeKind::Host as i32,
        detail: Some(pb::node::Detail::Host(pb::Host {
            hostname: name.into(),
            ips: ips
                .iter()
                .map(|s| pb::ip_to_bytes(s.parse().unwrap()))
                .collect(),
            cpu_percent: 12.5,
            ..Default::default()
        })),
        ..Default::default()
    }
}

fn process(host: &str, pid: u32, comm: &str) -> pb::Node {
    pb::Node {
        id: format!("process:{host}:{pid}"),
        kind: pb::NodeKind::Process as i32,
        parents: vec![format!("host:{host}")],
        detail: Some(pb::node::Detail::Process(pb::Process {
            pid,
            comm: comm.into(),
            ..Default::default()
        })),
        ..Default::default()
    }
}

fn conn(
    host: &str,
    pid: u32,
    local: &str,
    remote: Option<&str>,
    dir: pb::Direction,
    state: pb::ConnectionState,
) -> pb::Connection {
    let ep = |s: &str| pb::Endpoint::new(s.parse::<SocketAddr>().unwrap());
    pb::Connection {
        id: format!("{host}:{local}-{}", remote.unwrap_or("listen")),
        local: Some(ep(local)),
        remote: remote.map(ep),
        direction: dir as i32,
        state: state as i32,
        pid,
        process_id: format!("process:{host}:{pid}"),
        bytes_sent: 1000,
        bytes_received: 10,
        ..Default::default()
    }
}

fn full(
    agent: &str,
    seq: u64,
    nodes: Vec<pb::Node>,
    connections: Vec<pb::Connection>,
) -> pb::Report {
    pb::Report {
        agent_id: agent.into(),
        hostname: agent.into(),
        seq,
        full: true,
        timestamp_unix_ms: 1_000_000 + seq as i64 * 1000,
        nodes,
        connections,
        ..Default::default()
    }
}

/// Client on host a (10.1.0.1) talks to a server listening on 0.0.0.0:80 on host b (10.1.0.2).
fn cross_host_reports() -> (pb::Report, pb::Report) {
    let a = full(
        "a",
        1,
        vec![host("a", &["10.1.0.1"]), process("a", 100, "curl")],
        vec![conn(
            "a",
            100,
            "10.1.0.1:5555",
            Some("10.1.0.2:80"),
            pb::Direction::Outbound,
            pb::ConnectionState::Established,
        )],
    );
    let b = full(
        "b",
        1,
        vec![host("b", &["10.1.0.2"]), process("b", 200, "nginx")],
        vec![conn(
            "b",
            200,
            "0.0.0.0:80",
            None,
            pb::Direction::Unspecified,
            pb::ConnectionState::Listen,
        )],
    );
    (a, b)
}

async fn open_stream(
    addr: SocketAddr,
) -> (mpsc::Sender<pb::Report>, tonic::Streaming<pb::ReportAck>) {
    let mut client = CollectorClient::connect(format!("http://{addr}"))
        .await
        .unwrap();
    let (tx, rx) = mpsc::channel(8);
    let acks = client
        .stream_reports(ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    (tx, acks)
}

async fn http_json(addr: SocketAddr, path: &str) -> (u16, serde_json::Value) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    let status: u16 = out[9..12].parse().unwrap();
    let body = out.split_once("\r\n\r\n").unwrap().1;
    (
        status,
        serde_json::from_str(body).unwrap_or(serde_json::Value::Null),
    )
}

#[tokio::test]
async fn merges_agents_into_cross_host_edges_served_over_http() {
    let running = start().await;
    let (a, b) = cross_host_reports();
    for report in [a, b] {
        let (tx, mut acks) = open_stream(running.grpc).await;
        tx.send(report).await.unwrap();
        let ack = acks.message().await.unwrap().unwrap();
        assert_eq!(ack.applied_seq, 1);
        assert!(ack.error.is_empty());
    }
    let (status, hosts) = http_json(running.http, "/api/topology?view=hosts").await;
    assert_eq!(status, 200);
    let edges = hosts["edges"].as_array().unwrap();
    assert_eq!(edges.len(), 1, "{hosts}");
    assert_eq!(edges[0]["source"], "host:a");
    assert_eq!(edges[0]["target"], "host:b");
    assert_eq!(edges[0]["crossHost"], true);
    let (_, procs) = http_json(running.http, "/api/topology?view=processes").await;
    let edge = &procs["edges"][0];
    assert_eq!(edge["source"], "process:a:100");
    assert_eq!(edge["target"], "process:b:200");
    let host_a = hosts["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["node"]["id"] == "host:a")
        .unwrap();
    assert_eq!(host_a["cpuPercent"][0]["value"], 12.5, "time series served");
    assert_eq!(
        host_a["node"]["host"]["ips"],
        serde_json::json!(["10.1.0.1"]),
        "addresses as text, not the wire's bytes"
    );
    let (_, conns) = http_json(running.http, "/api/topology?view=connections").await;
    let outbound = conns["connections"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["hostname"] == "a")
        .unwrap();
    assert_eq!(outbound["connection"]["remote"]["ip"], "10.1.0.2");
    assert_eq!(outbound["connection"]["remote"]["port"], 80);
    assert_eq!(outbound["peerName"], "nginx on b");

    let (status, body) = http_json(running.http, "/api/topology?view=nope").await;
    assert_eq!(status, 400);
    assert!(body["error"].as_str().unwrap().contains("view=hosts"));
    let (status, agents) = http_json(running.http, "/api/agents").await;
    assert_eq!(status, 200);
    assert_eq!(agents["agents"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn invalid_report_is_rejected_and_the_stream_goes_on() {
    let running = start().await;
    let (tx, mut acks) = open_stream(running.grpc).await;
    let (good, _) = cross_host_reports();
    tx.send(good.clone()).await.unwrap();
    assert_eq!(acks.message().await.unwrap().unwrap().applied_seq, 1);
    let mut bad = good.clone();
    bad.seq = 2;
    bad.full = false;
    bad.connections[0].remote = Some(pb::Endpoint {
        ip: vec![10, 1, 1],
        port: 80,
    });
    tx.send(bad).await.unwrap();
    let ack = acks.message().await.unwrap().unwrap();
    assert!(ack.error.contains("invalid endpoint"), "{ack:?}");
    assert_eq!(ack.applied_seq, 1, "nothing of the bad report applied");
    let mut next = good;
    next.seq = 3;
    tx.send(next).await.unwrap();
    let ack = acks.message().await.unwrap().unwrap();
    assert_eq!(ack.applied_seq, 3);
    assert!(ack.error.is_empty());
}

/// Bytes that are not an `orca.topology.v1.Report`: field 3 (seq, a varint) sent as a
/// string, so decoding fails.
#[derive(Clone, PartialEq, prost::Message)]
struct NotAReport {
    #[prost(string, tag = "3")]
    seq: String,
}

#[tokio::test]
async fn malformed_stream_is_refused_and_other_agents_are_unaffected() {
    let running = start().await;
    let (good_tx, mut good_acks) = open_stream(running.grpc).await;
    let (a, b) = cross_host_reports();
    good_tx.send(a).await.unwrap();
    assert_eq!(good_acks.message().await.unwrap().unwrap().applied_seq, 1);

    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", running.grpc))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.unwrap();
    let codec = tonic_prost::ProstCodec::<NotAReport, pb::ReportAck>::default();
    let path = tonic::codegen::http::uri::PathAndQuery::from_static(
        "/orca.topology.v1.Collector/StreamReports",
    );
    let garbage = tokio_stream::iter(vec![NotAReport {
        seq: "definitely not a number".into(),
    }]);
    let response = grpc
        .streaming(tonic::Request::new(garbage), path, codec)
        .await;
    let error = match response {
        Ok(resp) => {
            let mut stream = resp.into_inner();
            stream
                .message()
                .await
                .expect_err("the stream ends with an error")
        }
        Err(status) => status,
    };
    assert_eq!(error.code(), tonic::Code::InvalidArgument, "{error:?}");
    assert!(error.message().contains("malformed report"), "{error:?}");

    // The well-behaved agent carries on, and another agent can join.
    let mut next = b;
    next.agent_id = "a".into();
    next.hostname = "a".into();
    next.nodes = vec![host("a", &["10.1.0.1"])];
    next.connections.clear();
    next.seq = 2;
    good_tx.send(next).await.unwrap();
    assert_eq!(good_acks.message().await.unwrap().unwrap().applied_seq, 2);
    let metrics = running.collector.metrics().encode();
    assert!(
        metrics.contains("orca_collector_reports_total{result=\"malformed\"} 1"),
        "{metrics}"
    );
}

#[tokio::test]
async fn gap_in_deltas_asks_for_a_full_report() {
    let running = start().await;
    let (tx, mut acks) = open_stream(running.grpc).await;
    let (a, _) = cross_host_reports();
    tx.send(a.clone()).await.unwrap();
    acks.message().await.unwrap().unwrap();
    let mut delta = a.clone();
    delta.full = false;
    delta.seq = 5;
    tx.send(delta).await.unwrap();
    let ack = acks.message().await.unwrap().unwrap();
    assert!(ack.need_full);
    assert_eq!(ack.applied_seq, 1);
}

#[tokio::test]
async fn watch_sends_a_snapshot_then_deltas() {
    let running = start().await;
    let (tx, mut acks) = open_stream(running.grpc).await;
    let (a, b) = cross_host_reports();
    tx.send(a.clone()).await.unwrap();
    acks.message().await.unwrap().unwrap();

    let mut client = CollectorClient::connect(format!("http://{}", running.grpc))
        .await
        .unwrap();
    let mut watch = client
        .watch_topology(pb::WatchRequest {
            view: pb::View::Hosts as i32,
        })
        .await
        .unwrap()
        .into_inner();
    let snapshot = watch.message().await.unwrap().unwrap();
    assert!(snapshot.full);
    let ids: Vec<_> = snapshot
        .upserted_nodes
        .iter()
        .map(|n| n.node.as_ref().unwrap().id.clone())
        .collect();
    assert!(ids.contains(&"host:a".to_string()), "{ids:?}");

    // Host b joins: the watcher gets deltas with b (at the next publish) and the new
    // cross-host edge (edges are recomputed at most once a second).
    let (tx_b, mut acks_b) = open_stream(running.grpc).await;
    tx_b.send(b).await.unwrap();
    acks_b.message().await.unwrap().unwrap();
    let mut b_seen = false;
    let delta = tokio::time::timeout(Duration::from_secs(3), async {
        loop {
            let d = watch.message().await.unwrap().unwrap();
            assert!(!d.full);
            assert!(d.seq > snapshot.seq);
            b_seen |= d
                .upserted_nodes
                .iter()
                .any(|n| n.node.as_ref().unwrap().id == "host:b");
            if !d.upserted_edges.is_empty() {
                return d;
            }
        }
    })
    .await
    .expect("the edge within 3 s");
    assert!(b_seen, "host b was never upserted");
    assert!(delta.upserted_edges[0].cross_host);

    // Agent a reports a's process went away: the host view's edge is removed.
    let mut gone = a;
    gone.seq = 2;
    gone.full = false;
    gone.nodes = vec![];
    gone.connections = vec![];
    gone.removed_connections = vec!["a:10.1.0.1:5555-10.1.0.2:80".into()];
    tx.send(gone).await.unwrap();
    acks.message().await.unwrap().unwrap();
    let removal = tokio::time::timeout(Duration::from_secs(3), async {
        loop {
            let d = watch.message().await.unwrap().unwrap();
            if !d.removed_edges.is_empty() {
                return d;
            }
        }
    })
    .await
    .expect("an edge removal within 3 s");
    assert_eq!(removal.removed_edges, ["host:a->host:b"]);
}

#[tokio::test]
async fn connections_view_names_the_far_end_and_drops_closed_connections() {
    let running = start().await;
    let (tx, mut acks) = open_stream(running.grpc).await;
    let (a, b) = cross_host_reports();
    tx.send(a.clone()).await.unwrap();
    acks.message().await.unwrap().unwrap();
    tx.send(b).await.unwrap();
    acks.message().await.unwrap().unwrap();

    let mut client = CollectorClient::connect(format!("http://{}", running.grpc))
        .await
        .unwrap();
    let mut watch = client
        .watch_topology(pb::WatchRequest {
            view: pb::View::Connections as i32,
        })
        .await
        .unwrap()
        .into_inner();
    let snapshot = watch.message().await.unwrap().unwrap();
    assert!(snapshot.full);
    assert!(snapshot.upserted_nodes.is_empty(), "connections only");
    let by_id: std::collections::HashMap<_, _> = snapshot
        .upserted_connections
        .iter()
        .map(|c| (c.connection.as_ref().unwrap().id.as_str(), c))
        .collect();
    let outbound = by_id["a:10.1.0.1:5555-10.1.0.2:80"];
    assert_eq!(outbound.hostname, "a");
    assert_eq!(outbound.peer_node, "process:b:200", "the listener on b");
    assert_eq!(outbound.peer_name, "nginx on b");
    let listener = by_id["b:0.0.0.0:80-listen"];
    assert_eq!(listener.peer_node, "");

    // The connection closes: it is upserted once as CLOSED, then removed.
    let mut closed = conn(
        "a",
        100,
        "10.1.0.1:5555",
        Some("10.1.0.2:80"),
        pb::Direction::Outbound,
        pb::ConnectionState::Closed,
    );
    closed.bytes_sent = 5000;
    let delta = pb::Report {
        seq: 2,
        full: false,
        connections: vec![closed],
        ..a.clone()
    };
    let delta = pb::Report {
        nodes: vec![],
        ..delta
    };
    tx.send(delta).await.unwrap();
    acks.message().await.unwrap().unwrap();
    let update = tokio::time::timeout(Duration::from_secs(2), watch.message())
        .await
        .expect("a delta within 2 s")
        .unwrap()
        .unwrap();
    let c = update.upserted_connections[0].connection.as_ref().unwrap();
    assert_eq!(c.state, pb::ConnectionState::Closed as i32);
    assert_eq!(c.bytes_sent, 5000);

    let next = pb::Report {
        seq: 3,
        full: false,
        nodes: vec![],
        connections: vec![],
        ..a
    };
    tx.send(next).await.unwrap();
    acks.message().await.unwrap().unwrap();
    let removal = tokio::time::timeout(Duration::from_secs(2), watch.message())
        .await
        .expect("a removal within 2 s")
        .unwrap()
        .unwrap();
    assert_eq!(removal.removed_connections, ["a:10.1.0.1:5555-10.1.0.2:80"]);
}

#[tokio::test]
async fn watches_carry_the_latest_point_and_node_series_the_whole_history() {
    let running = start().await;
    let (tx, mut acks) = open_stream(running.grpc).await;
    let (a, _) = cross_host_reports();
    for seq in 1..=3 {
        let mut report = a.clone();
        report.seq = seq;
        report.timestamp_unix_ms = 1_000_000 + seq as i64 * 15_000;
        tx.send(report).await.unwrap();
        acks.message().await.unwrap().unwrap();
    }
    let mut client = CollectorClient::connect(format!("http://{}", running.grpc))
        .await
        .unwrap();
    let mut watch = client
        .watch_topology(pb::WatchRequest {
            view: pb::View::Hosts as i32,
        })
        .await
        .unwrap()
        .into_inner();
    let snapshot = watch.message().await.unwrap().unwrap();
    let host = snapshot
        .upserted_nodes
        .iter()
        .find(|n| n.node.as_ref().unwrap().id == "host:a")
        .unwrap();
    assert_eq!(host.cpu_percent.len(), 1, "only the latest point");

    let series = client
        .node_series(pb::NodeSeriesRequest {
            node_id: "host:a".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(series.hostname, "a");
    assert_eq!(series.cpu_percent.len(), 3, "three 15-second buckets");
    assert_eq!(
        series.cpu_percent.last().unwrap().timestamp_unix_ms,
        host.cpu_percent[0].timestamp_unix_ms
    );
    let err = client
        .node_series(pb::NodeSeriesRequest {
            node_id: "host:nope".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound);
}
