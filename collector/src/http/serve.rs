//! Serving the API and the console: hyper's HTTP/1 connection over each
//! connection the HTTP listener admits (`limits::serve`: cap, TLS when
//! `http.tls_cert` is set, first-byte and idle timeouts), with a time
//! limit on each request's headers (hyper's header read timeout, which
//! also closes a kept-alive connection waiting for its next request) and
//! on each whole request. Each request carries its peer's address
//! (`ConnectInfo`), for the login's failed-attempt limit.

use crate::limits::Listener;
use crate::metrics::Metrics;
use axum::Router;
use axum::extract::ConnectInfo;
use axum::http::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

/// `listeners.http_header_timeout_s` and `listeners.http_request_timeout_s`.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    pub header: Duration,
    pub request: Duration,
}

/// Serves `app` on `tcp` through `listener` until `cancel`.
pub async fn serve(
    listener: Arc<Listener>,
    tcp: TcpListener,
    app: Router,
    t: Timeouts,
    metrics: Arc<Metrics>,
    cancel: CancellationToken,
) {
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(t.header);
    let name = listener.name();
    listener
        .serve(tcp, cancel, move |conn, peer| {
            let (app, builder, metrics) = (app.clone(), builder.clone(), metrics.clone());
            let per_request = metrics.clone();
            async move {
                let svc = tower::service_fn(move |mut req: Request<hyper::body::Incoming>| {
                    req.extensions_mut().insert(ConnectInfo(peer));
                    let (app, metrics) = (app.clone(), per_request.clone());
                    async move {
                        match tokio::time::timeout(t.request, app.oneshot(req)).await {
                            Ok(r) => r,
                            Err(_) => {
                                metrics.conn_timed_out(name, "request");
                                Ok(too_slow(t.request))
                            }
                        }
                    }
                });
                let served = builder
                    .serve_connection(TokioIo::new(conn), TowerToHyperService::new(svc))
                    .await;
                if let Err(e) = served {
                    if e.downcast_ref::<hyper::Error>()
                        .is_some_and(hyper::Error::is_timeout)
                    {
                        metrics.conn_timed_out(name, "header");
                    }
                    tracing::debug!(%peer, error = %e, "HTTP connection ended with an error");
                }
            }
        })
        .await
}

/// The answer to a request that took longer than its limit.
fn too_slow(limit: Duration) -> Response<axum::body::Body> {
    let mut r = Response::new(axum::body::Body::from(format!(
        "the request took longer than listeners.http_request_timeout_s = {} s\n",
        limit.as_secs()
    )));
    *r.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
    r
}
