//! The Sobre wire protocol: generated `sobre.v1` messages and gRPC service,
//! plus the MQTT topic names both ends agree on.

/// `sobre.v1`. A future `sobre.v2` lives beside it as another module.
pub mod v1 {
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("sobre.v1");

    /// The value of `Envelope.version` for this package.
    pub const VERSION: u32 = 1;
}

pub mod topics;
