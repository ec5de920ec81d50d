//! Allocator behaviour: the DRF paper's example, weights, quota, reservations, filters,
//! suppression and fairness under churn. Frameworks are simulated: each takes tasks of a fixed
//! size out of its offers and hands the rest back, like a real scheduler would.
use std::collections::HashMap;

use super::*;

fn res(text: &str) -> Resources {
    Resources::parse(text).unwrap()
}

fn scalars(text: &str) -> ScalarMap {
    ScalarMap::parse(text).unwrap()
}

fn spec(roles: &[&str]) -> FrameworkSpec {
    FrameworkSpec {
        roles: roles.iter().map(|r| r.to_string()).collect(),
        ..Default::default()
    }
}

/// A task launched from an offer: (framework, agent, role, resources).
type Launched = Vec<(FrameworkId, AgentId, Arc<str>, Resources)>;

/// Each framework launches at most `per_offer` tasks of its `demand` out of an offer and
/// declines the rest with `refuse`. Returns what was launched.
fn respond(
    a: &mut Allocator,
    offers: Vec<Allocation>,
    demand: &HashMap<&str, Resources>,
    per_offer: usize,
    refuse: Option<Duration>,
    now: Instant,
) -> Launched {
    let mut launched = Vec::new();
    for offer in offers {
        let task = &demand[&*offer.framework];
        let mut left = offer.resources.clone();
        let mut n = 0;
        while n < per_offer && left.contains(task) {
            left.subtract(task);
            launched.push((
                offer.framework.clone(),
                offer.agent.clone(),
                offer.role.clone(),
                task.clone(),
            ));
            n += 1;
        }
        if !left.is_empty() {
            a.recover(
                &offer.framework,
                &offer.agent,
                &offer.role,
                &left,
                refuse,
                now,
            )
            .unwrap();
        }
    }
    launched
}

fn count_by_framework(launched: &Launched) -> HashMap<String, usize> {
    let mut out = HashMap::new();
    for (fw, ..) in launched {
        *out.entry(fw.to_string()).or_default() += 1;
    }
    out
}

#[test]
fn reproduces_the_drf_paper_example() {
    // Ghodsi et al., NSDI'11, section 4: 9 CPUs and 18 GB; user A's tasks need <1 CPU, 4 GB>,
    // user B's <3 CPUs, 1 GB>. DRF gives A three tasks and B two, both at a 2/3 dominant share.
    let mut a = Allocator::new(AllocatorConfig::default());
    a.add_agent("s1", res("cpus:9;mem:18432"), &[]).unwrap();
    a.add_framework("A", &spec(&["*"])).unwrap();
    a.add_framework("B", &spec(&["*"])).unwrap();
    let demand = HashMap::from([("A", res("cpus:1;mem:4096")), ("B", res("cpus:3;mem:1024"))]);
    let now = Instant::now();
    let mut launched = Vec::new();
    // Progressive filling: one task per offer, the rest declined without a filter. A framework
    // that cannot fit its task declines with a long filter, as a saturated scheduler would.
    for _ in 0..20 {
        let offers = a.allocate(now);
        if offers.is_empty() {
            break;
        }
        for offer in offers {
            let task = &demand[&*offer.framework];
            let mut left = offer.resources.clone();
            let refuse = if left.contains(task) {
                left.subtract(task);
                launched.push((offer.framework.clone(), task.clone()));
                None
            } else {
                Some(Duration::from_secs(3600))
            };
            a.recover(
                &offer.framework,
                &offer.agent,
                &offer.role,
                &left,
                refuse,
                now,
            )
            .unwrap();
        }
    }
    let count = |fw: &str| launched.iter().filter(|(f, _)| &**f == fw).count();
    assert_eq!((count("A"), count("B")), (3, 2), "launched: {launched:?}");
    let (sa, sb) = (
        a.framework_share("A").unwrap(),
        a.framework_share("B").unwrap(),
    );
    assert!((sa - 2.0 / 3.0).abs() < 1e-9, "A's dominant share {sa}");
    assert!((sb - 2.0 / 3.0).abs() < 1e-9, "B's dominant share {sb}");
    assert_eq!(a.agent_available("s1").unwrap(), &res("mem:4096"));
}

