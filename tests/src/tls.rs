//! Test certificates: a CA and a server certificate for 127.0.0.1 signed
//! by it (valid, or expired), written as PEM files for the collector's and
//! the agent's configs.

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use std::path::{Path, PathBuf};

/// PEM files in a directory.
pub struct Pki {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Pki {
    /// `tls_cert` and `tls_key` for a collector's config section.
    pub fn server_toml(&self) -> String {
        format!(
            "tls_cert = \"{}\"\ntls_key = \"{}\"\n",
            self.cert.display(),
            self.key.display()
        )
    }

    /// `[mqtt]` keys for the embedded broker's TLS front on `port`.
    pub fn mqtt_tls_toml(&self, port: u16) -> String {
        format!("tls_listen = \"127.0.0.1:{port}\"\n{}", self.server_toml())
    }
}

/// A CA and a server certificate for `127.0.0.1` in `dir`; `expired`
/// dates the server certificate in the past.
pub fn pki(dir: &Path, expired: bool) -> Pki {
    std::fs::create_dir_all(dir).expect("pki dir");
    let mut ca = CertificateParams::new(Vec::<String>::new()).expect("ca params");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().expect("ca key")).expect("ca");
    let mut server = CertificateParams::new(vec!["127.0.0.1".to_owned()]).expect("params");
    if expired {
        server.not_before = rcgen::date_time_ymd(2020, 1, 1);
        server.not_after = rcgen::date_time_ymd(2021, 1, 1);
    }
    let key = KeyPair::generate().expect("server key");
    let cert = server.signed_by(&key, &ca).expect("server cert");
    let p = Pki {
        ca: dir.join("ca.pem"),
        cert: dir.join("server.pem"),
        key: dir.join("server.key"),
    };
    std::fs::write(&p.ca, ca.pem()).expect("write ca");
    std::fs::write(&p.cert, cert.pem()).expect("write cert");
    std::fs::write(&p.key, key.serialize_pem()).expect("write key");
    p
}
