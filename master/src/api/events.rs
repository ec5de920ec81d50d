//! A subscribed framework's event stream, as both scheduler doors (Mesos v1 HTTP and gRPC)
//! send it: the core's events, a HEARTBEAT each time the heartbeat interval passes, and a
//! guard that marks the framework disconnected when the stream is dropped (the client left,
//! or a new SUBSCRIBE replaced it). Each door only encodes.
use std::time::Duration;

use futures::{Stream, stream};
use tokio::{sync::mpsc, time::Interval};

use crate::cluster::{Cluster, ConnectionGuard, Event, Subscription};

#[derive(Debug)]
pub struct FrameworkEvents {
    framework_id: String,
    events: mpsc::UnboundedReceiver<Event>,
    heartbeat: Interval,
    connection: ConnectionGuard,
}

impl FrameworkEvents {
    /// The first heartbeat comes one `heartbeat` after subscribing.
    pub fn new(cluster: &Cluster, subscription: Subscription, heartbeat: Duration) -> Self {
        let connection = ConnectionGuard::new(cluster, &subscription);
        let start = tokio::time::Instant::now() + heartbeat;
        FrameworkEvents {
            framework_id: subscription.framework_id,
            events: subscription.events,
            heartbeat: tokio::time::interval_at(start, heartbeat),
            connection,
        }
    }

    pub fn framework_id(&self) -> &str {
        &self.framework_id
    }

    /// The `Mesos-Stream-Id` every later call of this subscription must carry.
    pub fn stream_id(&self) -> &str {
        self.connection.stream_id()
    }

    /// The next event, or a heartbeat when none came within the interval; `None` once the
    /// core closed the subscription (teardown, or replaced by a failover).
    pub async fn next(&mut self) -> Option<Event> {
        tokio::select! {
            event = self.events.recv() => event,
            _ = self.heartbeat.tick() => Some(Event::Heartbeat),
        }
    }

    /// An event already queued, without waiting (to write a burst in one chunk).
    pub fn try_next(&mut self) -> Option<Event> {
        self.events.try_recv().ok()
    }

    /// The events as a stream of what `encode` makes of each (it may take more queued
    /// events with [`FrameworkEvents::try_next`]).
    pub fn into_stream<T>(
        self,
        encode: impl FnMut(&mut FrameworkEvents, Event) -> T + Send + 'static,
    ) -> impl Stream<Item = T> + Send + 'static
    where
        T: Send + 'static,
    {
        stream::unfold((self, encode), |(mut events, mut encode)| async move {
            let event = events.next().await?;
            let item = encode(&mut events, event);
            Some((item, (events, encode)))
        })
    }
}
