//! Keeps the Migration view current from the migration service's REST API (once a second)
//! and carries out what the view asks (advance, rollback, resolve), reporting the outcome as
//! a notice.
use std::time::{Duration, Instant};

use orca_migrate::client::{ClientError, MigrationClient};
use tokio::sync::mpsc;

use super::{MigrationCommand, Polled};
use crate::{app::Level, feed::Event};

/// How often the service is asked.
pub const EVERY: Duration = Duration::from_secs(1);

/// The migration to show (the newest one still acting, else the newest), with its overview
/// while the service runs it.
pub async fn poll_once(client: &MigrationClient) -> Result<Polled, String> {
    let listed = client.list().await.map_err(|e| describe(client, e))?;
    let chosen = listed
        .iter()
        .rev()
        .find(|m| {
            !matches!(
                m.status,
                orca_migrate::Status::Completed | orca_migrate::Status::RolledBack
            )
        })
        .or(listed.last())
        .ok_or_else(|| {
            format!(
                "the service at {} has no migration; plan one with `zk-migrate start --config …`",
                client.api
            )
        })?;
    let state = client
        .state(&chosen.id)
        .await
        .map_err(|e| describe(client, e))?;
    let (overview, overview_error) = match client.overview(&chosen.id).await {
        Ok(o) => (Some(o), None),
        Err(e) => (None, Some(describe(client, e))),
    };
    Ok(Polled {
        state,
        overview,
        overview_error,
    })
}

fn describe(client: &MigrationClient, e: ClientError) -> String {
    match e {
        ClientError::Unreachable { .. } => format!(
            "no migration service answers on {} (run `zk-migrate serve --listen {}`, or pass --migration)",
            client.api, client.api
        ),
        other => other.to_string(),
    }
}

/// Polls until `events` closes.
pub async fn follow(api: String, events: mpsc::Sender<Event>) {
    let client = MigrationClient::new(api);
    let mut tick = tokio::time::interval(EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let polled = poll_once(&client).await;
        if events
            .send(Event::Migration(Box::new(polled), Instant::now()))
            .await
            .is_err()
        {
            return;
        }
    }
}

/// Carries out `command` in the background; its outcome comes back as a notice.
pub fn execute(api: &str, command: MigrationCommand, events: mpsc::Sender<Event>) {
    let client = MigrationClient::new(api);
    tokio::spawn(async move {
        let (done, result) = match &command {
            MigrationCommand::Advance { id } => (
                format!("migration {id}: advancing (the view follows the phase)"),
                client.advance(id, None).await,
            ),
            MigrationCommand::Rollback { id, to } => (
                format!("migration {id}: rolling back to phase {to}"),
                client.rollback(id, *to).await,
            ),
            MigrationCommand::Resolve { path, winner } => (
                format!(
                    "{path}: resolved with {}'s copy",
                    winner.to_ascii_uppercase()
                ),
                client.resolve(path, &winner.to_string()).await,
            ),
        };
        let notice = match result {
            Ok(()) => (done, Level::Info),
            Err(e) => (format!("refused: {}", describe(&client, e)), Level::Error),
        };
        let _ = events.send(Event::Notice(notice.0, notice.1)).await;
    });
}
