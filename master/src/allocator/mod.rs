//! The allocator: decides which framework is offered which agent's resources.
//!
//! Hierarchical weighted DRF over roles and frameworks ([`sorter`]), with Mesos's semantics:
//! - **Quota** per role: a *guarantee* the role is offered first (stage 1, and headroom for it
//!   is kept back from everyone else in stage 2) and a *limit* it is never offered beyond.
//! - **Static reservations**: resources reserved for a role go only to that role or its
//!   descendants.
//! - **Offer filters**: a framework that declines with `refuse_seconds` is not offered the same
//!   (or a smaller) set of that agent's resources until the filter expires or it revives.
//! - **Suppression**: a suppressed role of a framework receives no offers until revived.
//! - GPU agents are offered only to GPU-aware frameworks, as in Mesos.
//!
//! The allocator is synchronous and owns no clock or timer: the master calls [`Allocator::allocate`]
//! on its interval and after events, passing `now`, and turns each [`Allocation`] into an offer.
//! Offered resources stay allocated until the master hands them back with [`Allocator::recover`]
//! (declined, unused part of an accept, rescinded, or a task ended).
mod filters;
pub mod sorter;

use std::{
    borrow::Cow,
    collections::HashMap,
    ops::ControlFlow,
    sync::Arc,
    time::{Duration, Instant},
};

use crate::resources::{Resources, Scalar, ScalarMap, is_same_or_ancestor};
use filters::OfferFilters;
use sorter::DrfSorter;

pub type AgentId = Arc<str>;
pub type FrameworkId = Arc<str>;

/// With at most this many frameworks left to offer an agent to, `pick` compares them
/// directly instead of walking the DRF order.
const FEW_CANDIDATES: u32 = 16;

/// Mesos caps `refuse_seconds` at one year; longer values are clamped.
pub const MAX_REFUSE: Duration = Duration::from_secs(365 * 24 * 3600);

#[derive(Clone, Debug)]
pub struct AllocatorConfig {
    /// An offer must reach every amount of at least one of these (Mesos's default:
    /// `cpus:0.01` or `mem:32`); smaller leftovers are not offered.
    pub min_allocatable: Vec<ScalarMap>,
    /// Resource kinds that do not count towards DRF shares.
    pub fair_sharing_excluded: Vec<String>,
}

impl Default for AllocatorConfig {
    fn default() -> Self {
        AllocatorConfig {
            min_allocatable: vec![
                ScalarMap::parse("cpus:0.01").expect("valid"),
                ScalarMap::parse("mem:32").expect("valid"),
            ],
            fair_sharing_excluded: Vec::new(),
        }
    }
}

/// What a framework registers with.
#[derive(Clone, Debug, Default)]
pub struct FrameworkSpec {
    pub roles: Vec<String>,
    /// Roles that start suppressed (Mesos `suppressed_roles` on SUBSCRIBE).
    pub suppressed_roles: Vec<String>,
    /// Whether the framework can use GPUs (Mesos capability `GPU_RESOURCES`).
    pub gpu_aware: bool,
}

/// A role's quota. Kinds not named are neither guaranteed nor limited.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Quota {
    pub guarantee: ScalarMap,
    pub limit: Option<ScalarMap>,
}

/// Resources set aside for one framework in one role: the master makes an offer of them.
#[derive(Clone, Debug, PartialEq)]
pub struct Allocation {
    pub framework: FrameworkId,
    pub agent: AgentId,
    pub role: Arc<str>,
    pub resources: Resources,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum AllocatorError {
    #[error("agent {0} is already registered with the allocator")]
    DuplicateAgent(String),
    #[error("framework {0} is already registered with the allocator")]
    DuplicateFramework(String),
    #[error("unknown agent {0}")]
    UnknownAgent(String),
    #[error("unknown framework {0}")]
    UnknownFramework(String),
    #[error("framework {framework} is not subscribed to role {role}")]
    RoleNotSubscribed { framework: String, role: String },
    #[error("framework {framework} holds no {resources} on agent {agent} in role {role}")]
    NotAllocated {
        framework: String,
        agent: String,
        role: String,
        resources: String,
    },
    #[error("role weight must be a finite number > 0, got {0}")]
    BadWeight(f64),
    #[error("quota for role {role}: guarantee of {kind} exceeds the limit")]
    GuaranteeAboveLimit { role: String, kind: String },
    #[error(
        "`{0}` is not a valid role name: use letters, digits, `-`, `_`, `.`, with `/` between levels"
    )]
    BadRole(String),
}

