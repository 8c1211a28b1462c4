//! Compiles `proto/sobre/**/*.proto` with protox (pure Rust), so building
//! Sobre needs no system `protoc`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = ["proto/sobre/v1/telemetry.proto"];
    for f in files {
        println!("cargo:rerun-if-changed={f}");
    }
    let fds = protox::compile(files, ["proto"])?;
    tonic_prost_build::configure()
        // Inventory and friends are served as JSON by the collector's API.
        .type_attribute(".sobre", "#[derive(serde::Serialize, serde::Deserialize)]")
        // JSON stored by an older Sobre lacks the fields added since:
        // they take their defaults instead of failing to load.
        .message_attribute(".sobre", "#[serde(default)]")
        // The rpc is called Connect: the generated `TelemetryClient::connect`
        // constructor would clash with it, so clients build their Channel.
        .build_transport(false)
        .compile_fds(fds)?;
    Ok(())
}
