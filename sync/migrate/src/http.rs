//! The migration's REST API and Prometheus metrics (one orchestrator process runs one
//! migration at a time; finished ones stay readable):
//!
//! - `POST /api/v1/migrations` (the YAML, or the same as JSON): plans a migration → 201 `{id}`
//! - `GET  /api/v1/migrations`: every migration kept, with its status
//! - `GET  /api/v1/migrations/{id}`: its state (phases done, status, gates, timeline)
//! - `POST /api/v1/migrations/{id}/start`: begins phase 1
//! - `POST /api/v1/migrations/{id}/advance` `{"confirm": true, "phase": N?}`: runs the next
//!   phase (or up to N) → 202
//! - `POST /api/v1/migrations/{id}/rollback` `{"to_phase": N?}`: undoes phases (to 0: all) → 202
//! - `GET  /api/v1/migrations/{id}/health`: the in-flight checks now (503 when one fails)
//! - `POST /api/v1/migrations/{id}/validate` `{"phase": N?}`: a phase's gate now
//! - `GET  /api/v1/migrations/{id}/report?format=md|json`
//! - `GET  /api/v1/migrations/{id}/overview`: ensembles (servers, sessions, masters), agents
//!   per side, tasks, interruptions, the sync's figures and held conflicts in one reply
//! - `GET  /api/v1/sync/status`: the sync's figures while it runs
//! - `GET  /api/v1/sync/conflicts`, `POST /api/v1/sync/conflicts/resolve`
//!   `{"path": "/x", "winner": "a"|"b"}`: conflicts the sync holds (strategy `manual`)
//! - `GET  /metrics`, `GET /health`
use std::{
    path::PathBuf,
    sync::{Arc, RwLock},
};

use axum::{
    Json, Router,
    body::Bytes,
    extract::{Path, Query, State},
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use orca_sync::http::ResolveRequest;
use prometheus_client::{
    encoding::{EncodeLabelSet, text::encode},
    metrics::{counter::Counter, family::Family, gauge::Gauge},
    registry::Registry,
};
use serde::Deserialize;
use serde_json::json;

use crate::{
    config::MigrationConfig,
    ensemble,
    orchestrator::{MigrateError, Orchestrator},
    overview::Overview,
    report::Report,
    state::{MigrationState, Status},
};

#[derive(Clone)]
pub struct Service {
    state_dir: PathBuf,
    current: Arc<RwLock<Option<Arc<Orchestrator>>>>,
}

impl Service {
    /// Serves the migrations under `state_dir`; `current` is the one this process runs.
    pub fn new(state_dir: PathBuf, current: Option<Arc<Orchestrator>>) -> Self {
        Self {
            state_dir,
            current: Arc::new(RwLock::new(current)),
        }
    }

    pub fn current(&self) -> Option<Arc<Orchestrator>> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn running(&self, id: &str) -> Result<Arc<Orchestrator>, Box<Response>> {
        match self.current() {
            Some(o) if o.snapshot().id == id => Ok(o),
            _ if MigrationState::load(&self.state_dir, id).is_ok() => Err(Box::new(error(
                StatusCode::CONFLICT,
                format!(
                    "migration {id} is kept here but not run by this process (run `zk-migrate serve --migration-id {id}`)"
                ),
            ))),
            _ => Err(Box::new(not_found(id))),
        }
    }
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({ "error": message.into() }))).into_response()
}

fn not_found(id: &str) -> Response {
    error(StatusCode::NOT_FOUND, format!("no migration {id}"))
}