#[derive(Debug)]
struct AgentState {
    id: AgentId,
    total: Resources,
    available: Resources,
    active: bool,
    has_gpus: bool,
    /// Whether any of the agent's resources are reserved (offers then depend on the role).
    has_reservations: bool,
    /// What is allocated on this agent, per framework and role.
    allocations: Vec<Held>,
    filters: OfferFilters,
    /// Bumped whenever `available` grows or a filter is removed.
    version: u64,
    /// Set when a whole scan offered nothing: (allocator epoch, agent version) at the time.
    /// While both are unchanged and no filter has expired, scanning again cannot offer anything.
    quiet: Option<(u64, u64)>,
}

/// Resources one framework holds in one role on one agent.
#[derive(Debug)]
struct Held {
    fw: usize,
    client: u32,
    role: Arc<str>,
    resources: Resources,
}

/// A framework's subscription to one role.
#[derive(Debug)]
struct Subscription {
    role: Arc<str>,
    /// Dense number of this (framework, role) pair: offer filters and per-cycle eligibility
    /// are indexed by it.
    client: u32,
    suppressed: bool,
}

#[derive(Debug)]
struct FrameworkState {
    id: FrameworkId,
    roles: Vec<Subscription>,
    /// Roles the framework left (UPDATE_FRAMEWORK) that may still hold allocations: their
    /// clients stay in the sorter until the framework is removed, and are never offered.
    retired: Vec<Subscription>,
    active: bool,
    gpu_aware: bool,
}

/// Per-cycle view of quota: what guarantees still need and what the cluster has free.
#[derive(Debug, Default)]
struct Headroom {
    /// Unallocated unreserved scalars on active agents.
    available: ScalarMap,
    /// Sum of unmet guarantees of top-level quota roles.
    required: ScalarMap,
}

#[derive(Debug)]
pub struct Allocator {
    config: AllocatorConfig,
    agents: Vec<Option<AgentState>>,
    agent_slots: HashMap<AgentId, usize>,
    free_agent_slots: Vec<usize>,
    frameworks: Vec<Option<FrameworkState>>,
    framework_slots: HashMap<FrameworkId, usize>,
    free_framework_slots: Vec<usize>,
    sorter: DrfSorter,
    quotas: HashMap<Arc<str>, Quota>,
    totals: ScalarMap,
    totals_changed: bool,
    /// Bumped by every event that can make an agent offerable again without touching it.
    epoch: u64,
    cycles: u64,
    next_client: u32,
    free_clients: Vec<u32>,
    /// Per cycle, a bit per client that may not be offered anything (no such client, framework
    /// inactive, role suppressed).
    blocked: Vec<u64>,
    /// `blocked`, plus the clients that may not be offered GPU agents.
    blocked_on_gpus: Vec<u64>,
    /// Reused per agent by `pick`.
    scratch: Vec<u64>,
}

impl Allocator {
    pub fn new(config: AllocatorConfig) -> Self {
        let excluded = config
            .fair_sharing_excluded
            .iter()
            .map(|s| Arc::<str>::from(s.as_str()))
            .collect();
        Allocator {
            config,
            agents: Vec::new(),
            agent_slots: HashMap::new(),
            free_agent_slots: Vec::new(),
            frameworks: Vec::new(),
            framework_slots: HashMap::new(),
            free_framework_slots: Vec::new(),
            sorter: DrfSorter::new(excluded),
            quotas: HashMap::new(),
            totals: ScalarMap::default(),
            totals_changed: false,
            epoch: 0,
            cycles: 0,
            next_client: 0,
            free_clients: Vec::new(),
            blocked: Vec::new(),
            blocked_on_gpus: Vec::new(),
            scratch: Vec::new(),
        }
    }

    // ---- agents ----

    /// Adds an agent. `used` lists what frameworks already run there (a re-registering agent).
    pub fn add_agent(
        &mut self,
        id: &str,
        total: Resources,
        used: &[(FrameworkId, Arc<str>, Resources)],
    ) -> Result<(), AllocatorError> {
        if self.agent_slots.contains_key(id) {
            return Err(AllocatorError::DuplicateAgent(id.to_owned()));
        }
        let mut allocations = Vec::new();
        let mut available = total.clone();
        for (fw_id, role, resources) in used {
            let fw = self.framework_slot(fw_id)?;
            let sub = self.subscription(fw, role)?;
            let (client, role) = (sub.client, sub.role.clone());
            available.subtract(resources);
            self.sorter
                .allocated(client, &resources.scalar_totals(), true);
            allocations.push(Held {
                fw,
                client,
                role,
                resources: resources.clone(),
            });
        }
        let id: AgentId = id.into();
        let state = AgentState {
            id: id.clone(),
            has_gpus: total.scalar("gpus").0 > 0,
            has_reservations: total.has_reservations(),
            total,
            available,
            active: true,
            allocations,
            filters: OfferFilters::default(),
            version: 0,
            quiet: None,
        };
        let slot = match self.free_agent_slots.pop() {
            Some(slot) => {
                self.agents[slot] = Some(state);
                slot
            }
            None => {
                self.agents.push(Some(state));
                self.agents.len() - 1
            }
        };
        self.agent_slots.insert(id, slot);
        self.totals_changed = true;
        self.epoch += 1;
        Ok(())
    }

