//! One publisher for all the `WatchCluster` streams that ask for the same number of completed
//! tasks: the master's state is snapshotted (under its lock) and diffed once per tick, however
//! many watch, and each delta is shared. A new watcher starts from the publisher's latest view.
use std::{
    collections::HashMap,
    sync::{Arc, Mutex, MutexGuard},
    time::{Duration, SystemTime},
};

use orca_proto::operator::v1 as pb;
use tokio::sync::broadcast;

use super::operator_grpc::{ClusterView, unix_ms};
use crate::cluster::Cluster;

/// How often the cluster is compared with the view watchers were sent. Changes reach a
/// watcher within this; nothing is sent when nothing changed.
const WATCH_EVERY: Duration = Duration::from_millis(250);

/// Deltas a watcher may fall behind before it is sent a fresh snapshot instead.
const BACKLOG: usize = 1024;

/// The publishers, by the number of completed tasks per framework their watchers asked for.
#[derive(Debug, Clone)]
pub struct ClusterWatches {
    cluster: Cluster,
    feeds: Arc<Mutex<HashMap<usize, Arc<Feed>>>>,
}

#[derive(Debug)]
struct Feed {
    latest: Mutex<Latest>,
    tx: broadcast::Sender<Arc<pb::ClusterDelta>>,
}

/// What the watchers of a feed were last sent.
#[derive(Debug)]
struct Latest {
    view: ClusterView,
    master_id: String,
    uptime_seconds: u64,
}

/// A watcher's start: the whole cluster as its publisher last saw it, and the deltas after.
#[derive(Debug)]
pub struct Subscription {
    pub snapshot: pb::ClusterDelta,
    pub deltas: broadcast::Receiver<Arc<pb::ClusterDelta>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl ClusterWatches {
    pub fn new(cluster: Cluster) -> Self {
        Self {
            cluster,
            feeds: Arc::default(),
        }
    }

    /// Subscribes to the feed for `completed` tasks, starting its publisher if none runs.
    pub fn subscribe(&self, completed: usize) -> Subscription {
        // Under the feeds' lock: a publisher with no watcher left removes its feed under it
        // too, so a feed handed out here always has its publisher.
        let mut feeds = lock(&self.feeds);
        let feed = feeds
            .entry(completed)
            .or_insert_with(|| {
                let feed = Arc::new(Feed {
                    latest: Mutex::new(self.latest(completed)),
                    tx: broadcast::channel(BACKLOG).0,
                });
                tokio::spawn(self.clone().publish(completed, feed.clone()));
                feed
            })
            .clone();
        feed.subscribe()
    }

    fn latest(&self, completed: usize) -> Latest {
        let snapshot = self.cluster.snapshot();
        Latest {
            view: ClusterView::from_snapshot(&snapshot, completed),
            master_id: snapshot.master_id.clone(),
            uptime_seconds: snapshot.uptime.as_secs(),
        }
    }

    /// Diffs the cluster with the feed's view every tick and sends what changed, until no
    /// watcher is left.
    async fn publish(self, completed: usize, feed: Arc<Feed>) {
        let mut tick = tokio::time::interval(WATCH_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            {
                let mut feeds = lock(&self.feeds);
                if feed.tx.receiver_count() == 0 {
                    if feeds.get(&completed).is_some_and(|f| Arc::ptr_eq(f, &feed)) {
                        feeds.remove(&completed);
                    }
                    return;
                }
            }
            let now = self.latest(completed);
            let mut latest = lock(&feed.latest);
            let delta = latest.view.delta_to(&now.view);
            *latest = now;
            if let Some(mut delta) = delta {
                delta.timestamp_unix_ms = unix_ms(SystemTime::now());
                delta.master_id = latest.master_id.clone();
                delta.uptime_seconds = latest.uptime_seconds;
                // Sent under the view's lock: a watcher subscribing meanwhile gets either the
                // view before this delta and the delta, or the view after it.
                let _ = feed.tx.send(Arc::new(delta));
            }
        }
    }
}

impl Feed {
    fn subscribe(&self) -> Subscription {
        let latest = lock(&self.latest);
        let deltas = self.tx.subscribe();
        let mut snapshot = ClusterView::default()
            .delta_to(&latest.view)
            .unwrap_or_default();
        snapshot.full = true;
        snapshot.timestamp_unix_ms = unix_ms(SystemTime::now());
        snapshot.master_id = latest.master_id.clone();
        snapshot.uptime_seconds = latest.uptime_seconds;
        Subscription { snapshot, deltas }
    }
}
