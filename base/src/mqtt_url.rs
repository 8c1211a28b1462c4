//! MQTT broker URLs as both binaries read them, and the TLS client
//! configuration they use for `mqtts://` (rustls with the ring provider,
//! no OpenSSL, no aws-lc) trusting only the given CA.

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use std::sync::Arc;

/// `mqtts://` URLs mean TLS.
pub fn is_tls(url: &str) -> bool {
    url.starts_with("mqtts://") || url.starts_with("ssl://")
}

/// `mqtt://host:port` → (host, port). Port defaults to 1883 (8883 for
/// `mqtts://`).
pub fn parse(url: &str) -> Result<(String, u16), String> {
    let tls = is_tls(url);
    let rest = url
        .strip_prefix("mqtt://")
        .or_else(|| url.strip_prefix("tcp://"))
        .or_else(|| url.strip_prefix("mqtts://"))
        .or_else(|| url.strip_prefix("ssl://"))
        .ok_or_else(|| {
            format!("MQTT broker {url:?} must start with mqtt:// (or mqtts:// for TLS)")
        })?
        .trim_end_matches('/');
    let default_port = if tls { 8883 } else { 1883 };
    match rest.rsplit_once(':') {
        Some((host, port)) => {
            let port = port
                .parse::<u16>()
                .map_err(|_| format!("MQTT broker {url:?}: port {port:?} is not a number"))?;
            Ok((host.trim_matches(['[', ']']).to_owned(), port))
        }
        None if !rest.is_empty() => Ok((rest.to_owned(), default_port)),
        None => Err(format!("MQTT broker {url:?} has no host")),
    }
}

/// A TLS client configuration trusting the CA(s) in `ca_pem` only.
pub fn tls_client_config(ca_pem: &[u8]) -> Result<Arc<rustls::ClientConfig>, String> {
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
    Ok(Arc::new(cfg))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ca_file_without_certificates_is_a_clear_error() {
        assert!(tls_client_config(b"not pem").is_err_and(|e| e.contains("no certificate")));
        assert!(is_tls("mqtts://h:8883") && !is_tls("mqtt://h"));
    }

    #[test]
    fn urls_with_and_without_port() {
        assert_eq!(parse("mqtt://h"), Ok(("h".into(), 1883)));
        assert_eq!(parse("mqtts://h"), Ok(("h".into(), 8883)));
        assert_eq!(parse("mqtt://[::1]:1884/"), Ok(("::1".into(), 1884)));
        assert!(parse("http://h").is_err() && parse("mqtt://").is_err());
        assert!(parse("mqtt://h:99999").is_err());
    }
}
