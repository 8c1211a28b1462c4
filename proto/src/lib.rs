//! The Sobre wire protocol: generated `sobre.v1` messages and gRPC service,
//! plus the MQTT topic names both ends agree on.

/// `sobre.v1`. A future `sobre.v2` lives beside it as another module.
pub mod v1 {
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("sobre.v1");

    /// The value of `Envelope.version` for this package.
    pub const VERSION: u32 = 1;
}

pub mod mac;
pub mod topics;

#[cfg(test)]
mod tests {
    /// Regression: JSON written by an older Sobre (fewer fields) must load,
    /// not silently turn into an empty inventory.
    #[test]
    fn partial_inventory_json_loads_with_defaults() {
        let inv: super::v1::Inventory =
            serde_json::from_str(r#"{"chassis":"server","cpu_threads":8}"#).expect("loads");
        assert_eq!(inv.chassis, "server");
        assert_eq!(inv.cpu_threads, 8);
        assert!(inv.monitors.is_empty());
    }
}
