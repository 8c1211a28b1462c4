//! TLS for MQTT (rustls with the ring provider, no OpenSSL, no aws-lc):
//! a client configuration that trusts only the given CA. Shared by the
//! agent's transport and the collector's client of an external broker.

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use std::sync::Arc;

/// `mqtts://` URLs mean TLS.
pub fn is_tls(url: &str) -> bool {
    url.starts_with("mqtts://") || url.starts_with("ssl://")
}

/// The rumqttc transport for TLS trusting the CA(s) in `ca_pem`.
pub fn mqtt_transport(ca_pem: &[u8]) -> Result<rumqttc::Transport, String> {
    let mut roots = rustls::RootCertStore::empty();
    let mut n = 0;
    for cert in CertificateDer::pem_slice_iter(ca_pem) {
        let cert = cert.map_err(|e| format!("the CA file is not PEM: {e}"))?;
        roots
            .add(cert)
            .map_err(|e| format!("the CA file holds an unusable certificate: {e}"))?;
        n += 1;
    }
    if n == 0 {
        return Err("the CA file holds no certificate".into());
    }
    let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(rumqttc::Transport::tls_with_config(
        rumqttc::TlsConfiguration::Rustls(Arc::new(cfg)),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ca_file_without_certificates_is_a_clear_error() {
        assert!(mqtt_transport(b"not pem").is_err_and(|e| e.contains("no certificate")));
        assert!(is_tls("mqtts://h:8883") && !is_tls("mqtt://h"));
    }
}
