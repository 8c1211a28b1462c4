//! Power and carbon end to end: the agent reports power with its source,
//! the collector turns a run of known length into kWh and kgCO2e that
//! equal energy × PUE × intensity, and embodied shares that equal the
//! amortised figures.

use crate::PATIENCE;
use sobre_tests::{Agent, AgentOpts, Collector, CollectorOpts, Transport};

const YEAR_MS: f64 = 365.25 * 24.0 * 3_600_000.0;

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9_f64.max(b.abs() * 1e-6)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn footprint_of_a_known_run_equals_energy_times_pue_times_intensity() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Round figures so the expected values are easy to check by hand;
    // every class gets the same embodied figure, whatever this machine is.
    let mut extra =
        String::from("[footprint]\ngrid_g_per_kwh = 100.0\n[footprint.pue]\ne2e = 1.5\n");
    for class in [
        "laptop", "desktop", "server", "vm", "monitor", "tablet", "other", "unknown",
    ] {
        extra.push_str(&format!(
            "[footprint.embodied.{class}]\nkg = 1000.0\nyears = 100.0\n"
        ));
    }
    let c = Collector::start(
        &dir.path().join("collector"),
        CollectorOpts {
            extra_toml: extra,
            ..Default::default()
        },
    )
    .await;
    let mut opts = AgentOpts::new("footprint", Transport::Grpc);
    opts.extra_toml = "group = \"e2e\"\n".into();
    let mut agent = Agent::start(&dir.path().join("agent"), &opts, c.mqtt, c.grpc);
    c.wait_samples(&agent.id, 30, PATIENCE).await;
    assert!(agent.stop().await.success());

    // Every sample carries power, energy and where they come from.
    let samples = c
        .get(&format!(
            "/api/v1/agents/{}/samples?since=0&limit=10000",
            agent.id
        ))
        .await;
    let rows = samples.as_array().expect("samples");
    let rapl_readable =
        std::fs::read_to_string("/sys/class/powercap/intel-rapl:0/energy_uj").is_ok();
    let mut energy_j = 0.0;
    for r in rows {
        let source = r["power_source"].as_str().expect("power_source");
        if rapl_readable {
            assert!(["rapl", "model"].contains(&source), "{r}");
        } else {
            // This VM has no RAPL: the agent models power and says so.
            assert!(["model", "battery"].contains(&source), "{r}");
        }
        let (w, j, ms) = (
            r["power_w"].as_f64().expect("power_w"),
            r["energy_j"].as_f64().expect("energy_j"),
            r["interval_ms"].as_f64().expect("interval"),
        );
        assert!(w > 0.0, "{r}");
        if source == "model" {
            // interval_ms is truncated to whole milliseconds: allow 1 ms.
            assert!(
                (j - w * ms / 1000.0).abs() <= w * 0.001 + 1e-6,
                "energy = power × interval: {r}"
            );
        }
        energy_j += j;
    }

    let agents = c.get(&format!("/api/v1/agents/{}", agent.id)).await;
    let first_seen = agents["first_seen_ms"].as_i64().expect("first_seen");
    let inv = &agents["inventory"];
    assert_eq!(inv["group"], "e2e");
    assert!(inv["cpu_tdp_w"].as_f64().unwrap_or(0.0) > 0.0, "{inv}");
    assert!(
        ["table", "chassis-default", "ccf-vcpu"]
            .contains(&inv["cpu_tdp_source"].as_str().unwrap_or("")),
        "{inv}"
    );

    let now = sobre_tests::now_ms();
    let f = c
        .get(&format!(
            "/api/v1/footprint?from={first_seen}&to={now}&host={}",
            agent.id
        ))
        .await;
    let (from, to) = (
        f["from_ms"].as_i64().expect("from"),
        f["to_ms"].as_i64().expect("to"),
    );
    assert!(
        from <= first_seen && to >= now && (to - from) % 3_600_000 == 0,
        "whole hours: {f}"
    );
    let h = &f["hosts"][0];
    let kwh = energy_j / 3.6e6;
    assert!(
        close(h["energy_kwh"].as_f64().expect("kwh"), kwh),
        "{h} vs {kwh}"
    );
    assert_eq!(h["pue"], 1.5);
    assert!(
        close(h["facility_kwh"].as_f64().expect("facility"), kwh * 1.5),
        "{h}"
    );
    assert!(
        close(
            h["use_kg"].as_f64().expect("use"),
            kwh * 1.5 * 100.0 / 1000.0
        ),
        "{h}"
    );

    // Manufacture: 1000 kg over 100 years = 10 kg a year, for the time of
    // the period each device was alive.
    let mut expected_embodied = 0.0;
    for d in h["devices"].as_array().expect("devices") {
        let since = d["since_ms"].as_i64().expect("since");
        let alive = (to - from.max(since)).max(0) as f64;
        let share = 10.0 * alive / YEAR_MS;
        assert!(
            close(d["amortised_kg"].as_f64().expect("amortised"), share),
            "{d}"
        );
        assert!(
            close(
                d["life_extension_kg_per_year"].as_f64().expect("ext"),
                10.0 - 1000.0 / 101.0
            ),
            "{d}"
        );
        expected_embodied += share;
    }
    assert!(
        close(
            h["embodied_kg"].as_f64().expect("embodied"),
            expected_embodied
        ),
        "{h}"
    );
    assert!(
        close(
            f["fleet"]["total_kg"].as_f64().expect("total"),
            kwh * 0.15 + expected_embodied
        ),
        "{f}"
    );
    assert_eq!(f["coefficients"]["grid_g_per_kwh"], 100.0);
}