fn refused(e: MigrateError) -> Response {
    let status = match e {
        MigrateError::Busy(_) | MigrateError::Refused(_) | MigrateError::Exists(_) => {
            StatusCode::CONFLICT
        }
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    error(status, e.to_string())
}

pub fn router(service: Service) -> Router {
    Router::new()
        .route("/api/v1/migrations", post(create).get(list))
        .route("/api/v1/migrations/{id}", get(show))
        .route("/api/v1/migrations/{id}/start", post(start))
        .route("/api/v1/migrations/{id}/advance", post(advance))
        .route("/api/v1/migrations/{id}/rollback", post(rollback))
        .route("/api/v1/migrations/{id}/health", get(health))
        .route("/api/v1/migrations/{id}/validate", post(validate))
        .route("/api/v1/migrations/{id}/report", get(report))
        .route("/api/v1/migrations/{id}/overview", get(overview))
        .route("/api/v1/sync/status", get(sync_status))
        .route("/api/v1/sync/conflicts", get(conflicts))
        .route("/api/v1/sync/conflicts/resolve", post(resolve))
        .route("/metrics", get(metrics))
        .route("/health", get(|| async { "ok" }))
        .layer(axum::middleware::from_fn(
            orca_sync::http::refuse_cross_site,
        ))
        .with_state(service)
}

async fn create(State(svc): State<Service>, body: Bytes) -> Response {
    if let Some(o) = svc.current()
        && o.snapshot().is_active()
    {
        return error(
            StatusCode::CONFLICT,
            format!(
                "migration {} is still active here: finish or roll it back first",
                o.snapshot().id
            ),
        );
    }
    let text = String::from_utf8_lossy(&body);
    let mut cfg = match MigrationConfig::from_yaml(&text) {
        Ok(c) => c,
        Err(e) => return error(StatusCode::BAD_REQUEST, e.to_string()),
    };
    // One process keeps its migrations in one place.
    cfg.state_dir = svc.state_dir.clone();
    match Orchestrator::create(cfg).await {
        Ok(o) => {
            let id = o.snapshot().id;
            *svc.current.write().unwrap_or_else(|p| p.into_inner()) = Some(o);
            (StatusCode::CREATED, Json(json!({ "id": id }))).into_response()
        }
        Err(e) => refused(e),
    }
}

async fn list(State(svc): State<Service>) -> Response {
    let all: Vec<_> = MigrationState::list(&svc.state_dir)
        .into_iter()
        .map(|m| json!({ "id": m.id, "completed": m.completed, "status": m.status }))
        .collect();
    Json(all).into_response()
}

async fn show(State(svc): State<Service>, Path(id): Path<String>) -> Response {
    if let Some(o) = svc.current()
        && o.snapshot().id == id
    {
        return Json(o.snapshot()).into_response();
    }
    match MigrationState::load(&svc.state_dir, &id) {
        Ok(m) => Json(m).into_response(),
        Err(_) => not_found(&id),
    }
}

async fn start(State(svc): State<Service>, Path(id): Path<String>) -> Response {
    let o = match svc.running(&id) {
        Ok(o) => o,
        Err(r) => return *r,
    };
    if o.snapshot().status != Status::Planned {
        return error(
            StatusCode::CONFLICT,
            "the migration has already started: use advance",
        );
    }
    match o.advance(Some(1)) {
        Ok(phase) => (StatusCode::ACCEPTED, Json(json!({ "phase": phase }))).into_response(),
        Err(e) => refused(e),
    }
}

#[derive(Debug, Default, Deserialize)]
struct AdvanceBody {
    #[serde(default)]
    confirm: bool,
    #[serde(default)]
    phase: Option<u8>,
}

fn body<T: for<'de> Deserialize<'de> + Default>(bytes: &Bytes) -> Result<T, Box<Response>> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(bytes).map_err(|e| {
        Box::new(error(
            StatusCode::BAD_REQUEST,
            format!("the body is not the JSON expected: {e}"),
        ))
    })
}

async fn advance(State(svc): State<Service>, Path(id): Path<String>, bytes: Bytes) -> Response {
    let o = match svc.running(&id) {
        Ok(o) => o,
        Err(r) => return *r,
    };
    let req: AdvanceBody = match body(&bytes) {
        Ok(b) => b,
        Err(r) => return *r,
    };
    if !req.confirm {
        return error(
            StatusCode::BAD_REQUEST,
            "advancing changes the live cluster: send {\"confirm\": true}",
        );
    }
    match o.advance(req.phase) {
        Ok(phase) => (StatusCode::ACCEPTED, Json(json!({ "phase": phase }))).into_response(),
        Err(e) => refused(e),
    }
}