fn fill(a: &mut Allocator, demand: &HashMap<&str, Resources>, now: Instant) -> Launched {
    let mut launched = Vec::new();
    for _ in 0..10_000 {
        let offers = a.allocate(now);
        if offers.is_empty() {
            break;
        }
        let mut got = respond(a, offers, demand, 1, Some(Duration::from_secs(3600)), now);
        if got.is_empty() {
            continue;
        }
        launched.append(&mut got);
    }
    launched
}

fn small_agents(a: &mut Allocator, count: usize, each: &str) {
    for i in 0..count {
        a.add_agent(&format!("agent-{i}"), res(each), &[]).unwrap();
    }
}

#[test]
fn role_weights_scale_dominant_shares() {
    let mut a = Allocator::new(AllocatorConfig::default());
    small_agents(&mut a, 40, "cpus:1;mem:1024");
    a.set_weight("batch", 1.0).unwrap();
    a.set_weight("prod", 3.0).unwrap();
    a.add_framework("b", &spec(&["batch"])).unwrap();
    a.add_framework("p", &spec(&["prod"])).unwrap();
    let demand = HashMap::from([("b", res("cpus:1;mem:256")), ("p", res("cpus:1;mem:256"))]);
    let counts = count_by_framework(&fill(&mut a, &demand, Instant::now()));
    assert_eq!(counts["b"] + counts["p"], 40);
    assert_eq!((counts["b"], counts["p"]), (10, 30), "{counts:?}");
}

#[test]
fn hierarchical_roles_share_between_subtrees_first() {
    // eng/web and eng/api together get what ops alone gets.
    let mut a = Allocator::new(AllocatorConfig::default());
    small_agents(&mut a, 40, "cpus:1;mem:1024");
    for (fw, role) in [("web", "eng/web"), ("api", "eng/api"), ("ops", "ops")] {
        a.add_framework(fw, &spec(&[role])).unwrap();
    }
    let task = res("cpus:1;mem:128");
    let demand = HashMap::from([("web", task.clone()), ("api", task.clone()), ("ops", task)]);
    let counts = count_by_framework(&fill(&mut a, &demand, Instant::now()));
    assert_eq!(
        (counts["web"], counts["api"], counts["ops"]),
        (10, 10, 20),
        "{counts:?}"
    );
    assert_eq!(a.role_allocation("eng").get("cpus"), Some(Scalar(20_000)));
}

#[test]
fn quota_guarantee_is_offered_first_and_its_headroom_kept() {
    let mut a = Allocator::new(AllocatorConfig::default());
    small_agents(&mut a, 10, "cpus:1;mem:1024");
    a.set_quota(
        "prod",
        Quota {
            guarantee: scalars("cpus:6"),
            limit: None,
        },
    )
    .unwrap();
    a.add_framework("greedy", &spec(&["dev"])).unwrap();
    let mut prod = spec(&["prod"]);
    prod.suppressed_roles = vec!["prod".into()];
    a.add_framework("prod", &prod).unwrap();
    let task = res("cpus:1;mem:128");
    let demand = HashMap::from([("greedy", task.clone()), ("prod", task)]);
    let now = Instant::now();
    // prod is not asking yet, but its 6 guaranteed CPUs stay free for it.
    let counts = count_by_framework(&fill(&mut a, &demand, now));
    assert_eq!(counts.get("greedy"), Some(&4), "{counts:?}");
    a.revive("prod", None).unwrap();
    let counts = count_by_framework(&fill(&mut a, &demand, now));
    assert_eq!(counts.get("prod"), Some(&6), "{counts:?}");
    assert_eq!(a.role_allocation("prod").get("cpus"), Some(Scalar(6_000)));
}