    /// Removes an agent and everything allocated on it (the master has already rescinded its
    /// offers and accounted for its tasks).
    pub fn remove_agent(&mut self, id: &str) -> Result<(), AllocatorError> {
        let slot = self
            .agent_slots
            .remove(id)
            .ok_or_else(|| AllocatorError::UnknownAgent(id.to_owned()))?;
        let agent = self.agents[slot].take().expect("slot in use");
        for held in agent.allocations {
            self.sorter
                .allocated(held.client, &held.resources.scalar_totals(), false);
        }
        self.free_agent_slots.push(slot);
        self.totals_changed = true;
        self.epoch += 1;
        Ok(())
    }

    /// An inactive agent (unreachable) is not offered; its allocations stay until it returns or
    /// is removed.
    pub fn set_agent_active(&mut self, id: &str, active: bool) -> Result<(), AllocatorError> {
        let agent = self.agent_mut(id)?;
        agent.active = active;
        agent.version += 1;
        self.epoch += 1;
        Ok(())
    }

    pub fn agent_available(&self, id: &str) -> Option<&Resources> {
        let slot = *self.agent_slots.get(id)?;
        self.agents[slot].as_ref().map(|a| &a.available)
    }

    pub fn agent_total(&self, id: &str) -> Option<&Resources> {
        let slot = *self.agent_slots.get(id)?;
        self.agents[slot].as_ref().map(|a| &a.total)
    }

    // ---- frameworks ----

    pub fn add_framework(&mut self, id: &str, spec: &FrameworkSpec) -> Result<(), AllocatorError> {
        if self.framework_slots.contains_key(id) {
            return Err(AllocatorError::DuplicateFramework(id.to_owned()));
        }
        for role in spec.roles.iter().chain(&spec.suppressed_roles) {
            validate_role(role)?;
        }
        let id: FrameworkId = id.into();
        let slot = self.free_framework_slots.pop().unwrap_or_else(|| {
            self.frameworks.push(None);
            self.frameworks.len() - 1
        });
        let mut roles = Vec::new();
        for role in &spec.roles {
            roles.push(self.subscribe(slot, role, spec));
        }
        self.frameworks[slot] = Some(FrameworkState {
            id: id.clone(),
            roles,
            retired: Vec::new(),
            active: true,
            gpu_aware: spec.gpu_aware,
        });
        self.framework_slots.insert(id, slot);
        self.epoch += 1;
        Ok(())
    }

    /// Removes a framework; everything allocated to it returns to the agents.
    pub fn remove_framework(&mut self, id: &str) -> Result<(), AllocatorError> {
        let slot = self.framework_slot(id)?;
        self.framework_slots.remove(id);
        let fw = self.frameworks[slot].take().expect("slot in use");
        for agent in self.agents.iter_mut().flatten() {
            let before = agent.allocations.len();
            agent.allocations.retain(|held| {
                if held.fw == slot {
                    agent.available.add(&held.resources);
                    false
                } else {
                    true
                }
            });
            agent
                .filters
                .remove(|client| fw.roles.iter().any(|s| s.client == client));
            if agent.allocations.len() != before {
                agent.version += 1;
            }
        }
        for sub in fw.roles.into_iter().chain(fw.retired) {
            self.sorter.remove_client(sub.client);
            self.free_clients.push(sub.client);
        }
        self.free_framework_slots.push(slot);
        self.epoch += 1;
        Ok(())
    }

    /// An inactive framework (disconnected, within its failover timeout) is not offered.
    pub fn set_framework_active(&mut self, id: &str, active: bool) -> Result<(), AllocatorError> {
        let slot = self.framework_slot(id)?;
        self.frameworks[slot].as_mut().expect("slot in use").active = active;
        self.epoch += 1;
        Ok(())
    }

