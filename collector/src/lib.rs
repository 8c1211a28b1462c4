//! The Sobre collector: ingests envelopes over MQTT (embedded rumqttd or
//! an external broker) and gRPC, stores them once in SQLite, acks after
//! commit, and serves them over HTTP.

pub mod bench;

/// How often the API token files are read again (rotation without a
/// restart, SECURITY.md).
const TOKEN_REFRESH: std::time::Duration = std::time::Duration::from_secs(5);
pub mod campaign;
pub mod cluster;
pub mod config;
pub mod console;
pub mod db;
pub mod detect;
pub mod footprint;
pub mod http;
pub mod ingest;
pub mod jobs;
pub mod limits;
pub mod metrics;
pub mod nudge;
pub mod sink;
pub mod storage;
pub mod store;
pub mod tls;

use config::CollectorConfig;
use ingest::IngestCtx;
use metrics::Metrics;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Why the collector could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Store(#[from] store::StoreError),
    #[error(transparent)]
    Broker(#[from] ingest::broker::BrokerError),
    #[error("cannot listen on {addr} for {what}: {source}; choose a free address in the config")]
    Bind {
        what: &'static str,
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("cannot start the store writer thread: {0}")]
    Thread(std::io::Error),
}

/// A started collector: where it listens, and how to wait for its end.
pub struct Running {
    pub http_addr: SocketAddr,
    /// The API and console are served over HTTPS.
    pub https: bool,
    /// Where the admin API token is kept (owner-only).
    pub admin_token_file: std::path::PathBuf,
    /// The broker agents should use over MQTT (the embedded one or the
    /// configured external one).
    pub mqtt_addr: Option<SocketAddr>,
    /// The embedded broker's TLS front, if configured.
    pub mqtt_tls_addr: Option<SocketAddr>,
    pub grpc_addr: Option<SocketAddr>,
    pub metrics: Arc<Metrics>,
    cancel: CancellationToken,
    tracker: TaskTracker,
    writer: std::thread::JoinHandle<()>,
}

/// How long shutdown waits for each stage before giving up on it.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Starts every part of the collector. They run until `cancel`.
pub async fn start(cfg: CollectorConfig, cancel: CancellationToken) -> Result<Running, StartError> {
    cfg.validate().map_err(StartError::Config)?;
    let grid = match &cfg.footprint.grid_hourly_file {
        Some(path) => footprint::GridIntensity::load(cfg.footprint.grid_g_per_kwh, path)
            .map_err(|e| StartError::Config(e.to_string()))?,
        None => footprint::GridIntensity::flat(cfg.footprint.grid_g_per_kwh),
    };
    // The sink converts energy to CO2e with the same coefficients.
    let sink_grid = grid.clone();
    let footprint_settings = http::footprint_api::Settings {
        cfg: cfg.footprint.clone(),
        grid,
    };
    let metrics = Arc::new(Metrics::default());
    let shared = limits::Shared::start(
        &cfg.listeners,
        limits::Running {
            grpc: cfg.grpc.enabled,
            mqtt: cfg.mqtt.embedded,
            mqtt_tls: cfg.mqtt.embedded && cfg.mqtt.tls_listen.is_some(),
        },
        metrics.clone(),
    );
    let location = store::Location::from_config(&cfg);
    let writer_conn = location.open()?;
    let cluster = match location.postgres_url {
        Some(_) => cluster::Cluster::shared(cfg.node()),
        None => cluster::Cluster::single(cfg.node()),
    };
    tracing::info!(store = %location.describe(), node = %cluster.node, "store open");
    // data_dir holds the admin token and the sink's cursor, whatever the store.
    store::private_data_dir(&cfg.data_dir)?;
    // After the store: it creates data_dir, where the admin token lives.
    let tokens = Arc::new(
        http::auth::Tokens::load(&cfg.http, &cfg.data_dir)
            .map_err(|e| StartError::Config(e.to_string()))?,
    );
    if cfg.http.open_read && !cfg.http.listen.ip().is_loopback() {
        tracing::warn!(listen = %cfg.http.listen, "reads are open without a token on a non-loopback address; set http.open_read = false unless the network is trusted");
    }
    let reader = store::Reader::new(location.open_reader()?);
    let routes = ingest::routes::Routes::default();
    let writer = store::Writer::new(writer_conn, metrics.clone(), cfg.store.batch_max)
        .map_err(store::StoreError::from)?
        .node(cluster.sample_node())
        .notify_online(routes.online.clone());
    let footprint_settings = Arc::new(footprint_settings);
    let jobs = Arc::new(jobs::Jobs::new(
        location.open()?,
        cluster.clone(),
        cfg.detect.clone(),
        cfg.nudge.clone(),
        footprint_settings.clone(),
        routes.clone(),
    ));
    // Built before anything runs, so a bad [sink] stops the start cleanly.
    let sink = match cfg.sink.enabled {
        true => Some(
            sink::Sink::new(
                &cfg.sink,
                &location,
                cluster.clone(),
                cfg.footprint.clone(),
                sink_grid,
                metrics.clone(),
            )
            .map_err(StartError::Config)?,
        ),
        false => None,
    };

    let bind = |what, addr| async move {
        tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| StartError::Bind { what, addr, source })
    };
    let http_listener = bind("the HTTP API", cfg.http.listen).await?;
    let http_addr = local_addr(&http_listener, "the HTTP API", cfg.http.listen)?;

    let (events_tx, events_rx) = mpsc::channel(cfg.store.queue);
    // Room for several batches of acks; the writer never waits for it.
    let (acks_tx, acks_rx) = mpsc::channel(16 * 1024);
    let writer = std::thread::Builder::new()
        .name("store-writer".into())
        .spawn(move || writer.run(events_rx, acks_tx))
        .map_err(StartError::Thread)?;

    let credentials = Arc::new(
        ingest::credentials::Credentials::load(
            location.open()?.as_ref(),
            cfg.security.require_enrolment,
        )
        .map_err(|e| StartError::Config(e.to_string()))?,
    );
    if !cfg.security.require_enrolment {
        tracing::warn!(
            "security.require_enrolment = false: envelopes from agents without a credential are accepted"
        );
    }
    let ctx = IngestCtx {
        events: events_tx,
        metrics: metrics.clone(),
        limits: cfg.limits.clone(),
        routes: routes.clone(),
        credentials: credentials.clone(),
        rate: Arc::new(ingest::rate::RateLimit::new(
            cfg.limits.max_envelopes_per_s,
            cfg.limits.burst,
        )),
    };
    let tracker = TaskTracker::new();

    // MQTT: the embedded broker behind the guard, or an external one.
    let (mut mqtt_tls_addr, mut mqtt_addr) = (None, None);
    let (host, port) = if cfg.mqtt.embedded {
        // rumqttd on a loopback port of its own, for the guard and this
        // collector's client only; agents connect to the guard.
        let auth =
            ingest::guard::InternalAuth::new(&cfg.mqtt.client_id, credentials.own_mqtt_password())
                .map_err(|e| StartError::Config(format!("cannot generate a password: {e}")))?;
        let check: ingest::broker::ConnectCheck = Arc::new({
            let auth = auth.clone();
            move |client: &str, user: &str, pass: &str| auth.allows(client, user, pass)
        });
        let internal = tokio::task::spawn_blocking({
            let max = cfg.mqtt.max_packet_bytes;
            move || ingest::broker::start(SocketAddr::from(([127, 0, 0, 1], 0)), max, check)
        })
        .await
        .map_err(|e| StartError::Config(e.to_string()))??;
        let guard = Arc::new(ingest::guard::Guard::new(
            ingest::guard::Settings {
                broker: internal,
                auth,
                max_packet_bytes: cfg.mqtt.max_packet_bytes,
                per_s: cfg.limits.max_envelopes_per_s,
                burst: cfg.limits.burst,
                connect_timeout: Duration::from_secs(cfg.listeners.mqtt_connect_timeout_s),
                failures: Some(shared.failures.clone()),
                budget: Some(shared.budget.clone()),
            },
            credentials.clone(),
            metrics.clone(),
        ));
        let listen = cfg.mqtt.listen;
        let bind_err = |source| ingest::broker::BrokerError::Bind {
            addr: listen,
            source,
        };
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .map_err(bind_err)?;
        let addr = listener.local_addr().map_err(bind_err)?;
        let plain = shared
            .listener("mqtt", cfg.listeners.mqtt)
            .refuse_blocked(shared.failures.clone());
        tracker.spawn(ingest::tls_front::run(
            Arc::new(plain),
            listener,
            guard.clone(),
            cancel.clone(),
        ));
        tracing::info!(%addr, "MQTT listening (embedded broker, through the guard)");
        mqtt_addr = Some(addr);
        if let (Some(listen), Some(cert), Some(key)) =
            (cfg.mqtt.tls_listen, &cfg.mqtt.tls_cert, &cfg.mqtt.tls_key)
        {
            let acceptor = tls::acceptor(cert, key).map_err(StartError::Config)?;
            let listener = bind("MQTT over TLS", listen).await?;
            let tls_addr = local_addr(&listener, "MQTT over TLS", listen)?;
            let front = shared
                .listener("mqtt_tls", cfg.listeners.mqtt_tls)
                .tls(acceptor)
                .refuse_blocked(shared.failures.clone());
            tracker.spawn(ingest::tls_front::run(
                Arc::new(front),
                listener,
                guard,
                cancel.clone(),
            ));
            tracing::info!(%tls_addr, "MQTT over TLS listening (embedded broker)");
            mqtt_tls_addr = Some(tls_addr);
        }
        (internal.ip().to_string(), internal.port())
    } else {
        let url = cfg.mqtt.broker.as_deref().unwrap_or_default();
        config::parse_broker_url(url).map_err(StartError::Config)?
    };
    if mqtt_addr.is_none() {
        mqtt_addr = tokio::net::lookup_host((host.as_str(), port))
            .await
            .ok()
            .and_then(|mut a| a.next());
    }
    let (client, eventloop) = ingest::mqtt::client(&ingest::mqtt::ClientSettings {
        host,
        port,
        client_id: ingest::mqtt::client_id(&cfg.mqtt, &cfg.data_dir),
        share_group: cfg.mqtt.share_group.clone(),
        max_packet_bytes: cfg.mqtt.max_packet_bytes,
        // The embedded broker's internal listener admits the collector by
        // its per-start password (and the guard).
        credentials: cfg.mqtt.embedded.then(|| {
            (
                cfg.mqtt.client_id.clone(),
                credentials.own_mqtt_password().to_owned(),
            )
        }),
        tls: match &cfg.mqtt.broker {
            Some(b) if !cfg.mqtt.embedded && sobre_base::mqtt_url::is_tls(b) => {
                Some(cfg.mqtt.tls().map_err(StartError::Config)?)
            }
            _ => None,
        },
    });
    tracker.spawn(ingest::mqtt::run(
        client.clone(),
        eventloop,
        ctx.clone(),
        cancel.clone(),
    ));
    routes.set_mqtt(client.clone());
    routes.set_signer(credentials.clone());
    tracker.spawn(ingest::acks::run(
        acks_rx,
        Some(client),
        metrics.clone(),
        credentials.clone(),
    ));
    tracker.spawn(limits::log::summaries(cancel.clone()));
    tracker.spawn(jobs::detect_loop(jobs.clone(), cancel.clone()));
    tracker.spawn(jobs::dispatch_loop(jobs.clone(), cancel.clone()));
    let lease = std::time::Duration::from_secs(cfg.cluster.lease_s);
    if cluster.shared {
        tracker.spawn(cluster::lease_loop(
            cluster.clone(),
            location.clone(),
            lease,
            cancel.clone(),
        ));
    }
    // Enrolments and revocations made elsewhere (another collector, or
    // `sobre-collector revoke` on this store) take effect within this.
    tracker.spawn(cluster::refresh_credentials(
        credentials.clone(),
        location.clone(),
        lease / 3,
        cancel.clone(),
    ));
    tracker.spawn(http::auth::refresh_loop(
        tokens.clone(),
        TOKEN_REFRESH,
        cancel.clone(),
    ));

    // gRPC.
    let grpc_addr = if cfg.grpc.enabled {
        let listener = bind("gRPC", cfg.grpc.listen).await?;
        let addr = local_addr(&listener, "gRPC", cfg.grpc.listen)?;
        let svc = sobre_proto::v1::telemetry_server::TelemetryServer::new(
            ingest::grpc::TelemetryService::new(ctx.clone(), cancel.clone(), location.clone())
                .with_failures(shared.failures.clone()),
        )
        .max_decoding_message_size(cfg.limits.max_envelope_bytes);
        let mut front = shared.listener("grpc", cfg.listeners.grpc);
        if let (Some(cert), Some(key)) = (&cfg.grpc.tls_cert, &cfg.grpc.tls_key) {
            // tonic's client requires HTTP/2 negotiated by ALPN.
            front = front.tls(
                tls::acceptor_alpn(cert, key, vec![b"h2".to_vec()])
                    .map_err(|e| StartError::Config(format!("grpc TLS: {e}")))?,
            );
            tracing::info!("gRPC over TLS");
        }
        tracker.spawn({
            let (listeners, cancel) = (cfg.listeners.clone(), cancel.clone());
            async move {
                ingest::grpc::serve(Arc::new(front), listener, svc, &listeners, cancel).await
            }
        });
        tracing::info!(%addr, "gRPC listening");
        Some(addr)
    } else {
        None
    };
    drop(ctx);

    // InfluxDB sink: reads what the writer committed; stops with the
    // others on `cancel`, within its own short grace (see sink::run).
    if let Some(sink) = sink {
        tracker.spawn(sink.run(cancel.clone()));
    }

    // HTTP.
    let app = http::router(http::AppState {
        reader,
        metrics: metrics.clone(),
        footprint: footprint_settings,
        jobs,
        tokens: tokens.clone(),
        credentials,
        security: cfg.security.clone(),
        https: cfg.http.tls_cert.is_some(),
        hosts: http::origin::AllowedHosts::new(&cfg.http.allowed_hosts),
    });
    // The console's login counts failed attempts per source.
    let app = app.layer(axum::Extension(shared.failures.clone()));
    let admin_token_file = tokens.admin_file.clone();
    let mut front = shared.listener("http", cfg.listeners.http);
    if let (Some(cert), Some(key)) = (&cfg.http.tls_cert, &cfg.http.tls_key) {
        front = front.tls(tls::acceptor(cert, key).map_err(StartError::Config)?);
    }
    let timeouts = http::serve::Timeouts {
        header: Duration::from_secs(cfg.listeners.http_header_timeout_s),
        request: Duration::from_secs(cfg.listeners.http_request_timeout_s),
    };
    tracker.spawn(http::serve::serve(
        Arc::new(front),
        http_listener,
        app,
        timeouts,
        metrics.clone(),
        cancel.clone(),
    ));
    match cfg.http.tls_cert {
        Some(_) => tracing::info!(%http_addr, "HTTPS API listening"),
        None => tracing::info!(%http_addr, "HTTP API listening"),
    }
    tracker.close();
    Ok(Running {
        http_addr,
        https: cfg.http.tls_cert.is_some(),
        admin_token_file,
        mqtt_addr,
        mqtt_tls_addr,
        grpc_addr,
        metrics,
        cancel,
        tracker,
        writer,
    })
}

fn local_addr(
    l: &tokio::net::TcpListener,
    what: &'static str,
    addr: SocketAddr,
) -> Result<SocketAddr, StartError> {
    l.local_addr()
        .map_err(|source| StartError::Bind { what, addr, source })
}

impl Running {
    /// Waits for the cancellation, then stops in order: listeners and
    /// ingest first, then the writer commits what it holds and sends the
    /// last acks. Each stage is bounded by [`DRAIN_TIMEOUT`].
    pub async fn stopped(self) {
        self.cancel.cancelled().await;
        tracing::info!("shutting down: ingest first, then the store");
        if tokio::time::timeout(DRAIN_TIMEOUT, self.tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!("ingest did not stop within {DRAIN_TIMEOUT:?}; stopping anyway");
        }
        let writer = self.writer;
        let joined = tokio::task::spawn_blocking(move || writer.join());
        match tokio::time::timeout(DRAIN_TIMEOUT, joined).await {
            Ok(_) => tracing::info!("store closed cleanly"),
            Err(_) => tracing::warn!(
                "store writer still busy after {DRAIN_TIMEOUT:?}; uncommitted envelopes were not acked and agents will resend them"
            ),
        }
    }
}
