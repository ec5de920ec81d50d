//! ZooKeeper sync benchmark: in one run, on two fresh local ensembles (three servers each unless
//! `--servers` says otherwise),
//!
//! 1. the raw write limit of ensemble B: a plain client creating znodes with many requests in
//!    flight (the baseline);
//! 2. the sync engine's bootstrap rate for `--nodes` znodes copied from A to B;
//! 3. live replication lag (write on A, visible on B) under a steady `--rate` writes/s, and
//!    the replicated throughput when A is written as fast as one client can, with single
//!    writes and then with writes batched in multi-ops (B's raw rate with such batches is a
//!    second baseline);
//! 4. validations run back to back under the same steady load: how long one takes, and that
//!    none reports a change on its way as a divergence.
use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result};
use clap::Parser;
use futures::{StreamExt as _, stream};
use orca_sync::{SyncConfig, SyncEngine};
use orca_zk_local::Ensemble;
use zookeeper_client::{Acls, Client, CreateMode};

#[derive(Parser)]
struct Args {
    /// Znodes for the raw-write baseline and the bootstrap.
    #[arg(long, default_value_t = 100_000)]
    nodes: usize,
    /// Bytes of data per znode.
    #[arg(long, default_value_t = 64)]
    value_bytes: usize,
    /// Steady write rate on A for the lag measurement.
    #[arg(long, default_value_t = 2000)]
    rate: u64,
    /// Seconds of steady load.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Requests in flight for the plain-client writers.
    #[arg(long, default_value_t = 1000)]
    in_flight: usize,
    /// Run the ensembles without fsync before acknowledging (ZooKeeper `forceSync=no`): the
    /// engine then meets ensembles limited by CPU, not by this host's disk. Both the baselines
    /// and the sync run on the same ensembles either way.
    #[arg(long)]
    no_fsync: bool,
    /// Servers per ensemble: 3 (the default) as in production; 1 runs each ensemble as a
    /// single standalone server, which takes more writes per second on a small host (no
    /// quorum round trip, two JVMs instead of six), to see how far the engine goes when the
    /// ensembles are not the limit.
    #[arg(long, default_value_t = 3)]
    servers: u16,
    /// Writes per multi-op for the batched baseline and the batched burst: a client that
    /// batches gets more writes per second out of an ensemble than one that does not (the
    /// engine batches its own writes).
    #[arg(long, default_value_t = 100)]
    multi: usize,
    /// The engine's `read-sessions` (extra sessions per ensemble a walk reads through).
    #[arg(long, default_value_t = SyncConfig::new("", "").read_sessions)]
    read_sessions: usize,
}

struct Stop(Vec<Ensemble>);

impl Drop for Stop {
    fn drop(&mut self) {
        self.0.iter().for_each(Ensemble::stop);
    }
}

async fn client(connect: &str) -> Result<Client> {
    Client::connector()
        .with_session_timeout(Duration::from_secs(20))
        .connect(connect)
        .await
        .with_context(|| format!("connecting to {connect}"))
}

/// Creates `n` znodes under `root` (100 per directory), `in_flight` at a time; returns the
/// seconds it took (directories included).
async fn create_many(
    client: &Client,
    root: &str,
    n: usize,
    value: &[u8],
    in_flight: usize,
) -> Result<f64> {
    let opts = CreateMode::Persistent.with_acls(Acls::anyone_all());
    let started = Instant::now();
    client.create(root, b"", &opts).await?;
    let dirs = n.div_ceil(100);
    let mut created = stream::iter(0..dirs)
        .map(|d| {
            let opts = &opts;
            async move { client.create(&format!("{root}/d{d}"), b"", opts).await }
        })
        .buffer_unordered(in_flight);
    while let Some(r) = created.next().await {
        r?;
    }
    let mut created = stream::iter(0..n)
        .map(|i| {
            let opts = &opts;
            async move {
                client
                    .create(&format!("{root}/d{}/n{i}", i / 100), value, opts)
                    .await
            }
        })
        .buffer_unordered(in_flight);
    while let Some(r) = created.next().await {
        r?;
    }
    Ok(started.elapsed().as_secs_f64())
}