#[derive(Debug, Default, Deserialize)]
struct RollbackBody {
    #[serde(default)]
    to_phase: u8,
}

async fn rollback(State(svc): State<Service>, Path(id): Path<String>, bytes: Bytes) -> Response {
    let o = match svc.running(&id) {
        Ok(o) => o,
        Err(r) => return *r,
    };
    let req: RollbackBody = match body(&bytes) {
        Ok(b) => b,
        Err(r) => return *r,
    };
    match o.rollback(req.to_phase) {
        Ok(()) => (
            StatusCode::ACCEPTED,
            Json(json!({ "to_phase": req.to_phase })),
        )
            .into_response(),
        Err(e) => refused(e),
    }
}

async fn health(State(svc): State<Service>, Path(id): Path<String>) -> Response {
    let o = match svc.running(&id) {
        Ok(o) => o,
        Err(r) => return *r,
    };
    let gate = o.evaluate(o.snapshot().completed, "in-flight").await;
    let status = if gate.passed {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(gate)).into_response()
}

#[derive(Debug, Default, Deserialize)]
struct ValidateBody {
    #[serde(default)]
    phase: Option<u8>,
}

async fn validate(State(svc): State<Service>, Path(id): Path<String>, bytes: Bytes) -> Response {
    let o = match svc.running(&id) {
        Ok(o) => o,
        Err(r) => return *r,
    };
    let req: ValidateBody = match body(&bytes) {
        Ok(b) => b,
        Err(r) => return *r,
    };
    let phase = req.phase.unwrap_or(o.snapshot().completed.max(1));
    if !(1..=6).contains(&phase) {
        return error(
            StatusCode::BAD_REQUEST,
            format!("there is no phase {phase} (1-6)"),
        );
    }
    Json(o.evaluate(phase, "post").await).into_response()
}

#[derive(Debug, Deserialize)]
struct ReportQuery {
    #[serde(default)]
    format: Option<String>,
}

async fn report(
    State(svc): State<Service>,
    Path(id): Path<String>,
    Query(q): Query<ReportQuery>,
) -> Response {
    let (state, sync) = match svc.current() {
        Some(o) if o.snapshot().id == id => (o.snapshot(), o.sync_status()),
        _ => match MigrationState::load(&svc.state_dir, &id) {
            Ok(m) => (m, None),
            Err(_) => return not_found(&id),
        },
    };
    let report = Report::new(&state, sync);
    match q.format.as_deref() {
        Some("json") => {
            ([(header::CONTENT_TYPE, "application/json")], report.json()).into_response()
        }
        None | Some("md" | "markdown") => (
            [(header::CONTENT_TYPE, "text/markdown; charset=utf-8")],
            report.markdown(),
        )
            .into_response(),
        Some(other) => error(
            StatusCode::BAD_REQUEST,
            format!("unknown report format {other:?}: use md or json"),
        ),
    }
}

async fn sync_status(State(svc): State<Service>) -> Response {
    match svc.current().and_then(|o| o.sync_status()) {
        Some(s) => Json(s).into_response(),
        None => error(
            StatusCode::NOT_FOUND,
            "no sync is running (it runs in phases 1-5)",
        ),
    }
}

async fn overview(State(svc): State<Service>, Path(id): Path<String>) -> Response {
    match svc.running(&id) {
        Ok(o) => Json(Overview::gather(&o).await).into_response(),
        Err(r) => *r,
    }
}

/// The running sync engine, or the reply saying there is none.
async fn engine(svc: &Service) -> Result<Arc<orca_sync::SyncEngine>, Response> {
    match svc.current() {
        Some(o) => match o.engine_for_checks().await {
            Some(e) => Ok(e),
            None => Err(error(
                StatusCode::NOT_FOUND,
                "no sync is running (it runs in phases 1-5)",
            )),
        },
        None => Err(error(
            StatusCode::NOT_FOUND,
            "this process runs no migration",
        )),
    }
}

