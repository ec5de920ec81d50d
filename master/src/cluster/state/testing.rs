//! A state on an in-memory registry with frameworks and agents whose channels the tests read:
//! what each aggregate's unit tests drive.
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use super::State;
use crate::{
    cluster::{
        AgentCommand, AgentInfo, ClusterConfig, CommandInfo, Event, FrameworkInfo, Offer,
        Operation, StatusSource, TaskInfo, TaskState, TaskStatus, registry::MemoryStore,
    },
    resources::Resources,
};

pub(super) fn config() -> ClusterConfig {
    ClusterConfig {
        offer_timeout: Some(Duration::from_secs(30)),
        agent_ping_timeout: Duration::from_secs(10),
        agent_removal_timeout: Duration::from_secs(60),
        ..ClusterConfig::default()
    }
}

pub(super) fn state() -> State {
    State::new(
        config(),
        "m".into(),
        Box::<MemoryStore>::default(),
        Default::default(),
    )
    .expect("an empty registry loads")
}

pub(super) fn resources(text: &str) -> Resources {
    Resources::parse(text).expect("valid resources")
}

pub(super) fn framework_info(name: &str) -> FrameworkInfo {
    FrameworkInfo {
        user: "root".into(),
        name: name.into(),
        roles: vec!["*".into()],
        failover_timeout: Duration::from_secs(60),
        ..Default::default()
    }
}

/// A subscribed framework: its id, stream id and events.
pub(super) struct Framework {
    pub id: String,
    pub stream_id: String,
    pub events: mpsc::UnboundedReceiver<Event>,
}

impl Framework {
    /// Every event queued so far.
    pub fn drain(&mut self) -> Vec<Event> {
        std::iter::from_fn(|| self.events.try_recv().ok()).collect()
    }

    /// The offers among the queued events.
    pub fn offers(&mut self) -> Vec<Offer> {
        self.drain()
            .into_iter()
            .flat_map(|e| match e {
                Event::Offers(offers) => offers,
                _ => Vec::new(),
            })
            .collect()
    }

    /// The status updates among the queued events.
    pub fn updates(&mut self) -> Vec<TaskStatus> {
        self.drain()
            .into_iter()
            .filter_map(|e| match e {
                Event::Update(status) => Some(status),
                _ => None,
            })
            .collect()
    }
}

pub(super) fn subscribe(state: &mut State, info: FrameworkInfo) -> Framework {
    let sub = state
        .subscribe(info, None, Instant::now())
        .expect("the framework subscribes");
    let mut framework = Framework {
        id: sub.framework_id,
        stream_id: sub.stream_id,
        events: sub.events,
    };
    assert!(matches!(
        framework.drain().as_slice(),
        [Event::Subscribed { .. }]
    ));
    framework
}

/// A registered agent: its id and the commands the master sends it.
pub(super) struct Agent {
    pub id: String,
    pub commands: mpsc::UnboundedReceiver<AgentCommand>,
}

impl Agent {
    pub fn drain(&mut self) -> Vec<AgentCommand> {
        std::iter::from_fn(|| self.commands.try_recv().ok()).collect()
    }
}

pub(super) fn agent_info(hostname: &str, text: &str) -> AgentInfo {
    AgentInfo {
        id: None,
        hostname: hostname.into(),
        resources: resources(text),
        attributes: Default::default(),
        principal: None,
    }
}

pub(super) fn register(state: &mut State, hostname: &str, text: &str) -> Agent {
    let link = state
        .register_agent(agent_info(hostname, text), Vec::new(), Instant::now())
        .expect("the agent registers");
    Agent {
        id: link.agent_id,
        commands: link.commands,
    }
}

pub(super) fn task(task_id: &str, agent_id: &str, text: &str) -> TaskInfo {
    TaskInfo {
        task_id: task_id.into(),
        name: task_id.into(),
        agent_id: agent_id.into(),
        resources: resources(text),
        command: Some(CommandInfo {
            shell: true,
            value: "sleep 1000".into(),
            ..Default::default()
        }),
        labels: Default::default(),
        kill_grace: None,
    }
}

/// Allocates, takes the framework's one offer and launches `tasks` on it.
pub(super) fn launch_on_offer(state: &mut State, framework: &mut Framework, tasks: Vec<TaskInfo>) {
    state.allocate(Instant::now());
    let offers = framework.offers();
    assert_eq!(offers.len(), 1, "one agent, one offer: {offers:?}");
    state
        .accept(
            &framework.id,
            &[offers[0].id.clone()],
            vec![Operation::Launch(tasks)],
            None,
            Instant::now(),
        )
        .expect("the accept is taken");
}

/// An update from the agent for `task_id`, with a fresh uuid.
pub(super) fn agent_update(agent_id: &str, task_id: &str, state: TaskState) -> TaskStatus {
    TaskStatus {
        task_id: task_id.into(),
        agent_id: agent_id.into(),
        state,
        source: StatusSource::Executor,
        reason: None,
        message: None,
        timestamp: 0.0,
        uuid: Some(*uuid::Uuid::new_v4().as_bytes()),
    }
}
