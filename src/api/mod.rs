//! The HTTP side of the engine: `/metrics` for Prometheus and `/health`
//! for orchestrators. Later: the REST API and the live web view.

pub mod metrics;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use prometheus_client::registry::Registry;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// What `/health` reports.
#[derive(Debug)]
pub struct Health {
    started: Instant,
    failure: Mutex<Option<String>>,
}

impl Default for Health {
    fn default() -> Self {
        Health {
            started: Instant::now(),
            failure: Mutex::new(None),
        }
    }
}

impl Health {
    /// Marks the engine as failed; `/health` answers 503 from then on.
    pub fn fail(&self, reason: impl Into<String>) {
        let mut failure = self.failure.lock().expect("health lock");
        failure.get_or_insert_with(|| reason.into());
    }

    /// The recorded failure, if any.
    pub fn failure(&self) -> Option<String> {
        self.failure.lock().expect("health lock").clone()
    }
}

#[derive(Clone)]
struct AppState {
    registry: Arc<Registry>,
    health: Arc<Health>,
}

/// The router serving `/metrics` and `/health`.
pub fn router(registry: Arc<Registry>, health: Arc<Health>) -> Router {
    Router::new()
        .route("/metrics", get(metrics_handler))
        .route("/health", get(health_handler))
        .with_state(AppState { registry, health })
}

async fn metrics_handler(State(state): State<AppState>) -> Response {
    let mut body = String::new();
    match prometheus_client::encoding::text::encode(&mut body, &state.registry) {
        Ok(()) => (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            body,
        )
            .into_response(),
        Err(error) => (StatusCode::INTERNAL_SERVER_ERROR, error.to_string()).into_response(),
    }
}

async fn health_handler(State(state): State<AppState>) -> Response {
    let uptime = state.health.started.elapsed().as_secs_f64();
    match state.health.failure() {
        None => (
            StatusCode::OK,
            axum::Json(serde_json::json!({"status": "ok", "uptime_seconds": uptime})),
        )
            .into_response(),
        Some(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(
                serde_json::json!({"status": "failed", "reason": reason, "uptime_seconds": uptime}),
            ),
        )
            .into_response(),
    }
}

/// Serves the router on `listen` until the process ends.
pub async fn serve(listen: &str, router: Router) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(listen).await?;
    tracing::info!(address = %listener.local_addr()?, "serving /metrics and /health");
    axum::serve(listener, router).await
}
