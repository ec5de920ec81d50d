//! The state's changes as the operator event stream tells them (Mesos's `SUBSCRIBE` on
//! `/api/v1`): a task added or updated, an agent added or removed, a framework added, updated
//! or removed. Each is published when it happens, under the state's lock, so a subscriber
//! that took the snapshot and its receiver together ([`State::subscribe_events`]) misses
//! nothing and sees nothing twice. Agents and frameworks are named by id; the door renders
//! them whole from the state when it sends the event.
use tokio::sync::broadcast;

use super::{State, TaskEntry, views::task_view};
use crate::cluster::{FrameworkInfo, StateSnapshot, TaskState, TaskStatus, TaskView};

/// How many events a subscriber may fall behind before its stream is closed (it then
/// subscribes again and starts from a new snapshot, as a Mesos client would).
pub(super) const EVENT_BACKLOG: usize = 16_384;

#[derive(Clone, Debug)]
pub enum ClusterEvent {
    /// A task the master now knows: launched, or reported by a (re-)registering agent.
    TaskAdded(TaskView),
    /// Every status update applied to a task, with the task's state after it.
    TaskUpdated {
        framework_id: String,
        status: TaskStatus,
        state: TaskState,
    },
    AgentAdded {
        agent_id: String,
    },
    AgentRemoved {
        agent_id: String,
    },
    FrameworkAdded {
        framework_id: String,
    },
    /// Re-subscribed, disconnected, or its `FrameworkInfo` changed.
    FrameworkUpdated {
        framework_id: String,
    },
    FrameworkRemoved {
        framework_id: String,
        info: FrameworkInfo,
    },
}

pub(super) fn channel() -> broadcast::Sender<ClusterEvent> {
    broadcast::channel(EVENT_BACKLOG).0
}

impl State {
    /// The state now and every change after it.
    pub(in crate::cluster) fn subscribe_events(
        &self,
    ) -> (StateSnapshot, broadcast::Receiver<ClusterEvent>) {
        (self.snapshot(), self.events.subscribe())
    }

    /// Publishes a change to the operator subscribers, if there are any.
    pub(super) fn publish(&self, event: ClusterEvent) {
        if self.events.receiver_count() > 0 {
            let _ = self.events.send(event);
        }
    }

    pub(super) fn publish_task_added(&self, task: &TaskEntry) {
        if self.events.receiver_count() > 0 {
            let _ = self.events.send(ClusterEvent::TaskAdded(task_view(task)));
        }
    }
}
