//! gRPC ingest: `sobre.v1.Telemetry/Connect`, one bidirectional stream per
//! agent carrying Envelopes up and Downlinks (acks) down.

use super::credentials::EnrolError;
use super::{Event, IngestCtx, Reply, now_ms, rejected};
use sobre_proto::v1::telemetry_server::Telemetry;
use sobre_proto::v1::{Downlink, EnrolReply, EnrolRequest, Envelope};
use std::sync::atomic::Ordering::Relaxed;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status, Streaming};

/// Connections admitted by the listener, waiting for tonic to take them.
const ADMITTED_QUEUE: usize = 64;

/// Largest header block a client may send (an agent's is a few hundred
/// bytes); h2's default is 16 MiB.
const MAX_HEADER_LIST_BYTES: u32 = 16 * 1024;

/// Serves `svc` on the connections `listener` admits from `tcp` (cap,
/// TLS, first-byte and idle timeouts) until `cancel`, with HTTP/2
/// keep-alive PINGs and a cap on streams per connection.
pub async fn serve(
    listener: std::sync::Arc<crate::limits::Listener>,
    tcp: tokio::net::TcpListener,
    svc: sobre_proto::v1::telemetry_server::TelemetryServer<TelemetryService>,
    cfg: &crate::limits::ListenersConfig,
    cancel: CancellationToken,
) {
    use std::time::Duration;
    use tokio_stream::StreamExt;
    let (tx, rx) = mpsc::channel::<crate::limits::Conn>(ADMITTED_QUEUE);
    let accept = listener.serve(tcp, cancel.clone(), move |conn, _peer| {
        let tx = tx.clone();
        async move {
            let _ = tx.send(conn).await;
        }
    });
    let incoming = ReceiverStream::new(rx).map(Ok::<_, std::io::Error>);
    let server = tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(Duration::from_secs(cfg.grpc_keepalive_interval_s)))
        .http2_keepalive_timeout(Some(Duration::from_secs(cfg.grpc_keepalive_timeout_s)))
        .max_concurrent_streams(cfg.grpc_max_streams)
        .http2_max_header_list_size(MAX_HEADER_LIST_BYTES)
        .add_service(svc)
        .serve_with_incoming_shutdown(incoming, cancel.cancelled());
    let (_, served) = tokio::join!(accept, server);
    if let Err(e) = served {
        tracing::error!(error = %e, "gRPC server failed");
    }
}

/// Downlinks waiting to be written to one agent's stream. An ack that does
/// not fit is dropped and counted: the agent resends, the store dedups.
pub const DOWNLINK_QUEUE: usize = 256;

pub struct TelemetryService {
    ctx: IngestCtx,
    cancel: CancellationToken,
    /// For enrolments (rare: a short-lived store connection each).
    /// Where enrolments are written: the store, whichever its engine.
    store: crate::store::Location,
    /// Failed enrolments per source (`limits::auth`).
    failures: Option<std::sync::Arc<crate::limits::AuthFailures>>,
}

impl TelemetryService {
    pub fn new(ctx: IngestCtx, cancel: CancellationToken, store: crate::store::Location) -> Self {
        TelemetryService {
            ctx,
            cancel,
            store,
            failures: None,
        }
    }

    /// Refuses `Enrol` from sources that failed too often.
    pub fn with_failures(mut self, f: std::sync::Arc<crate::limits::AuthFailures>) -> Self {
        self.failures = Some(f);
        self
    }
}

#[tonic::async_trait]
impl Telemetry for TelemetryService {
    type ConnectStream = ReceiverStream<Result<Downlink, Status>>;

