//! TLS for MQTT (rustls with the ring provider, no OpenSSL, no aws-lc):
//! a client configuration that trusts only the given CA. Shared by the
//! agent's transport and the collector's client of an external broker.

pub use sobre_base::mqtt_url::is_tls;

/// The rumqttc transport for TLS trusting the CA(s) in `ca_pem`.
pub fn mqtt_transport(ca_pem: &[u8]) -> Result<rumqttc::Transport, String> {
    Ok(rumqttc::Transport::tls_with_config(
        rumqttc::TlsConfiguration::Rustls(sobre_base::mqtt_url::tls_client_config(ca_pem)?),
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
