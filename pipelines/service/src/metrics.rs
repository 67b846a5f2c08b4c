//! Prometheus metrics and a health check, served over HTTP (default 127.0.0.1 only).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use triage_core::config::MetricsConfig;

use crate::error::{Result, ServiceError};

/// Liveness shared between the pipeline and `/health`.
#[derive(Debug, Default)]
pub struct Health {
    /// Unix milliseconds of the pipeline loop's last turn.
    pub last_beat_ms: AtomicU64,
    /// Set once the consumer has subscribed and the loop runs.
    pub ready: AtomicBool,
}

impl Health {
    /// The loop is alive now.
    pub fn beat(&self) {
        self.last_beat_ms.store(now_ms(), Ordering::Relaxed);
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Installs the Prometheus recorder (once per process) and returns its handle.
pub fn install_recorder() -> Result<PrometheusHandle> {
    static HANDLE: std::sync::OnceLock<PrometheusHandle> = std::sync::OnceLock::new();
    if let Some(h) = HANDLE.get() {
        return Ok(h.clone());
    }
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Suffix("_seconds".into()),
            &[
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                10.0,
            ],
        )
        .map_err(|e| ServiceError::Internal(format!("metrics buckets: {e}")))?
        .install_recorder()
        .map_err(|e| ServiceError::Internal(format!("metrics recorder: {e}")))?;
    let _ = HANDLE.set(handle.clone());
    Ok(handle)
}

/// Serves `/metrics` and `/health` until the process ends.
pub async fn serve(
    config: &MetricsConfig,
    handle: PrometheusHandle,
    health: Arc<Health>,
) -> Result<()> {
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|e| {
            ServiceError::Config(format!(
                "cannot listen on {} for metrics: {e} (set [metrics] listen or enabled = false)",
                config.listen
            ))
        })?;
    let app = Router::new()
        .route("/metrics", get(render))
        .route("/health", get(health_check))
        .with_state((handle, health));
    tracing::info!(listen = %config.listen, "metrics and health endpoint up");
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "metrics endpoint stopped");
        }
    });
    Ok(())
}

async fn render(State((handle, _)): State<(PrometheusHandle, Arc<Health>)>) -> String {
    handle.render()
}

async fn health_check(
    State((_, health)): State<(PrometheusHandle, Arc<Health>)>,
) -> (StatusCode, String) {
    let age =
        Duration::from_millis(now_ms().saturating_sub(health.last_beat_ms.load(Ordering::Relaxed)));
    let ready = health.ready.load(Ordering::Relaxed);
    if ready && age < Duration::from_secs(30) {
        (
            StatusCode::OK,
            format!(
                "{{\"status\":\"ok\",\"last_beat_ms_ago\":{}}}\n",
                age.as_millis()
            ),
        )
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "{{\"status\":\"unavailable\",\"ready\":{ready},\"last_beat_ms_ago\":{}}}\n",
                age.as_millis()
            ),
        )
    }
}