    /// Stops offers to the framework in `roles` (all its roles when `None`).
    pub fn suppress(&mut self, id: &str, roles: Option<&[String]>) -> Result<(), AllocatorError> {
        let slot = self.framework_slot(id)?;
        let fw = self.frameworks[slot].as_mut().expect("slot in use");
        for sub in &mut fw.roles {
            if roles.is_none_or(|list| list.iter().any(|r| **r == *sub.role)) {
                sub.suppressed = true;
            }
        }
        Ok(())
    }

    /// Clears the framework's offer filters and unsuppresses it in `roles` (all when `None`).
    pub fn revive(&mut self, id: &str, roles: Option<&[String]>) -> Result<(), AllocatorError> {
        let slot = self.framework_slot(id)?;
        let fw = self.frameworks[slot].as_mut().expect("slot in use");
        let selected = |role: &str| roles.is_none_or(|list| list.iter().any(|r| r == role));
        let mut clients = Vec::new();
        for sub in &mut fw.roles {
            if selected(&sub.role) {
                sub.suppressed = false;
                clients.push(sub.client);
            }
        }
        for agent in self.agents.iter_mut().flatten() {
            if agent.filters.remove(|client| clients.contains(&client)) {
                agent.version += 1;
            }
        }
        self.epoch += 1;
        Ok(())
    }

    /// Changes the framework's roles (Mesos UPDATE_FRAMEWORK). Allocations in a role it leaves
    /// stay charged to that role until recovered.
    pub fn update_framework(
        &mut self,
        id: &str,
        spec: &FrameworkSpec,
    ) -> Result<(), AllocatorError> {
        for role in spec.roles.iter().chain(&spec.suppressed_roles) {
            validate_role(role)?;
        }
        let slot = self.framework_slot(id)?;
        let fw = self.frameworks[slot].as_mut().expect("slot in use");
        let mut kept = std::mem::take(&mut fw.roles);
        let mut roles = Vec::new();
        for role in &spec.roles {
            match kept.iter().position(|s| &*s.role == role.as_str()) {
                Some(at) => {
                    let mut sub = kept.swap_remove(at);
                    sub.suppressed = spec.suppressed_roles.iter().any(|r| r == role);
                    roles.push(sub);
                }
                None => roles.push(self.subscribe(slot, role, spec)),
            }
        }
        // Roles left keep their sorter entry while allocations are charged to them; their
        // client numbers are retired (never offered again) rather than reused.
        for agent in self.agents.iter_mut().flatten() {
            agent
                .filters
                .remove(|client| kept.iter().any(|s| s.client == client));
        }
        let fw = self.frameworks[slot].as_mut().expect("slot in use");
        fw.retired.append(&mut kept);
        fw.roles = roles;
        fw.gpu_aware = spec.gpu_aware;
        self.epoch += 1;
        Ok(())
    }

    // ---- roles ----

    pub fn set_weight(&mut self, role: &str, weight: f64) -> Result<(), AllocatorError> {
        validate_role(role)?;
        if !weight.is_finite() || weight <= 0.0 {
            return Err(AllocatorError::BadWeight(weight));
        }
        let node = self.sorter.ensure_role(role);
        self.sorter.set_weight(node, weight);
        Ok(())
    }

    pub fn set_quota(&mut self, role: &str, quota: Quota) -> Result<(), AllocatorError> {
        validate_role(role)?;
        if let Some(limit) = &quota.limit {
            for (kind, guaranteed) in quota.guarantee.iter() {
                if limit.get(kind).is_some_and(|l| l < guaranteed) {
                    return Err(AllocatorError::GuaranteeAboveLimit {
                        role: role.to_owned(),
                        kind: kind.to_owned(),
                    });
                }
            }
        }
        let node = self.sorter.ensure_role(role);
        let name = self.sorter.role_name(node).clone();
        if quota == Quota::default() {
            self.quotas.remove(&name);
        } else {
            self.quotas.insert(name, quota);
        }
        self.epoch += 1;
        Ok(())
    }

    /// Every role with a quota.
    pub fn quotas(&self) -> impl Iterator<Item = (&str, &Quota)> {
        self.quotas.iter().map(|(role, quota)| (&**role, quota))
    }

    pub fn quota(&self, role: &str) -> Option<&Quota> {
        self.quotas.get(role)
    }

    /// The role's allocation (offered plus in use), its descendants included.
    pub fn role_allocation(&self, role: &str) -> ScalarMap {
        self.sorter
            .role_index(role)
            .map(|n| self.sorter.subtree_allocation(n).clone())
            .unwrap_or_default()
    }