#[test]
fn quota_limit_is_never_exceeded() {
    let mut a = Allocator::new(AllocatorConfig::default());
    small_agents(&mut a, 10, "cpus:2;mem:2048");
    a.set_quota(
        "capped",
        Quota {
            guarantee: ScalarMap::default(),
            limit: Some(scalars("cpus:3.5")),
        },
    )
    .unwrap();
    a.add_framework("c", &spec(&["capped"])).unwrap();
    let demand = HashMap::from([("c", res("cpus:0.5;mem:64"))]);
    let launched = fill(&mut a, &demand, Instant::now());
    assert_eq!(launched.len(), 7, "3.5 CPUs of 0.5-CPU tasks");
    assert!(a.role_allocation("capped").get("cpus").unwrap() <= Scalar(3_500));
    // Every offer made stayed under the limit; the cluster still has 16.5 CPUs free.
    let free: i64 = (0..10)
        .map(|i| {
            a.agent_available(&format!("agent-{i}"))
                .unwrap()
                .scalar("cpus")
                .0
        })
        .sum();
    assert_eq!(free, 16_500);
}

#[test]
fn guarantee_above_limit_is_refused() {
    let mut a = Allocator::new(AllocatorConfig::default());
    let err = a
        .set_quota(
            "r",
            Quota {
                guarantee: scalars("cpus:4"),
                limit: Some(scalars("cpus:2")),
            },
        )
        .unwrap_err();
    assert!(err.to_string().contains("exceeds the limit"), "{err}");
    assert!(a.set_weight("r", 0.0).is_err());
    assert!(a.add_framework("f", &spec(&["bad role"])).is_err());
    assert!(a.add_framework("f", &spec(&["../x"])).is_err());
}

#[test]
fn declined_resources_are_filtered_until_refuse_seconds_pass_or_revive() {
    let mut a = Allocator::new(AllocatorConfig::default());
    a.add_agent("s1", res("cpus:4;mem:4096"), &[]).unwrap();
    a.add_framework("f", &spec(&["*"])).unwrap();
    let t0 = Instant::now();
    let offers = a.allocate(t0);
    assert_eq!(offers.len(), 1);
    let o = &offers[0];
    a.recover(
        &o.framework,
        &o.agent,
        &o.role,
        &o.resources,
        Some(Duration::from_secs(5)),
        t0,
    )
    .unwrap();
    assert!(
        a.allocate(t0 + Duration::from_secs(1)).is_empty(),
        "filtered for 5 s"
    );
    assert!(
        a.allocate(t0 + Duration::from_secs(4)).is_empty(),
        "still filtered"
    );
    let again = a.allocate(t0 + Duration::from_secs(6));
    assert_eq!(again.len(), 1, "the filter expired");
    let o = &again[0];
    a.recover(
        &o.framework,
        &o.agent,
        &o.role,
        &o.resources,
        Some(Duration::from_secs(3600)),
        t0,
    )
    .unwrap();
    assert!(a.allocate(t0 + Duration::from_secs(7)).is_empty());
    a.revive("f", None).unwrap();
    assert_eq!(
        a.allocate(t0 + Duration::from_secs(7)).len(),
        1,
        "revive clears filters"
    );
}

#[test]
fn a_filter_does_not_hide_more_resources_than_were_declined() {
    let mut a = Allocator::new(AllocatorConfig::default());
    a.add_agent("s1", res("cpus:4;mem:4096"), &[]).unwrap();
    a.add_framework("f", &spec(&["*"])).unwrap();
    let now = Instant::now();
    let o = a.allocate(now).remove(0);
    // Launch 2 CPUs' worth, decline the rest for an hour.
    let used = res("cpus:2;mem:2048");
    a.recover(
        &o.framework,
        &o.agent,
        &o.role,
        &o.resources.minus(&used),
        Some(Duration::from_secs(3600)),
        now,
    )
    .unwrap();
    assert!(a.allocate(now).is_empty());
    // The task ends: the agent now has more than was declined, so it is offered again.
    a.recover("f", "s1", "*", &used, None, now).unwrap();
    let offers = a.allocate(now);
    assert_eq!(offers.len(), 1);
    assert_eq!(offers[0].resources.scalar("cpus"), Scalar(4_000));
}

