//! The footprint probe: what the agent process itself costs (CPU time and
//! memory), from `/proc/self`.

use std::time::Duration;

use sobre_proto::v1::AgentFootprint;

use super::{Probe, ProbeError, Roots, read_required};

/// Clock ticks per second of the times in `/proc/*/stat`. The kernel always
/// reports them in USER_HZ, which the Linux userspace ABI fixes at 100 on
/// every architecture (whatever the kernel's internal HZ), so there is no
/// need for `sysconf(_SC_CLK_TCK)`.
const USER_HZ: f64 = 100.0;

/// Samples the agent's own [`AgentFootprint`]. Only `cpu_seconds`,
/// `peak_rss_bytes` and `rss_bytes` are filled; the runtime fills the
/// transport and spool counters.
#[derive(Debug)]
pub struct FootprintProbe {
    roots: Roots,
}

impl FootprintProbe {
    pub fn new(roots: Roots) -> Self {
        Self { roots }
    }
}

impl Probe for FootprintProbe {
    type Output = AgentFootprint;

    /// Ignores `interval`: the values are cumulative or current.
    fn sample(&mut self, _interval: Duration) -> Result<AgentFootprint, ProbeError> {
        let stat_path = self.roots.proc.join("self/stat");
        let ticks =
            parse_cpu_ticks(&read_required(&stat_path)?).ok_or_else(|| ProbeError::Parse {
                path: stat_path,
                what: "no utime/stime after the `)` ending the command name".into(),
            })?;
        let status = read_required(&self.roots.proc.join("self/status"))?;
        let (peak_rss_bytes, rss_bytes) = parse_status_rss(&status);
        Ok(AgentFootprint {
            cpu_seconds: ticks as f64 / USER_HZ,
            peak_rss_bytes,
            rss_bytes,
            ..AgentFootprint::default()
        })
    }
}

/// utime + stime + cutime + cstime (fields 14 to 17 of `/proc/PID/stat`)
/// in clock ticks: the agent's CPU time and that of the scan processes it
/// started and waited for (`scan::child`), which are part of its cost.
///
/// Field 2, the command name, is in parentheses and may itself contain
/// spaces and parentheses, so fields are counted after the *last* `)`: the
/// first one there is field 3 (state).
fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    let (_, after_comm) = stat.rsplit_once(')')?;
    let mut fields = after_comm.split_whitespace().skip(14 - 3);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    let cutime: u64 = fields.next()?.parse().ok()?;
    let cstime: u64 = fields.next()?.parse().ok()?;
    Some(
        utime
            .saturating_add(stime)
            .saturating_add(cutime)
            .saturating_add(cstime),
    )
}

/// (VmHWM, VmRSS) of `/proc/PID/status` in bytes; 0 when absent (kernel
/// threads have neither).
fn parse_status_rss(status: &str) -> (u64, u64) {
    (status_bytes(status, "VmHWM"), status_bytes(status, "VmRSS"))
}

/// One `kB` field of `/proc/PID/status` (`VmHWM`, `RssFile`...) in bytes;
/// 0 when absent.
pub fn status_bytes(status: &str, key: &str) -> u64 {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .unwrap_or(0)
        .saturating_mul(1024)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::fixture::Tree;
    use proptest::prelude::*;

    fn stat_line(comm: &str, utime: u64, stime: u64) -> String {
        stat_line_children(comm, utime, stime, 0, 0)
    }

    fn stat_line_children(comm: &str, utime: u64, stime: u64, cutime: u64, cstime: u64) -> String {
        format!(
            "4242 ({comm}) S 1 4242 4242 0 -1 4194560 1500 0 0 0 {utime} {stime} {cutime} {cstime} \
             20 0 3 0 123456 10000000 2000 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 \
             17 1 0 0 0 0 0\n"
        )
    }

    const STATUS: &str = "Name:\tsobre-agent\nUmask:\t0022\nState:\tS (sleeping)\n\
                          VmPeak:\t  300000 kB\nVmHWM:\t   12345 kB\nVmRSS:\t   10000 kB\n\
                          Threads:\t3\n";

    #[test]
    fn comm_with_spaces_and_parentheses() {
        assert_eq!(
            parse_cpu_ticks(&stat_line("a) (b c) 1 2", 250, 50)),
            Some(300)
        );
        assert_eq!(parse_cpu_ticks(&stat_line(")", 1, 2)), Some(3));
        assert_eq!(parse_cpu_ticks("4242 (x) S 1 2"), None);
        assert_eq!(parse_cpu_ticks("no parenthesis"), None);
    }

    /// Issue 23: the agent's scans run in a child process; its CPU time
    /// (reaped: cutime, cstime) is the agent's cost too.
    #[test]
    fn cpu_of_scan_children_is_counted() {
        assert_eq!(
            parse_cpu_ticks(&stat_line_children("sobre-agent", 10, 5, 300, 40)),
            Some(355)
        );
    }

    #[test]
    fn status_rss_in_bytes() {
        assert_eq!(parse_status_rss(STATUS), (12345 * 1024, 10000 * 1024));
        assert_eq!(parse_status_rss("Name:\tkthreadd\n"), (0, 0));
        assert_eq!(
            status_bytes("VmRSS:\t 3 kB\nRssFile:\t 2 kB\n", "RssFile"),
            2048
        );
    }

    #[test]
    fn footprint_from_fixture() {
        let t = Tree::new();
        t.write("proc/self/stat", stat_line("sobre agent) (x", 1234, 66));
        t.write("proc/self/status", STATUS);
        let fp = FootprintProbe::new(t.roots.clone())
            .sample(Duration::from_secs(60))
            .expect("footprint");
        assert_eq!(
            fp,
            AgentFootprint {
                cpu_seconds: 13.0,
                peak_rss_bytes: 12345 * 1024,
                rss_bytes: 10000 * 1024,
                ..AgentFootprint::default()
            }
        );
    }

    #[test]
    fn footprint_errors_name_the_file() {
        let t = Tree::new();
        let err = FootprintProbe::new(t.roots.clone())
            .sample(Duration::ZERO)
            .expect_err("no /proc/self/stat");
        assert!(err.to_string().contains("self/stat"), "{err}");

        t.write("proc/self/stat", "1 (x) S");
        let err = FootprintProbe::new(t.roots.clone())
            .sample(Duration::ZERO)
            .expect_err("truncated stat");
        assert!(matches!(err, ProbeError::Parse { .. }), "{err}");
    }

    proptest! {
        #[test]
        fn any_comm_parses(comm in "[^\u{0}]{0,16}", utime in 0u64..1 << 50, stime in 0u64..1 << 50) {
            prop_assert_eq!(parse_cpu_ticks(&stat_line(&comm, utime, stime)), Some(utime + stime));
        }
    }
}