    /// (role, weight, weighted dominant share) for every role known.
    pub fn role_shares(&self) -> Vec<(Arc<str>, f64, f64)> {
        self.sorter
            .roles()
            .map(|(n, name)| {
                (
                    name.clone(),
                    self.sorter.weight(n),
                    self.sorter.role_share(n),
                )
            })
            .collect()
    }

    /// The framework's dominant share of the cluster over all its roles.
    /// The framework's roles it suppressed offers in.
    pub fn suppressed_roles(&self, id: &str) -> Vec<String> {
        let Some(fw) = self
            .framework_slots
            .get(id)
            .and_then(|slot| self.frameworks[*slot].as_ref())
        else {
            return Vec::new();
        };
        fw.roles
            .iter()
            .filter(|sub| sub.suppressed)
            .map(|sub| sub.role.to_string())
            .collect()
    }

    pub fn framework_share(&self, id: &str) -> Option<f64> {
        let slot = *self.framework_slots.get(id)?;
        let fw = self.frameworks[slot].as_ref()?;
        let mut total = ScalarMap::default();
        for sub in fw.roles.iter().chain(&fw.retired) {
            if let Some(c) = self.sorter.client(sub.client) {
                total.add_all(&c.alloc);
            }
        }
        Some(self.sorter.share(&total))
    }

    // ---- allocations ----

    /// Hands resources back: declined or unused offer resources, a rescinded offer, or a
    /// finished task's. With `refuse`, the framework is not offered these resources (or a subset)
    /// on this agent again until `now + refuse` or until it revives.
    pub fn recover(
        &mut self,
        framework: &str,
        agent: &str,
        role: &str,
        resources: &Resources,
        refuse: Option<Duration>,
        now: Instant,
    ) -> Result<(), AllocatorError> {
        let fw = self.framework_slot(framework)?;
        let slot = *self
            .agent_slots
            .get(agent)
            .ok_or_else(|| AllocatorError::UnknownAgent(agent.to_owned()))?;
        let state = self.agents[slot].as_mut().expect("slot in use");
        let not_allocated = || AllocatorError::NotAllocated {
            framework: framework.to_owned(),
            agent: agent.to_owned(),
            role: role.to_owned(),
            resources: resources.to_string(),
        };
        let pos = state
            .allocations
            .iter()
            .position(|h| h.fw == fw && &*h.role == role && h.resources.contains(resources))
            .ok_or_else(not_allocated)?;
        let client = state.allocations[pos].client;
        state.allocations[pos].resources.subtract(resources);
        if state.allocations[pos].resources.is_empty() {
            state.allocations.swap_remove(pos);
        }
        state.available.add(resources);
        state.version += 1;
        // Only a role the framework is still subscribed to can be filtered.
        let subscribed = self.frameworks[fw]
            .as_ref()
            .is_some_and(|f| f.roles.iter().any(|s| s.client == client));
        if let Some(refuse) = refuse.filter(|d| !d.is_zero() && subscribed) {
            let until = now + refuse.min(MAX_REFUSE);
            let state = self.agents[slot].as_mut().expect("slot in use");
            state
                .filters
                .insert(client, resources.clone(), until, &state.available);
        }
        self.sorter
            .allocated(client, &resources.scalar_totals(), false);
        if !self.quotas.is_empty() {
            // Freed resources change headroom and limits for every agent.
            self.epoch += 1;
        }
        Ok(())
    }

    /// Runs one allocation cycle over every agent and returns what to offer.
    pub fn allocate(&mut self, now: Instant) -> Vec<Allocation> {
        if self.totals_changed {
            self.recompute_totals();
        }
        self.cycles += 1;
        self.refresh_eligibility();
        let count = self.agents.len();
        let mut out = Vec::with_capacity(count.min(self.agent_slots.len()));
        if count == 0 {
            return out;
        }
        // Start at a different agent each cycle so no agent is always offered last.
        let start = (self.cycles as usize).wrapping_mul(7919) % count;
        let order: Vec<usize> = (0..count).map(|i| (start + i) % count).collect();

        if self.quotas.is_empty() {
            for &slot in &order {
                self.allocate_agent(slot, now, None, &mut out);
            }
            return out;
        }
        let mut headroom = self.headroom();
        for &slot in &order {
            self.allocate_agent(
                slot,
                now,
                Some((Stage::Guarantees, &mut headroom)),
                &mut out,
            );
        }
        for &slot in &order {
            self.allocate_agent(slot, now, Some((Stage::Fair, &mut headroom)), &mut out);
        }
        out
    }