#[test]
fn suppressed_frameworks_get_nothing_until_revived() {
    let mut a = Allocator::new(AllocatorConfig::default());
    a.add_agent("s1", res("cpus:4;mem:4096"), &[]).unwrap();
    a.add_framework("f", &spec(&["*"])).unwrap();
    a.suppress("f", None).unwrap();
    assert!(a.allocate(Instant::now()).is_empty());
    a.revive("f", Some(&["*".to_string()])).unwrap();
    assert_eq!(a.allocate(Instant::now()).len(), 1);
}

#[test]
fn reservations_go_only_to_their_role() {
    let mut a = Allocator::new(AllocatorConfig::default());
    a.add_agent("s1", res("cpus:1;mem:1024;cpus(ops):2;mem(ops):512"), &[])
        .unwrap();
    a.add_framework("dev", &spec(&["dev"])).unwrap();
    a.add_framework("ops", &spec(&["ops/db"])).unwrap();
    let offers = a.allocate(Instant::now());
    let dev = offers.iter().find(|o| &*o.framework == "dev").unwrap();
    assert_eq!(
        dev.resources.unreserved(),
        dev.resources,
        "dev got only unreserved"
    );
    let ops = offers.iter().find(|o| &*o.framework == "ops").unwrap();
    assert_eq!(
        ops.resources.reserved_for("ops").scalar("cpus"),
        Scalar(2_000)
    );
}

#[test]
fn gpu_agents_are_offered_only_to_gpu_aware_frameworks() {
    let mut a = Allocator::new(AllocatorConfig::default());
    a.add_agent("gpu", res("cpus:4;mem:4096;gpus:1"), &[])
        .unwrap();
    a.add_agent("cpu", res("cpus:4;mem:4096"), &[]).unwrap();
    a.add_framework("plain", &spec(&["*"])).unwrap();
    let offers = a.allocate(Instant::now());
    assert_eq!(offers.len(), 1);
    assert_eq!(&*offers[0].agent, "cpu");
    let mut aware = spec(&["*"]);
    aware.gpu_aware = true;
    a.add_framework("ml", &aware).unwrap();
    let offers = a.allocate(Instant::now());
    assert_eq!(offers.len(), 1);
    assert_eq!((&*offers[0].framework, &*offers[0].agent), ("ml", "gpu"));
}

#[test]
fn recovering_what_was_not_allocated_is_an_error_and_changes_nothing() {
    let mut a = Allocator::new(AllocatorConfig::default());
    a.add_agent("s1", res("cpus:4;mem:4096"), &[]).unwrap();
    a.add_framework("f", &spec(&["*"])).unwrap();
    let now = Instant::now();
    let o = a.allocate(now).remove(0);
    let err = a
        .recover("f", "s1", "*", &res("cpus:8"), None, now)
        .unwrap_err();
    assert!(matches!(err, AllocatorError::NotAllocated { .. }), "{err}");
    assert!(a.agent_available("s1").unwrap().is_empty());
    assert!(
        a.recover("nope", "s1", "*", &o.resources, None, now)
            .is_err()
    );
    assert!(
        a.recover("f", "nope", "*", &o.resources, None, now)
            .is_err()
    );
}

#[test]
fn removing_a_framework_returns_its_resources() {
    let mut a = Allocator::new(AllocatorConfig::default());
    a.add_agent("s1", res("cpus:4;mem:4096"), &[]).unwrap();
    a.add_framework("f", &spec(&["*"])).unwrap();
    a.add_framework("g", &spec(&["*"])).unwrap();
    let now = Instant::now();
    let offers = a.allocate(now);
    assert_eq!(offers.len(), 1);
    let holder = offers[0].framework.to_string();
    a.remove_framework(&holder).unwrap();
    assert_eq!(a.agent_available("s1").unwrap(), &res("cpus:4;mem:4096"));
    let offers = a.allocate(now);
    assert_ne!(&*offers[0].framework, holder.as_str());
}

