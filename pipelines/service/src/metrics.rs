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
    /// Set while a delivery has been failing (and retried) for longer than
    /// `[kafka] retry_unhealthy_ms`; cleared once the retries succeed.
    pub produce_stalled: AtomicBool,
}

impl Health {
    /// The loop is alive now.
    pub fn beat(&self) {
        self.last_beat_ms.store(now_ms(), Ordering::Relaxed);
    }

    /// Whether deliveries go through (`false`: retries outstanding for too long).
    pub fn set_producing(&self, ok: bool) {
        self.produce_stalled.store(!ok, Ordering::Relaxed);
    }

    /// What `/health` answers.
    pub fn report(&self) -> (StatusCode, String) {
        let last = self.last_beat_ms.load(Ordering::Relaxed);
        let age = Duration::from_millis(now_ms().saturating_sub(last));
        // No beat yet (starting): no age to report, rather than the time since 1970.
        let age_ms = if last == 0 {
            "null".to_string()
        } else {
            age.as_millis().to_string()
        };
        let ready = self.ready.load(Ordering::Relaxed);
        let stalled = self.produce_stalled.load(Ordering::Relaxed);
        if ready && age < Duration::from_secs(30) && !stalled {
            (
                StatusCode::OK,
                format!("{{\"status\":\"ok\",\"last_beat_ms_ago\":{age_ms}}}\n"),
            )
        } else {
            (
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "{{\"status\":\"unavailable\",\"ready\":{ready},\"produce_stalled\":{stalled},\"last_beat_ms_ago\":{age_ms}}}\n"
                ),
            )
        }
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
    // The address bound (`127.0.0.1:0` asks for any free port: say which one).
    let listen = listener.local_addr().unwrap_or(config.listen);
    tracing::info!(%listen, "metrics and health endpoint up");
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
    health.report()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stalled_deliveries_make_health_unavailable_until_they_clear() {
        let h = Health::default();
        let (code, body) = h.report();
        assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE, "not ready yet");
        // No beat yet: no age (it had been the milliseconds since 1970).
        assert!(body.contains("\"last_beat_ms_ago\":null"), "{body}");
        h.ready.store(true, Ordering::Relaxed);
        h.beat();
        assert_eq!(h.report().0, StatusCode::OK);
        h.set_producing(false);
        let (code, body) = h.report();
        assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE);
        assert!(body.contains("\"produce_stalled\":true"), "{body}");
        h.set_producing(true);
        assert_eq!(h.report().0, StatusCode::OK);
    }
}