    async fn connect(
        &self,
        request: Request<Streaming<Envelope>>,
    ) -> Result<Response<Self::ConnectStream>, Status> {
        let peer = request
            .remote_addr()
            .map(|a| a.to_string())
            .unwrap_or_else(|| "unknown".into());
        let inbound = request.into_inner();
        let (tx, rx) = mpsc::channel(DOWNLINK_QUEUE);
        tokio::spawn(serve_stream(
            inbound,
            tx,
            self.ctx.clone(),
            self.cancel.clone(),
            peer,
        ));
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn enrol(&self, request: Request<EnrolRequest>) -> Result<Response<EnrolReply>, Status> {
        let addr = request.remote_addr();
        let failures = self.failures.as_ref().zip(addr.map(|a| a.ip()));
        if let Some((f, ip)) = failures {
            f.check(ip, "grpc")
                .map_err(|b| Status::resource_exhausted(b.to_string()))?;
        }
        let peer = addr.map_or_else(|| "unknown".into(), |a| a.to_string());
        let req = request.into_inner();
        let (creds, store) = (self.ctx.credentials.clone(), self.store.clone());
        let agent = req.agent_id.clone();
        let result = tokio::task::spawn_blocking(move || {
            let conn = store.open()?;
            creds.enrol(conn.as_ref(), &req.agent_id, &req.token, now_ms())
        })
        .await
        .map_err(|e| Status::internal(e.to_string()))?;
        match result {
            Ok(key) => Ok(Response::new(EnrolReply { key: key.to_vec() })),
            Err(e) => {
                self.ctx.metrics.rejected("enrol_refused");
                if let Some((f, ip)) = failures
                    && matches!(
                        e,
                        EnrolError::Token | EnrolError::AgentId(_) | EnrolError::Taken(_)
                    )
                {
                    f.record(ip, "grpc");
                }
                let now = std::time::Instant::now();
                if let Some(more) = crate::limits::logs().due(("grpc", "enrol_refused"), now) {
                    tracing::warn!(%peer, agent = %agent.chars().take(80).collect::<String>(), error = %e, "enrolment refused{more}");
                }
                Err(if e.is_refusal() {
                    Status::permission_denied(e.to_string())
                } else {
                    Status::internal(e.to_string())
                })
            }
        }
    }
}

/// Reads one agent's stream until it ends, the collector stops, or the
/// agent breaks the rules of the stream (another agent_id mid-stream).
async fn serve_stream(
    mut inbound: Streaming<Envelope>,
    tx: mpsc::Sender<Result<Downlink, Status>>,
    ctx: IngestCtx,
    cancel: CancellationToken,
    peer: String,
) {
    let mut agent: Option<String> = None;
    loop {
        let msg = tokio::select! {
            _ = cancel.cancelled() => break,
            m = inbound.message() => m,
        };
        let env = match msg {
            Ok(Some(env)) => env,
            Ok(None) => break,
            Err(status) => {
                if status.code() == tonic::Code::OutOfRange
                    || status.message().contains("message length too large")
                {
                    ctx.metrics.received.fetch_add(1, Relaxed);
                    ctx.metrics.rejected("oversized");
                }
                tracing::warn!(%peer, agent = agent.as_deref().unwrap_or("?"), error = %status.message(), "gRPC stream ended with an error");
                break;
            }
        };
        ctx.metrics.received.fetch_add(1, Relaxed);
        let env = match super::check(env, agent.as_deref(), &ctx.limits).and_then(|e| ctx.admit(e))
        {
            Ok(env) => env,
            Err(why) => {
                rejected(&ctx.metrics, "grpc", &peer, &why);
                // Over its limit: stop reading this stream until a token
                // is back, so a flooder is slowed by flow control instead
                // of costing a decode and a MAC per refused envelope.
                if matches!(why, super::Reject::RateLimited { .. }) {
                    tokio::select! {
                        _ = cancel.cancelled() => break,
                        _ = tokio::time::sleep(ctx.rate.refill_time()) => {}
                    }
                }
                continue;
            }
        };
        if agent.is_none() {
            agent = Some(env.agent_id.clone());
            ctx.routes.register_grpc(&env.agent_id, tx.clone());
            let ev = Event::Presence {
                agent_id: env.agent_id.clone(),
                online: true,
                transport: "grpc",
                at_ms: now_ms(),
            };
            if ctx.events.send(ev).await.is_err() {
                break;
            }
        }
        let ev = Event::Envelope {
            env,
            reply: Reply::Grpc(tx.clone()),
            received_ms: now_ms(),
        };
        if ctx.events.send(ev).await.is_err() {
            break;
        }
    }
    if let Some(agent_id) = agent {
        ctx.routes.unregister_grpc(&agent_id, &tx);
        let _ = ctx
            .events
            .send(Event::Presence {
                agent_id,
                online: false,
                transport: "grpc",
                at_ms: now_ms(),
            })
            .await;
    }
}