/// Creates `n` znodes under `root` as `create_many` lays them out (100 per directory), in
/// multi-ops of `per_multi` creates with `in_flight` writes in flight in all: what a client
/// that batches its creates gets out of the ensemble, the baseline for a bootstrap (which
/// creates in multi-ops too). Returns the seconds it took (directories included).
async fn create_many_batched(
    client: &Client,
    root: &str,
    n: usize,
    value: &[u8],
    per_multi: usize,
    in_flight: usize,
) -> Result<f64> {
    let opts = CreateMode::Persistent.with_acls(Acls::anyone_all());
    let started = Instant::now();
    client.create(root, b"", &opts).await?;
    let dirs: Vec<String> = (0..n.div_ceil(100))
        .map(|d| format!("{root}/d{d}"))
        .collect();
    let nodes: Vec<String> = (0..n)
        .map(|i| format!("{root}/d{}/n{i}", i / 100))
        .collect();
    for (paths, data) in [(&dirs, &b""[..]), (&nodes, value)] {
        let mut written = stream::iter(paths.chunks(per_multi.max(1)))
            .map(|batch| {
                let opts = &opts;
                async move {
                    let mut writer = client.new_multi_writer();
                    for path in batch {
                        writer.add_create(path, data, opts)?;
                    }
                    writer.commit().await.map_err(anyhow::Error::from)
                }
            })
            .buffer_unordered((in_flight / per_multi.max(1)).max(1));
        while let Some(r) = written.next().await {
            r?;
        }
    }
    Ok(started.elapsed().as_secs_f64())
}

/// Sets new data on the znodes `create_many` made under `root`, `per_multi` writes in each
/// multi-op, `in_flight` writes in flight in all; returns the seconds it took.
async fn set_many_batched(
    client: &Client,
    root: &str,
    nodes: std::ops::Range<usize>,
    value: &[u8],
    per_multi: usize,
    in_flight: usize,
) -> Result<f64> {
    let started = Instant::now();
    let batches: Vec<Vec<usize>> = nodes
        .collect::<Vec<_>>()
        .chunks(per_multi.max(1))
        .map(<[usize]>::to_vec)
        .collect();
    let mut written = stream::iter(batches)
        .map(|batch| async move {
            let mut writer = client.new_multi_writer();
            for i in batch {
                writer.add_set_data(&format!("{root}/d{}/n{i}", i / 100), value, None)?;
            }
            writer.commit().await.map_err(anyhow::Error::from)
        })
        .buffer_unordered((in_flight / per_multi.max(1)).max(1));
    while let Some(r) = written.next().await {
        r?;
    }
    Ok(started.elapsed().as_secs_f64())
}

fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let state = std::env::temp_dir().join(format!("orca-zk-bench-{}", std::process::id()));
    let mut a = Ensemble::new(&state, "bench-a", args.servers, 21830);
    let mut b = Ensemble::new(&state, "bench-b", args.servers, 21840);
    a.force_sync = !args.no_fsync;
    b.force_sync = !args.no_fsync;
    println!(
        "two ensembles of {} server(s) each, {}",
        args.servers,
        if args.no_fsync {
            "forceSync=no (no fsync before acknowledging)"
        } else {
            "fsync before acknowledging (ZooKeeper's default)"
        }
    );
    let stop = Stop(vec![a.clone(), b.clone()]);
    for e in [&a, &b] {
        e.start(Duration::from_secs(60))?;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let result = rt.block_on(run(&args, &a, &b));
    drop(stop);
    let _ = std::fs::remove_dir_all(&state);
    result
}

