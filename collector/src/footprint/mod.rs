//! Footprint: energy → kWh → kgCO2e (PUE, grid intensity) and embodied
//! emissions amortised over each device's life; every coefficient in
//! `config.rs`, cited in METHODOLOGY.md.

pub mod compute;
pub mod config;
pub mod grid;

pub use compute::{Report, Window, compute};
pub use config::FootprintConfig;
pub use grid::GridIntensity;

#[cfg(test)]
mod tests;
