//! Enrolment: trades the one-time token of `[enrol]` for this agent's key
//! (gRPC `Telemetry/Enrol`), keeps the key in an owner-only file, and signs
//! each envelope with it when it is sent (so envelopes spooled before the
//! key arrived are signed too).

use crate::config::AgentConfig;
use sobre_proto::v1::EnrolRequest;
use sobre_proto::v1::telemetry_client::TelemetryClient;
use std::io;
use std::path::Path;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum EnrolError {
    #[error("cannot {op} the credential file {path}: {err}")]
    Io {
        op: &'static str,
        path: String,
        err: io::Error,
    },
    #[error(
        "the credential file {0} is damaged (not 64 hex characters); delete it and enrol again with a new token"
    )]
    Damaged(String),
    #[error("the collector refused the enrolment: {0}")]
    Refused(String),
    #[error("cannot reach the collector at {endpoint} to enrol: {reason}; retrying")]
    Unreachable { endpoint: String, reason: String },
}

/// Where the key lives once known, shared by the runtime (signing) and
/// the MQTT transport (connecting).
pub type KeyHolder = std::sync::Arc<std::sync::RwLock<Option<[u8; 32]>>>;

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The key in `path`, if the agent enrolled before.
pub fn load(path: &Path) -> Result<Option<[u8; 32]>, EnrolError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(err) => {
            return Err(EnrolError::Io {
                op: "read",
                path: path.display().to_string(),
                err,
            });
        }
    };
    crate::scan::parse_key(text.trim())
        .map(Some)
        .ok_or_else(|| EnrolError::Damaged(path.display().to_string()))
}

/// Writes the key, owner-only, atomically.
pub fn save(path: &Path, key: &[u8; 32]) -> Result<(), EnrolError> {
    let io = |op, err| EnrolError::Io {
        op,
        path: path.display().to_string(),
        err,
    };
    if let Some(d) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        sobre_base::files::ensure_private_dir(d).map_err(|e| io("create the folder of", e))?;
    }
    sobre_base::files::write_private_atomic(path, format!("{}\n", hex(key)).as_bytes())
        .map_err(|e| io("write", e))
}

/// One enrolment attempt.
pub async fn enrol_once(
    endpoint: &str,
    ca_pem: Option<&[u8]>,
    agent_id: &str,
    token: &str,
) -> Result<[u8; 32], EnrolError> {
    let unreachable = |reason: String| EnrolError::Unreachable {
        endpoint: endpoint.to_owned(),
        reason,
    };
    let channel = crate::transport::grpc::endpoint(endpoint, ca_pem)
        .map_err(unreachable)?
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(30))
        .connect()
        .await
        .map_err(|e| unreachable(e.to_string()))?;
    let reply = TelemetryClient::new(channel)
        .enrol(EnrolRequest {
            agent_id: agent_id.to_owned(),
            token: token.to_owned(),
        })
        .await
        .map_err(|s| match s.code() {
            tonic::Code::PermissionDenied | tonic::Code::InvalidArgument => {
                EnrolError::Refused(s.message().to_owned())
            }
            _ => unreachable(s.message().to_owned()),
        })?
        .into_inner();
    <[u8; 32]>::try_from(reply.key.as_slice())
        .map_err(|_| EnrolError::Refused("the collector sent a key of the wrong size".into()))
}

/// Enrols, retrying with backoff while the collector is unreachable;
/// None when the collector refused (the error is logged) or on `cancel`.
pub async fn enrol(
    cfg: &AgentConfig,
    agent_id: &str,
    token: &str,
    cancel: &tokio_util::sync::CancellationToken,
) -> Option<[u8; 32]> {
    let endpoint = cfg
        .enrol
        .endpoint
        .clone()
        .unwrap_or_else(|| cfg.transport.grpc_endpoint.clone());
    let mut wait = Duration::from_millis(cfg.transport.backoff_min_ms.max(50));
    loop {
        match enrol_once(
            &endpoint,
            cfg.transport.ca_pem().as_deref(),
            agent_id,
            token,
        )
        .await
        {
            Ok(key) => {
                let path = cfg.credential_path();
                if let Err(e) = save(&path, &key) {
                    tracing::error!(error = %e, "enrolled, but the key cannot be kept: it is used until the agent stops");
                } else {
                    tracing::info!(file = %path.display(), "enrolled with the collector; key kept owner-only");
                }
                return Some(key);
            }
            Err(EnrolError::Refused(why)) => {
                tracing::error!(reason = %why, "enrolment refused: reports stay spooled; ask an admin for a new token (sobre-collector enrol --agent {agent_id})");
                return None;
            }
            Err(e) => tracing::warn!(error = %e, "enrolment failed"),
        }
        tokio::select! {
            _ = cancel.cancelled() => return None,
            _ = tokio::time::sleep(wait) => {}
        }
        wait = (wait * 2).min(Duration::from_millis(
            cfg.transport.backoff_max_ms.max(1000),
        ));
    }
}

pub use sobre_proto::mac::{mqtt_password, sign, verify_downlink};

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;
    use sobre_proto::v1::Envelope;

    #[test]
    fn the_key_is_kept_owner_only_and_read_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("state/credential");
        assert_eq!(load(&path).expect("absent"), None);
        let key = [7u8; 32];
        save(&path, &key).expect("save");
        assert_eq!(load(&path).expect("load"), Some(key));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).expect("stat").permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        std::fs::write(&path, "short").expect("damage");
        assert!(matches!(load(&path), Err(EnrolError::Damaged(_))));
    }

    #[test]
    fn downlinks_pass_only_with_a_mac_of_our_key() {
        use sobre_proto::v1::{Ack, Downlink, downlink};
        let key = [3u8; 32];
        let mut dl = Downlink {
            body: Some(downlink::Body::Ack(Ack { seqs: vec![1, 2] })),
            mac: Vec::new(),
        };
        assert!(verify_downlink(&key, dl.clone()).is_none(), "unsigned");
        dl.mac = blake3::keyed_hash(&key, &dl.encode_to_vec())
            .as_bytes()
            .to_vec();
        assert!(verify_downlink(&key, dl.clone()).is_some());
        assert!(
            verify_downlink(&[4u8; 32], dl.clone()).is_none(),
            "another key"
        );
        let mut forged = dl;
        forged.body = Some(downlink::Body::Ack(Ack {
            seqs: vec![1, 2, 3],
        }));
        assert!(verify_downlink(&key, forged).is_none(), "tampered");
    }

    #[test]
    fn signing_sets_a_mac_over_the_envelope_without_it() {
        let env = Envelope {
            agent_id: "a".into(),
            seq: 3,
            version: 1,
            ..Default::default()
        };
        let key = [1u8; 32];
        let signed =
            Envelope::decode(&sign(&key, &env.encode_to_vec()).expect("sign")[..]).expect("decode");
        assert_eq!(
            signed.mac,
            blake3::keyed_hash(&key, &env.encode_to_vec())
                .as_bytes()
                .to_vec()
        );
        // Signing again gives the same bytes (an old MAC is replaced).
        let twice = sign(&key, &signed.encode_to_vec()).expect("sign");
        assert_eq!(
            Envelope::decode(&twice[..]).expect("decode").mac,
            signed.mac
        );
    }
}
