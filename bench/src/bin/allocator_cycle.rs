//! Allocation cycle time, shaped like Mesos's `HierarchicalAllocator_BENCHMARK_Test.DeclineOffers`:
//! simulated agents and frameworks in one process; every framework has a fixed amount of work,
//! launches tasks out of its offers until it has it, and from then on declines every offer with
//! a long filter. Each round is one `allocate()` call, timed alone.
//!
//! Baseline in the same run: one pass that only sizes every agent's free resources (their scalar
//! totals, what DRF charges an offer by), the floor for any allocator that looks at each agent
//! once per cycle.
use std::{
    collections::HashMap,
    hint::black_box,
    time::{Duration, Instant},
};

use anyhow::Result;
use clap::Parser;
use hdrhistogram::Histogram;
use orca_master::{
    allocator::{Allocator, AllocatorConfig, FrameworkSpec},
    resources::Resources,
};

/// The same allocator as the `orca-master` binary, so the master measured here is the one shipped.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
struct Args {
    /// Comma-separated agent counts.
    #[arg(long, default_value = "1000,10000,50000", value_delimiter = ',')]
    agents: Vec<usize>,
    /// Comma-separated framework counts.
    #[arg(long, default_value = "1,50,200", value_delimiter = ',')]
    frameworks: Vec<usize>,
    /// Rounds after every framework has declined every agent once.
    #[arg(long, default_value_t = 5)]
    quiet_rounds: usize,
    /// Print every round.
    #[arg(long)]
    verbose: bool,
}

const AGENT: &str = "cpus:24;mem:4096;disk:4096;ports:[31000-32000]";
const TASK: &str = "cpus:1;mem:128;disk:10";

struct Figures {
    first_ms: f64,
    decline_p50_ms: f64,
    decline_max_ms: f64,
    quiet_p50_ms: f64,
    quiet_max_ms: f64,
    floor_ms: f64,
    offers: usize,
    tasks: usize,
    rounds: usize,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn run(agents: usize, frameworks: usize, quiet_rounds: usize, verbose: bool) -> Result<Figures> {
    let mut a = Allocator::new(AllocatorConfig::default());
    let total = Resources::parse(AGENT)?;
    let task = Resources::parse(TASK)?;
    let ids: Vec<String> = (0..agents).map(|i| format!("agent-{i:06}")).collect();
    for id in &ids {
        a.add_agent(id, total.clone(), &[])?;
    }
    let spec = FrameworkSpec {
        roles: vec!["*".into()],
        ..Default::default()
    };
    // Together the frameworks want half the cluster's CPUs.
    let target = (agents * 24 / 2 / frameworks).max(1);
    let mut wanted: HashMap<String, usize> = HashMap::new();
    for f in 0..frameworks {
        let id = format!("framework-{f:03}");
        a.add_framework(&id, &spec)?;
        wanted.insert(id, target);
    }
    let now = Instant::now();
    let refuse = Some(Duration::from_secs(3600));

    let floor = {
        let started = Instant::now();
        for id in &ids {
            black_box(a.agent_available(id).map(Resources::scalar_totals));
        }
        started.elapsed()
    };

    let mut decline = Histogram::<u64>::new(3)?;
    let mut quiet = Histogram::<u64>::new(3)?;
    let mut first = Duration::ZERO;
    let (mut offers_total, mut tasks) = (0, 0);
    let mut round = 0;
    let mut quiet_seen = 0;
    while quiet_seen < quiet_rounds {
        round += 1;
        let started = Instant::now();
        let offers = a.allocate(now);
        let took = started.elapsed();
        if verbose {
            println!(
                "  round {round}: allocate() took {:.3} ms, {} offers",
                ms(took),
                offers.len()
            );
        }
        if round == 1 {
            first = took;
        } else if offers.is_empty() {
            quiet.record(took.as_micros() as u64)?;
            quiet_seen += 1;
        } else {
            decline.record(took.as_micros() as u64)?;
        }
        offers_total += offers.len();
        for offer in offers {
            let left_wanted = wanted.get_mut(&*offer.framework).expect("known framework");
            let mut left = offer.resources.clone();
            while *left_wanted > 0 && left.contains(&task) {
                left.subtract(&task);
                *left_wanted -= 1;
                tasks += 1;
            }
            if !left.is_empty() {
                a.recover(
                    &offer.framework,
                    &offer.agent,
                    &offer.role,
                    &left,
                    refuse,
                    now,
                )?;
            }
        }
        anyhow::ensure!(
            round < frameworks + 50 + quiet_rounds,
            "allocation did not settle"
        );
    }
    let p = |h: &Histogram<u64>, q: f64| {
        if h.is_empty() {
            0.0
        } else {
            h.value_at_quantile(q) as f64 / 1000.0
        }
    };
    Ok(Figures {
        first_ms: ms(first),
        decline_p50_ms: p(&decline, 0.5),
        decline_max_ms: p(&decline, 1.0),
        quiet_p50_ms: p(&quiet, 0.5),
        quiet_max_ms: p(&quiet, 1.0),
        floor_ms: ms(floor),
        offers: offers_total,
        tasks,
        rounds: round,
    })
}

fn main() -> Result<()> {
    let args = Args::parse();
    println!(
        "allocation cycle (DeclineOffers shape): agents {AGENT}, tasks {TASK}, frameworks want half the CPUs"
    );
    println!(
        "{:>7} {:>5} | {:>9} {:>12} {:>12} {:>11} {:>11} | {:>9} {:>8} | {:>8} {:>8} {:>6}",
        "agents",
        "fws",
        "first ms",
        "decline p50",
        "decline max",
        "quiet p50",
        "quiet max",
        "floor ms",
        "max/flr",
        "offers",
        "tasks",
        "rounds"
    );
    for &agents in &args.agents {
        for &frameworks in &args.frameworks {
            let f = run(agents, frameworks, args.quiet_rounds, args.verbose)?;
            let worst = f.first_ms.max(f.decline_max_ms).max(f.quiet_max_ms);
            println!(
                "{:>7} {:>5} | {:>9.2} {:>12.2} {:>12.2} {:>11.3} {:>11.3} | {:>9.2} {:>8.1} | {:>8} {:>8} {:>6}",
                agents,
                frameworks,
                f.first_ms,
                f.decline_p50_ms,
                f.decline_max_ms,
                f.quiet_p50_ms,
                f.quiet_max_ms,
                f.floor_ms,
                worst / f.floor_ms.max(1e-9),
                f.offers,
                f.tasks,
                f.rounds
            );
        }
    }
    Ok(())
}
