//! HTTPS for the API and the console: TLS (`crate::tls`) in front of the
//! same axum router, served by hyper's automatic HTTP/1 or HTTP/2
//! connection. Used when `http.tls_cert` and `http.tls_key` are set.

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

/// Accepts TLS connections until `cancel`, each served by `app`.
pub async fn serve(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    app: Router,
    cancel: CancellationToken,
) {
    crate::tls::serve(listener, acceptor, "HTTPS", cancel, move |tls, peer| {
        let app = app.clone();
        async move {
            let conn = Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(tls), TowerToHyperService::new(app))
                .into_owned();
            if let Err(e) = conn.await {
                tracing::debug!(%peer, error = %e, "HTTPS connection ended with an error");
            }
        }
    })
    .await
}
