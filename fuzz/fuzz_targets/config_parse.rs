//! Exercises the agent's and the collector's config loading from text:
//! TOML parsing into `AgentConfig` / `CollectorConfig` and their
//! `validate`, as `load` does for a file (`parse` then `validate`). Arbitrary UTF-8 must never
//! panic; a config that validates must also survive `--print-config`
//! (render, parse back, validate again, equal).
#![no_main]

use libfuzzer_sys::fuzz_target;
use sobre_agent::config::AgentConfig;
use sobre_collector::config::CollectorConfig;

fuzz_target!(|text: &str| {
    if let Ok(cfg) = AgentConfig::parse(text)
        && cfg.validate().is_ok()
    {
        let again = AgentConfig::parse(&cfg.to_toml()).expect("printed agent config parses");
        again.validate().expect("printed agent config validates");
        assert_eq!(format!("{cfg:?}"), format!("{again:?}"));
    }
    // `validate` also reads `footprint.grid_hourly_file` from disk: a
    // fuzzer-chosen path (/dev/zero, a fifo) would test the file system,
    // not the parser, so it is dropped after parsing.
    if let Ok(mut cfg) = CollectorConfig::parse(text) {
        cfg.footprint.grid_hourly_file = None;
        if cfg.validate().is_ok() {
            let again =
                CollectorConfig::parse(&cfg.to_toml()).expect("printed collector config parses");
            again
                .validate()
                .expect("printed collector config validates");
            assert_eq!(format!("{cfg:?}"), format!("{again:?}"));
        }
    }
});
