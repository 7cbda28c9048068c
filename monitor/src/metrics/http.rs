//! The one HTTP listener: `/metrics`, `/healthz`, `/readyz`.
use std::{io, net::SocketAddr, sync::Arc};

use axum::{
    Router,
    extract::State,
    http::{StatusCode, header},
    response::IntoResponse,
    routing::get,
};
use tokio::{net::TcpListener, sync::oneshot, task::JoinHandle};

use super::Metrics;

/// A running listener; [`HttpListener::shutdown`] stops it.
pub struct HttpListener {
    /// The bound address (useful with port 0).
    pub local_addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<io::Result<()>>,
}

impl HttpListener {
    /// Stops accepting, lets open requests finish, and waits.
    pub async fn shutdown(mut self) -> io::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        (&mut self.task).await.unwrap_or(Ok(()))
    }
}

impl Drop for HttpListener {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Binds `addr` and serves the endpoints on a tokio task.
///
/// - `GET /metrics`: Prometheus text format 0.0.4.
/// - `GET /healthz`: 200 while the ring buffer reader's heartbeat is fresh, else 503.
/// - `GET /readyz`: 200 once programs are attached, no core hook is missing
///   and rules are loaded, else 503; the body lists how many hooks are
///   attached and each that is not, with why ([`Metrics::readiness`]).
pub async fn serve(addr: SocketAddr, metrics: Arc<Metrics>) -> io::Result<HttpListener> {
    let listener = TcpListener::bind(addr).await?;
    let local_addr = listener.local_addr()?;
    let app = Router::new()
        .route("/metrics", get(metrics_page))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(metrics);
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = stopped.await;
            })
            .await
    });
    tracing::info!(%local_addr, "metrics and health listener started");
    Ok(HttpListener {
        local_addr,
        stop: Some(stop),
        task,
    })
}

async fn metrics_page(State(m): State<Arc<Metrics>>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
        )],
        m.encode(),
    )
}

async fn healthz(State(m): State<Arc<Metrics>>) -> impl IntoResponse {
    let age = m.heartbeat_age().as_secs_f64();
    if m.healthy() {
        (
            StatusCode::OK,
            format!("ok: ring buffer read {age:.1}s ago\n"),
        )
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("unhealthy: ring buffer not read for {age:.1}s\n"),
        )
    }
}

async fn readyz(State(m): State<Arc<Metrics>>) -> impl IntoResponse {
    let (ready, page) = m.readiness();
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, page)
}