#[test]
fn an_agent_registering_with_running_tasks_is_charged_for_them() {
    let mut a = Allocator::new(AllocatorConfig::default());
    a.add_framework("f", &spec(&["*"])).unwrap();
    a.add_agent(
        "s1",
        res("cpus:4;mem:4096"),
        &[("f".into(), "*".into(), res("cpus:3;mem:1024"))],
    )
    .unwrap();
    assert_eq!(a.agent_available("s1").unwrap(), &res("cpus:1;mem:3072"));
    a.allocate(Instant::now());
    assert!(a.framework_share("f").unwrap() > 0.99);
    a.set_agent_active("s1", false).unwrap();
    a.recover(
        "f",
        "s1",
        "*",
        &res("cpus:1;mem:3072"),
        None,
        Instant::now(),
    )
    .unwrap();
    assert!(
        a.allocate(Instant::now()).is_empty(),
        "inactive agents are not offered"
    );
}

/// A deterministic generator for the churn simulation.
struct XorShift(u64);
impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[test]
fn stays_fair_under_churn() {
    // Three roles weighted 1:2:3, each with two frameworks that always want more, tasks ending
    // at random, one framework leaving and another arriving halfway. After every tick the
    // weighted dominant shares of the roles stay within a task's worth of each other.
    let mut a = Allocator::new(AllocatorConfig::default());
    small_agents(&mut a, 60, "cpus:4;mem:8192");
    let task = res("cpus:1;mem:1024");
    let mut demand = HashMap::new();
    for (role, weight) in [("r1", 1.0), ("r2", 2.0), ("r3", 3.0)] {
        a.set_weight(role, weight).unwrap();
        for i in 0..2 {
            let name: &'static str = Box::leak(format!("{role}-f{i}").into_boxed_str());
            a.add_framework(name, &spec(&[role])).unwrap();
            demand.insert(name, task.clone());
        }
    }
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    let mut running: Launched = Vec::new();
    let now = Instant::now();
    let one_task_share = 1.0 / 240.0;
    for tick in 0..400 {
        if tick == 200 {
            running.retain(|(fw, ..)| &**fw != "r2-f0");
            a.remove_framework("r2-f0").unwrap();
            a.add_framework("r3-late", &spec(&["r3"])).unwrap();
            demand.insert("r3-late", task.clone());
        }
        // About 5 % of running tasks finish each tick.
        let mut i = 0;
        while i < running.len() {
            if rng.next().is_multiple_of(20) {
                let (fw, agent, role, r) = running.swap_remove(i);
                a.recover(&fw, &agent, &role, &r, None, now).unwrap();
            } else {
                i += 1;
            }
        }
        let offers = a.allocate(now);
        // Leftovers are declined with Mesos's default 5 s filter (the clock does not move here,
        // so a filter holds until the agent has more to offer than was declined).
        let refuse = Some(Duration::from_secs(5));
        running.extend(respond(&mut a, offers, &demand, usize::MAX, refuse, now));
        // Shares converge from empty by tick 20 and again within 20 ticks of r2 losing half of
        // its tasks at tick 200 (there is no preemption: only ending tasks free resources).
        if tick > 20 && !(200..220).contains(&tick) {
            let shares: Vec<f64> = ["r1", "r2", "r3"]
                .iter()
                .map(|r| {
                    let cpus = a
                        .role_allocation(r)
                        .get("cpus")
                        .unwrap_or_default()
                        .as_f64();
                    let weight = match *r {
                        "r1" => 1.0,
                        "r2" => 2.0,
                        _ => 3.0,
                    };
                    cpus / 240.0 / weight
                })
                .collect();
            let (lo, hi) = shares
                .iter()
                .fold((f64::MAX, 0.0f64), |(lo, hi), s| (lo.min(*s), hi.max(*s)));
            // Offers go out one agent (4 tasks) at a time and tasks end at random, so allow
            // a few tasks' worth of difference, no more.
            assert!(
                hi - lo <= 4.0 * one_task_share,
                "tick {tick}: weighted shares {shares:?} drifted apart"
            );
        }
    }
    // Nearly the whole cluster stays in use.
    let used: f64 = ["r1", "r2", "r3"]
        .iter()
        .map(|r| {
            a.role_allocation(r)
                .get("cpus")
                .unwrap_or_default()
                .as_f64()
        })
        .sum();
    assert!(used >= 230.0, "only {used} of 240 CPUs in use");
}