async fn run(args: &Args, a: &Ensemble, b: &Ensemble) -> Result<()> {
    let value = vec![b'x'; args.value_bytes];
    let ca = client(&a.connect_string()).await?;
    let cb = client(&b.connect_string()).await?;

    // 1. Baseline: plain client on B.
    let raw_secs = create_many(&cb, "/raw", args.nodes, &value, args.in_flight).await?;
    let raw_rate = (args.nodes + args.nodes.div_ceil(100)) as f64 / raw_secs;
    eprintln!("raw writes on B: {raw_rate:.0}/s");
    let batched_secs = set_many_batched(
        &cb,
        "/raw",
        0..args.nodes,
        b"batched",
        args.multi,
        args.in_flight,
    )
    .await?;
    let raw_batched_rate = args.nodes as f64 / batched_secs;
    eprintln!("raw writes on B, batched: {raw_batched_rate:.0}/s");
    // The bootstrap's own baseline: the same tree created on B in multi-ops.
    let created_secs = create_many_batched(
        &cb,
        "/raw-batched",
        args.nodes,
        &value,
        args.multi,
        args.in_flight,
    )
    .await?;
    let raw_batched_create_rate = (args.nodes + args.nodes.div_ceil(100)) as f64 / created_secs;
    eprintln!("raw creates on B, batched: {raw_batched_create_rate:.0}/s");
    // B's own write acknowledgement at the steady rate: what replication to B cannot beat.
    let b_acks = steady_acks(&cb, "/raw", "steady", args.nodes, args.rate, args.seconds).await?;

    // 2. Bootstrap A -> B.
    create_many(&ca, "/app", args.nodes, &value, args.in_flight).await?;
    // Baseline for the live path's reads: get_data of every znode on A, pipelined.
    let started = Instant::now();
    let mut reads = stream::iter(0..args.nodes)
        .map(|i| {
            let ca = &ca;
            async move { ca.get_data(&format!("/app/d{}/n{i}", i / 100)).await }
        })
        .buffer_unordered(args.in_flight);
    while let Some(r) = reads.next().await {
        r?;
    }
    let read_rate = args.nodes as f64 / started.elapsed().as_secs_f64();
    eprintln!("raw reads on A: {read_rate:.0}/s");
    let mut cfg = SyncConfig::new(a.connect_string(), b.connect_string());
    cfg.root = "/app".into();
    cfg.read_sessions = args.read_sessions;
    let engine = SyncEngine::connect(cfg).await?;
    // The engine bootstraps inside `run`, after its watches are set, as in production.
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let engine_cpu = orca_bench::procstat::cpu_mark(std::process::id())?;
    let started = Instant::now();
    let runner = tokio::spawn(Arc::clone(&engine).run(async {
        let _ = stop_rx.await;
    }));
    // The walk reads A's tree (B's subtree is empty) before anything is written.
    let to_walk = (args.nodes + args.nodes.div_ceil(100) + 2) as u64;
    let mut walk_secs = None;
    while !engine.status().bootstrapped {
        if walk_secs.is_none() && engine.status().walked >= to_walk {
            walk_secs = Some(started.elapsed().as_secs_f64());
        }
        anyhow::ensure!(
            !runner.is_finished(),
            "the engine stopped during the bootstrap"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let boot_secs = started.elapsed().as_secs_f64();
    let boot_cpu = orca_bench::procstat::cpu_use(
        engine_cpu,
        orca_bench::procstat::cpu_mark(std::process::id())?,
    );
    eprintln!(
        "engine CPU during the bootstrap: {:.0} % of a core (user {:.0}, system {:.0})",
        boot_cpu.total(),
        boot_cpu.user,
        boot_cpu.system
    );
    let copied = engine.status().replicated_a_to_b;
    anyhow::ensure!(
        engine.status().errors == 0,
        "bootstrap errors: {:?}",
        engine.status()
    );
    let boot_rate = copied as f64 / boot_secs;
    eprintln!("bootstrap: {copied} znodes in {boot_secs:.2} s (walked in {walk_secs:?} s)");
    // A validation reads both whole trees, as every re-scan does: the first reads every ACL
    // on B (the engine created those nodes), later ones only ACLs that changed.
    let mut validate_secs = [0.0; 2];
    for secs in &mut validate_secs {
        let started = Instant::now();
        anyhow::ensure!(
            engine.validate().await?.is_empty(),
            "trees differ after bootstrap"
        );
        *secs = started.elapsed().as_secs_f64();
    }

    // 3. Live: steady rate, then as fast as possible.
    // Every write changes the data (a write of the same bytes replicates nothing).
    let before_steady = engine.status().replicated_a_to_b;
    let rescans_before = engine.status().rescans;
    let steady = args.rate * args.seconds;
    // One write per znode, so each write is one replicated change (two writes to one znode
    // within a round replicate as one).
    anyhow::ensure!(
        steady <= args.nodes as u64,
        "--rate x --seconds must not exceed --nodes (each steady write goes to its own znode)"
    );
    // The baseline for lag: how long the plain writer waits for A to acknowledge each write.
    let acks = steady_acks(&ca, "/app", "steady", args.nodes, args.rate, args.seconds).await?;
    wait_caught_up(&engine, before_steady + steady).await?;
    let steady_status = engine.status();

    let burst = 50_000u64.min(args.nodes as u64);
    let rescans_before_burst = engine.status().rescans;
    let before = engine.status().replicated_a_to_b;
    let started = Instant::now();
    let mut writes = stream::iter(0..burst as usize)
        .map(|i| ca.set_data(&format!("/app/d{}/n{i}", i / 100), b"burst", None))
        .buffer_unordered(args.in_flight);
    while let Some(r) = writes.next().await {
        r?;
    }
    wait_caught_up(&engine, before + burst).await?;
    let burst_rate = burst as f64 / started.elapsed().as_secs_f64();
    let burst_rescans = engine.status().rescans - rescans_before_burst;

    // The same burst written in multi-ops: A takes it faster than one client's single writes.
    let before = engine.status().replicated_a_to_b;
    let started = Instant::now();
    let taken_secs = set_many_batched(
        &ca,
        "/app",
        0..burst as usize,
        b"batched burst",
        args.multi,
        args.in_flight,
    )
    .await?;
    let batched_taken_rate = burst as f64 / taken_secs;
    wait_caught_up(&engine, before + burst).await?;
    let batched_burst_rate = burst as f64 / started.elapsed().as_secs_f64();
    let batched_rescans = engine.status().rescans - rescans_before_burst - burst_rescans;
    // 4. Validation under load: the same steady writes on A while validations run back to
    // back (each reads both trees, then looks again at what differed). Every write is on its
    // way while some validation compares, so any path reported diverged is a false alarm.
    let writing = std::sync::atomic::AtomicBool::new(true);
    let validating = async {
        let mut checks = Vec::new();
        while writing.load(std::sync::atomic::Ordering::Relaxed) {
            checks.push(engine.check().await?.0);
        }
        anyhow::Ok(checks)
    };
    let writing_steady = async {
        let written = steady_acks(
            &ca,
            "/app",
            "validated",
            args.nodes,
            args.rate,
            args.seconds,
        )
        .await
        .map(drop);
        writing.store(false, std::sync::atomic::Ordering::Relaxed);
        written
    };
    let (checks, written) = tokio::join!(validating, writing_steady);
    let (checks, ()) = (checks?, written?);
    anyhow::ensure!(!checks.is_empty(), "no validation finished during the load");
    let mut check_ms: Vec<u64> = checks.iter().map(|c| c.took_ms).collect();
    check_ms.sort_unstable();

    let _ = stop_tx.send(());
    runner.await??;
    anyhow::ensure!(
        engine.validate().await?.is_empty(),
        "trees differ after live load"
    );

    let lag = steady_status.lag_a_to_b_ms;
    let b_ack_p99 = b_acks.value_at_quantile(0.99) as f64 / 1000.0;
    let ack_ms = |q: f64| acks.value_at_quantile(q) as f64 / 1000.0;
    let rows: Vec<(String, String)> = vec![
        (
            "raw writes, plain client on B (baseline)".into(),
            format!("{raw_rate:.0}/s"),
        ),
        (
            format!("raw writes on B, {} per multi-op", args.multi),
            format!("{raw_batched_rate:.0}/s"),
        ),
        (
            "raw reads (get_data), plain client on A".into(),
            format!("{read_rate:.0}/s"),
        ),
        (
            format!("bootstrap of {copied} znodes A->B"),
            format!("{boot_rate:.0}/s"),
        ),
        (
            "bootstrap vs raw writes".into(),
            format!("{:.1}%", 100.0 * boot_rate / raw_rate),
        ),
        (
            format!(
                "raw creates on B, {} per multi-op (bootstrap's baseline)",
                args.multi
            ),
            format!("{raw_batched_create_rate:.0}/s"),
        ),
        (
            "bootstrap vs batched creates".into(),
            format!("{:.1}%", 100.0 * boot_rate / raw_batched_create_rate),
        ),
        (
            "engine CPU during the bootstrap (user+sys, % of a core)".into(),
            format!("{:.0}%", boot_cpu.total()),
        ),
        (
            format!("validate (read both trees, {copied} znodes each)"),
            format!("{:.2} s", validate_secs[0]),
        ),
        (
            "validate again (ACLs known)".into(),
            format!("{:.2} s", validate_secs[1]),
        ),
        (
            format!("write ack p50 on A at {} writes/s", args.rate),
            format!("{:.1} ms", ack_ms(0.5)),
        ),
        (
            format!("write ack p99 on A at {} writes/s", args.rate),
            format!("{:.1} ms", ack_ms(0.99)),
        ),
        (
            "lag samples (changes replicated by live rounds)".into(),
            format!("{} of {steady}", lag.count),
        ),
        (
            "re-scans during the steady load (sessions dropped)".into(),
            format!("{}", steady_status.rescans - rescans_before),
        ),
        (
            format!("lag A->B p50 at {} writes/s", args.rate),
            format!("{:.1} ms", lag.p50),
        ),
        (
            format!("lag A->B p99 at {} writes/s", args.rate),
            format!("{:.1} ms", lag.p99),
        ),
        (
            format!("B's own write ack p99 at {} writes/s", args.rate),
            format!("{:.1} ms", b_ack_p99),
        ),
        (
            "lag p99 less B's ack p99 (measured apart)".into(),
            format!("{:.1} ms", lag.p99 - b_ack_p99),
        ),
        (
            "lag p99 before the engine's write to B began".into(),
            format!("{:.1} ms", steady_status.added_a_to_b_ms.p99),
        ),
        (
            format!("lag A->B max at {} writes/s", args.rate),
            format!("{:.1} ms", lag.max),
        ),
        (
            format!("replicated, {burst} writes as fast as A takes them"),
            format!("{burst_rate:.0}/s"),
        ),
        (
            "re-scans during that burst".into(),
            format!("{burst_rescans}"),
        ),
        (
            format!("A took {burst} writes in multi-ops of {}", args.multi),
            format!("{batched_taken_rate:.0}/s"),
        ),
        (
            "replicated, those writes".into(),
            format!("{batched_burst_rate:.0}/s"),
        ),
        (
            "re-scans during that burst".into(),
            format!("{batched_rescans}"),
        ),
        (
            format!(
                "validations back to back under {} writes/s for {} s",
                args.rate, args.seconds
            ),
            format!("{}", checks.len()),
        ),
        (
            "  paths they reported diverged (false alarms)".into(),
            format!("{}", checks.iter().map(|c| c.diverged).sum::<usize>()),
        ),
        (
            "  differences seen on their way, most in one".into(),
            format!("{}", checks.iter().map(|c| c.in_flight).max().unwrap_or(0)),
        ),
        (
            "  one validation took, median".into(),
            format!("{} ms", check_ms[check_ms.len() / 2]),
        ),
    ];
    println!("{:<48} {:>12}", "figure", "value");
    for (label, value) in rows {
        println!("{label:<48} {value:>12}");
    }
    Ok(())
}

/// Writes `rate` set_data/s for `seconds` to the znodes `create_many` made under `root`, one
/// client, each write a new value (`<tag> <n>`) on its own znode (a write of the same bytes
/// replicates nothing), and returns its acknowledgement times: the steady load on A, and B's own ack.
async fn steady_acks(
    client: &Client,
    root: &str,
    tag: &str,
    nodes: usize,
    rate: u64,
    seconds: u64,
) -> Result<hdrhistogram::Histogram<u64>> {
    let acks = Arc::new(std::sync::Mutex::new(
        hdrhistogram::Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?,
    ));
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    let per_tick = (rate / 100).max(1);
    let mut writers = tokio::task::JoinSet::new();
    let mut sent = 0u64;
    while sent < rate * seconds {
        tick.tick().await;
        for _ in 0..per_tick {
            let i = sent as usize % nodes;
            let (client, acks) = (client.clone(), acks.clone());
            let path = format!("{root}/d{}/n{i}", i / 100);
            let data = format!("{tag} {sent}").into_bytes();
            writers.spawn(async move {
                let started = Instant::now();
                client.set_data(&path, &data, None).await?;
                acks.lock()
                    .unwrap()
                    .record(started.elapsed().as_micros().max(1) as u64)?;
                anyhow::Ok(())
            });
            sent += 1;
        }
    }
    while let Some(r) = writers.join_next().await {
        r??;
    }
    let h = acks.lock().unwrap().clone();
    Ok(h)
}

/// Waits until the engine has replicated `count` writes from A to B.
async fn wait_caught_up(engine: &SyncEngine, count: u64) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(120);
    while engine.status().replicated_a_to_b < count {
        anyhow::ensure!(
            Instant::now() < deadline,
            "replication stalled at {} of {count}",
            engine.status().replicated_a_to_b
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(())
}