async fn conflicts(State(svc): State<Service>) -> Response {
    match engine(&svc).await {
        Ok(e) => Json(e.held_conflicts()).into_response(),
        Err(r) => r,
    }
}

async fn resolve(State(svc): State<Service>, bytes: Bytes) -> Response {
    let e = match engine(&svc).await {
        Ok(e) => e,
        Err(r) => return r,
    };
    let req: ResolveRequest = match serde_json::from_slice(&bytes) {
        Ok(r) => r,
        Err(err) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("{err}: send {{\"path\": \"/x\", \"winner\": \"a\"|\"b\"}}"),
            );
        }
    };
    if !e.held_conflicts().iter().any(|c| c.path == req.path) {
        return error(
            StatusCode::NOT_FOUND,
            format!("no conflict is held for {}", req.path),
        );
    }
    match e.resolve(&req.path, req.winner).await {
        Ok(()) => Json(json!({ "resolved": req.path })).into_response(),
        Err(err) => error(StatusCode::SERVICE_UNAVAILABLE, err.to_string()),
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MigrationLabels {
    migration: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GateLabels {
    migration: String,
    phase: String,
    stage: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SessionLabels {
    ensemble: String,
    server: String,
}

async fn metrics(State(svc): State<Service>, request: HeaderMap) -> Response {
    let mut registry = Registry::default();
    let Some(o) = svc.current() else {
        return orca_exposition::response(&request, orca_exposition::join([]));
    };
    let s = o.snapshot();
    let labels = MigrationLabels {
        migration: s.id.clone(),
    };
    let phase = Family::<MigrationLabels, Gauge>::default();
    phase.get_or_create(&labels).set(s.completed as i64);
    registry.register(
        "orca_migration_phases_completed",
        "Phases of the migration done (0-6)",
        phase,
    );
    let halted = Family::<MigrationLabels, Gauge>::default();
    halted
        .get_or_create(&labels)
        .set(matches!(s.status, Status::Halted { .. }) as i64);
    registry.register(
        "orca_migration_halted",
        "1 while the migration is halted by a failed check",
        halted,
    );
    // Interruptions only accumulate during a migration: a counter (`_total`), which
    // Prometheus reads as reset if the service restarts.
    let interruptions = Family::<MigrationLabels, Counter>::default();
    interruptions
        .get_or_create(&labels)
        .inc_by(o.monitor.lock().interruptions.len() as u64);
    registry.register(
        "orca_migration_task_interruptions",
        "Running tasks that ended failed, lost, gone, unreachable or dropped during the \
         migration",
        interruptions,
    );
    let gates = Family::<GateLabels, Gauge>::default();
    for g in &s.gates {
        gates
            .get_or_create(&GateLabels {
                migration: s.id.clone(),
                phase: g.phase.to_string(),
                stage: g.stage.clone(),
            })
            .set(g.passed as i64);
    }
    registry.register(
        "orca_migration_gate_passed",
        "The last evaluation of each phase's gate (1 passed)",
        gates,
    );
    let sessions = Family::<SessionLabels, Gauge>::default();
    for (name, connect) in [
        ("a", &s.config.sync.source_zk),
        ("b", &s.config.sync.target_zk),
    ] {
        for (server, count) in ensemble::sessions(connect).await {
            if let Some(n) = count.map(|list| list.len()) {
                sessions
                    .get_or_create(&SessionLabels {
                        ensemble: name.into(),
                        server,
                    })
                    .set(n as i64);
            }
        }
    }
    registry.register(
        "orca_migration_zookeeper_sessions",
        "Client sessions per ZooKeeper server (its own `cons`)",
        sessions,
    );
    let mut out = String::new();
    let _ = encode(&mut out, &registry);
    if let Some(sync) = o.sync_metrics() {
        // Both expositions end with `# EOF`; one is kept.
        out = out.trim_end().trim_end_matches("# EOF").to_owned();
        out.push_str(&sync);
    }
    orca_exposition::response(&request, orca_exposition::join([out.as_str()]))
}