    /// Which clients may be offered anything this cycle (nothing changes them mid-cycle).
    fn refresh_eligibility(&mut self) {
        let words = (self.next_client as usize).div_ceil(64);
        self.blocked.clear();
        self.blocked.resize(words, u64::MAX);
        self.blocked_on_gpus.clear();
        self.blocked_on_gpus.resize(words, u64::MAX);
        for fw in self.frameworks.iter().flatten() {
            for sub in &fw.roles {
                let (word, bit) = (sub.client as usize / 64, 1u64 << (sub.client % 64));
                if fw.active && !sub.suppressed {
                    self.blocked[word] &= !bit;
                    if fw.gpu_aware {
                        self.blocked_on_gpus[word] &= !bit;
                    }
                }
            }
        }
    }

    /// Numbers a new (framework, role) subscription and enters it in the sorter.
    fn subscribe(&mut self, slot: usize, role: &str, spec: &FrameworkSpec) -> Subscription {
        let node = self.sorter.ensure_role(role);
        let client = self.free_clients.pop().unwrap_or_else(|| {
            self.next_client += 1;
            self.next_client - 1
        });
        self.sorter.add_client(node, slot, client);
        Subscription {
            role: self.sorter.role_name(node).clone(),
            client,
            suppressed: spec.suppressed_roles.iter().any(|r| r == role),
        }
    }

    fn allocate_agent(
        &mut self,
        slot: usize,
        now: Instant,
        mut quota: Option<(Stage, &mut Headroom)>,
        out: &mut Vec<Allocation>,
    ) {
        let epoch = self.epoch;
        let Some(agent) = self.agents[slot].as_mut() else {
            return;
        };
        if !agent.active || agent.available.is_empty() {
            return;
        }
        // Expired filters can make the agent offerable again.
        if agent.filters.expire(now) {
            agent.version += 1;
        }
        if quota.is_none() && agent.quiet == Some((epoch, agent.version)) {
            return;
        }
        agent.filters.prepare(&agent.available);
        let mut offered_any = false;
        let mut skip = std::mem::take(&mut self.scratch);
        while let Some((fw, client, node, part)) = self.pick(
            slot,
            now,
            quota.as_mut().map(|(s, h)| (*s, &**h)),
            &mut skip,
        ) {
            let part_is_whole = part.is_none();
            let resources = match part {
                Some(part) => part,
                // The whole agent: what is free moves into the offer.
                None => {
                    std::mem::take(&mut self.agents[slot].as_mut().expect("slot in use").available)
                }
            };
            let scalars = resources.scalar_totals();
            if let Some((_, headroom)) = quota.as_mut() {
                headroom
                    .available
                    .subtract_all(&resources.unreserved().scalar_totals());
                self.refresh_required(headroom);
            }
            self.sorter.allocated(client, &scalars, true);
            let role = self.sorter.role_name(node).clone();
            let agent = self.agents[slot].as_mut().expect("slot in use");
            if !part_is_whole {
                agent.available.subtract(&resources);
            }
            match agent.allocations.iter_mut().find(|h| h.client == client) {
                Some(held) => held.resources.add(&resources),
                None => agent.allocations.push(Held {
                    fw,
                    client,
                    role: role.clone(),
                    resources: resources.clone(),
                }),
            }
            let framework = self.frameworks[fw]
                .as_ref()
                .expect("slot in use")
                .id
                .clone();
            out.push(Allocation {
                framework,
                agent: agent.id.clone(),
                role,
                resources,
            });
            offered_any = true;
            if agent.available.is_empty() {
                break;
            }
            agent.filters.prepare(&agent.available);
        }
        self.scratch = skip;
        if !offered_any && quota.is_none() {
            let agent = self.agents[slot].as_mut().expect("slot in use");
            agent.quiet = Some((epoch, agent.version));
        }
    }

    /// The first (framework, role) in DRF order that may be offered something on this agent,
    /// with what it would be offered: `None` when that is everything the agent has free.
    fn pick(
        &self,
        slot: usize,
        now: Instant,
        quota: Option<(Stage, &Headroom)>,
        skip: &mut Vec<u64>,
    ) -> Option<(usize, u32, usize, Option<Resources>)> {
        let agent = self.agents[slot].as_ref().expect("slot in use");
        // What the agent can offer depends on the role only: computed once per role met, and
        // not copied at all when the agent has no reservations and no quota applies.
        let plain = quota.is_none() && !agent.has_reservations;
        // One bit per client this agent cannot go to: blocked this cycle, not GPU-aware on a
        // GPU agent, or (whole-agent offers) refusing all of it. When every bit is set the
        // agent is skipped without walking the DRF order.
        let base = if agent.has_gpus {
            &self.blocked_on_gpus
        } else {
            &self.blocked
        };
        skip.clear();
        skip.extend_from_slice(base);
        if plain {
            agent.filters.add_refusing_to(skip);
        }
        let last_bits = self.next_client % 64;
        if last_bits != 0
            && let Some(word) = skip.last_mut()
        {
            *word |= u64::MAX << last_bits;
        }
        let candidates: u32 = skip.iter().map(|word| word.count_zeros()).sum();
        if candidates == 0 {
            return None;
        }
        if plain && candidates <= FEW_CANDIDATES {
            // Late in a decline cascade most frameworks refuse this agent: compare the few
            // that do not instead of walking the whole order past the others.
            let mut best: Option<u32> = None;
            for (w, &word) in skip.iter().enumerate() {
                let mut free = !word;
                while free != 0 {
                    let id = (w * 64) as u32 + free.trailing_zeros();
                    free &= free - 1;
                    if best.is_none_or(|b| self.sorter.precedes(id, b)) {
                        best = Some(id);
                    }
                }
            }
            let id = best?;
            if !self.allocatable(&agent.available) {
                return None;
            }
            let client = self.sorter.client(id)?;
            return Some((client.fw, id, client.node, None));
        }
        let skip = &*skip;
        let mut offer: Option<(usize, Cow<'_, Resources>, bool)> = None;
        let mut found = None;
        let _ = self.sorter.visit(&mut |node, client| {
            let id = client.id as usize;
            if skip
                .get(id / 64)
                .is_none_or(|word| word & (1 << (id % 64)) != 0)
            {
                return ControlFlow::Continue(());
            }
            if plain {
                if offer.is_none() {
                    let whole = &agent.available;
                    let worth = self.allocatable(whole);
                    offer = Some((node, Cow::Borrowed(whole), worth));
                }
            } else if offer.as_ref().is_none_or(|(n, ..)| *n != node) {
                let role = self.sorter.role_name(node);
                let usable = match quota {
                    None => agent.available.usable_by(role),
                    Some((stage, headroom)) => {
                        self.quota_capped(node, &agent.available, stage, headroom)
                    }
                };
                let worth = !usable.is_empty() && self.allocatable(&usable);
                offer = Some((node, Cow::Owned(usable), worth));
            }
            let (_, resources, worth) = offer.as_ref().expect("set above");
            if !*worth {
                // Too small to offer: the same for every client when the offer is the whole
                // agent, so stop looking.
                return if plain {
                    ControlFlow::Break(())
                } else {
                    ControlFlow::Continue(())
                };
            }
            if !plain && agent.filters.refuses(client.id, resources, now) {
                return ControlFlow::Continue(());
            }
            found = Some((client.fw as usize, client.id, node));
            ControlFlow::Break(())
        });
        let (fw, client, node) = found?;
        let (_, resources, ..) = offer.expect("an offer was found");
        let part = match resources {
            Cow::Borrowed(_) => None,
            Cow::Owned(part) => Some(part),
        };
        Some((fw, client, node, part))
    }

    /// What role `node` may take from `available` under quota rules in this stage.
    fn quota_capped(
        &self,
        node: usize,
        available: &Resources,
        stage: Stage,
        headroom: &Headroom,
    ) -> Resources {
        let role = self.sorter.role_name(node);
        let usable = available.usable_by(role);
        let mut caps = ScalarMap::default();
        let mut cap = |kind: &str, amount: Scalar| caps.cap_at(kind, Scalar(amount.0.max(0)));
        // Limits of the role and of every ancestor.
        for n in self.sorter.lineage(node) {
            if let Some(limit) = self
                .quotas
                .get(self.sorter.role_name(n))
                .and_then(|q| q.limit.as_ref())
            {
                let consumed = self.sorter.subtree_allocation(n);
                for (kind, l) in limit.iter() {
                    cap(kind, Scalar(l.0 - consumed.get(kind).unwrap_or_default().0));
                }
            }
        }
        let own_need = self.unmet_guarantee(node);
        match stage {
            Stage::Guarantees => {
                // Only roles (or descendants of roles) with an unmet guarantee, up to the need.
                let Some(need) = self
                    .sorter
                    .lineage(node)
                    .find_map(|n| self.unmet_guarantee(n).filter(|m| !m.is_empty()))
                else {
                    return Resources::new();
                };
                for (kind, amount) in need.iter() {
                    cap(kind, amount);
                }
                // Reservations are the role's own; stage 1 offers only unreserved resources
                // towards the guarantee and leaves reservations to stage 2.
                return usable.unreserved().cap_unreserved(&caps);
            }
            Stage::Fair => {
                for (kind, required) in headroom.required.iter() {
                    let free = headroom.available.get(kind).unwrap_or_default();
                    let mine = own_need
                        .as_ref()
                        .and_then(|m| m.get(kind))
                        .unwrap_or_default();
                    cap(kind, Scalar(free.0 - required.0 + mine.0));
                }
            }
        }
        usable.cap_unreserved(&caps)
    }

    /// The part of the role's guarantee its allocation does not cover yet.
    fn unmet_guarantee(&self, node: usize) -> Option<ScalarMap> {
        let quota = self.quotas.get(self.sorter.role_name(node))?;
        Some(
            quota
                .guarantee
                .shortfall(self.sorter.subtree_allocation(node)),
        )
    }

    fn headroom(&self) -> Headroom {
        let mut headroom = Headroom::default();
        for agent in self.agents.iter().flatten().filter(|a| a.active) {
            headroom
                .available
                .add_all(&agent.available.unreserved().scalar_totals());
        }
        self.refresh_required(&mut headroom);
        headroom
    }

    fn refresh_required(&self, headroom: &mut Headroom) {
        let mut required = ScalarMap::default();
        for role in self.quotas.keys() {
            let nested = self
                .quotas
                .keys()
                .any(|other| other != role && is_same_or_ancestor(other, role));
            if nested {
                continue;
            }
            if let Some(node) = self.sorter.role_index(role)
                && let Some(unmet) = self.unmet_guarantee(node)
            {
                required.add_all(&unmet);
            }
        }
        headroom.required = required;
    }

    fn allocatable(&self, offer: &Resources) -> bool {
        if self.config.min_allocatable.is_empty() {
            return true;
        }
        self.config.min_allocatable.iter().any(|min| {
            min.iter()
                .all(|(kind, amount)| offer.scalar(kind) >= amount)
        })
    }

    fn recompute_totals(&mut self) {
        let mut totals = ScalarMap::default();
        for agent in self.agents.iter().flatten() {
            totals.add_all(&agent.total.scalar_totals());
        }
        self.totals = totals.clone();
        self.sorter.set_totals(totals);
        self.totals_changed = false;
    }

    /// The cluster's scalar totals (the DRF denominators).
    pub fn cluster_totals(&mut self) -> &ScalarMap {
        if self.totals_changed {
            self.recompute_totals();
        }
        &self.totals
    }

    fn framework_slot(&self, id: &str) -> Result<usize, AllocatorError> {
        self.framework_slots
            .get(id)
            .copied()
            .ok_or_else(|| AllocatorError::UnknownFramework(id.to_owned()))
    }

    fn subscription(&self, fw: usize, role: &str) -> Result<&Subscription, AllocatorError> {
        let state = self.frameworks[fw].as_ref().expect("slot in use");
        state
            .roles
            .iter()
            .find(|s| &*s.role == role)
            .ok_or_else(|| AllocatorError::RoleNotSubscribed {
                framework: state.id.to_string(),
                role: role.to_owned(),
            })
    }

    fn agent_mut(&mut self, id: &str) -> Result<&mut AgentState, AllocatorError> {
        let slot = *self
            .agent_slots
            .get(id)
            .ok_or_else(|| AllocatorError::UnknownAgent(id.to_owned()))?;
        Ok(self.agents[slot].as_mut().expect("slot in use"))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stage {
    /// Stage 1: roles below their quota guarantee, up to the guarantee.
    Guarantees,
    /// Stage 2: everyone by DRF, keeping back headroom for unmet guarantees.
    Fair,
}

/// Mesos role names: path segments of letters, digits, `-`, `_`, `.`; `*` is the default role.
pub fn validate_role(role: &str) -> Result<(), AllocatorError> {
    if role == "*" {
        return Ok(());
    }
    let ok = !role.is_empty()
        && role.split('/').all(|seg| {
            !seg.is_empty()
                && seg != "."
                && seg != ".."
                && !seg.starts_with('-')
                && seg
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        });
    if ok {
        Ok(())
    } else {
        Err(AllocatorError::BadRole(role.to_owned()))
    }
}

#[cfg(test)]
mod tests;
