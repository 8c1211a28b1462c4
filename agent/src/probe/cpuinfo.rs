//! `/proc/cpuinfo`: CPU model, logical threads, physical cores, and the
//! `hypervisor` flag a guest's CPUs carry.

use std::collections::HashSet;

/// What the inventory needs from `/proc/cpuinfo`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct CpuInfo {
    pub model: String,
    pub threads: u32,
    pub cores: u32,
    /// The x86 `hypervisor` flag: the kernel runs as a guest.
    pub hypervisor: bool,
}

/// Parses `/proc/cpuinfo`. The model is `model name` (x86 and others),
/// falling back to `Hardware` then `CPU part` (ARM), else empty. Cores are
/// the distinct (physical id, core id) pairs, else `cpu cores` × sockets,
/// else the thread count.
pub(crate) fn parse_cpuinfo(text: &str) -> CpuInfo {
    let mut threads = 0u32;
    let mut pairs = HashSet::new();
    let mut sockets = HashSet::new();
    let (mut physical_id, mut core_id) = (None, None);
    let (mut model, mut hardware, mut cpu_part) = (None, None, None);
    let mut cores_per_socket = None;
    let mut hypervisor = false;

    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let (key, value) = (key.trim(), value.trim());
        match key {
            // Each logical CPU's block starts with `processor`.
            "processor" => {
                if let (Some(p), Some(c)) = (physical_id.take(), core_id.take()) {
                    pairs.insert((p, c));
                }
                threads += 1;
            }
            "physical id" => {
                physical_id = Some(value.to_owned());
                sockets.insert(value.to_owned());
            }
            "core id" => core_id = Some(value.to_owned()),
            "cpu cores" => {
                cores_per_socket = cores_per_socket.or_else(|| value.parse::<u32>().ok());
            }
            "model name" => set_once(&mut model, value),
            "Hardware" => set_once(&mut hardware, value),
            "CPU part" => set_once(&mut cpu_part, value),
            "flags" => hypervisor |= value.split_whitespace().any(|f| f == "hypervisor"),
            _ => {}
        }
    }
    if let (Some(p), Some(c)) = (physical_id, core_id) {
        pairs.insert((p, c));
    }

    let cores = if !pairs.is_empty() {
        u32::try_from(pairs.len()).unwrap_or(u32::MAX)
    } else if let Some(per_socket) = cores_per_socket.filter(|&n| n > 0) {
        let sockets = u32::try_from(sockets.len().max(1)).unwrap_or(u32::MAX);
        per_socket.saturating_mul(sockets)
    } else {
        threads
    };
    CpuInfo {
        model: model.or(hardware).or(cpu_part).unwrap_or_default(),
        threads,
        cores,
        hypervisor,
    }
}

fn set_once(slot: &mut Option<String>, value: &str) {
    if slot.is_none() && !value.is_empty() {
        *slot = Some(value.to_owned());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn x86_block(processor: u32, physical: u32, core: u32, flags: &str) -> String {
        format!(
            "processor\t: {processor}\nvendor_id\t: GenuineIntel\n\
             model name\t: Intel(R) Xeon(R) CPU E5-2630 v4 @ 2.20GHz\n\
             physical id\t: {physical}\nsiblings\t: 4\ncore id\t\t: {core}\n\
             cpu cores\t: 2\nflags\t\t: fpu vme {flags} sse2\n\n"
        )
    }

    #[test]
    fn two_sockets_two_cores_hyperthreaded() {
        let mut text = String::new();
        let mut n = 0;
        for physical in 0..2 {
            for _thread in 0..2 {
                for core in 0..2 {
                    text.push_str(&x86_block(n, physical, core, "ht"));
                    n += 1;
                }
            }
        }
        let info = parse_cpuinfo(&text);
        assert_eq!(
            info,
            CpuInfo {
                model: "Intel(R) Xeon(R) CPU E5-2630 v4 @ 2.20GHz".into(),
                threads: 8,
                cores: 4,
                hypervisor: false,
            }
        );
    }

    #[test]
    fn hypervisor_flag_is_detected_as_a_whole_word() {
        let info = parse_cpuinfo(&x86_block(0, 0, 0, "hypervisor"));
        assert!(info.hypervisor);
        let info = parse_cpuinfo(&x86_block(0, 0, 0, "nothypervisor"));
        assert!(!info.hypervisor);
    }

    #[test]
    fn cores_fall_back_to_cores_per_socket_times_sockets() {
        // Some hypervisors expose `cpu cores` and `physical id` but no
        // `core id`.
        let text = "processor : 0\nphysical id : 0\ncpu cores : 4\n\n\
                    processor : 1\nphysical id : 1\ncpu cores : 4\n";
        let info = parse_cpuinfo(text);
        assert_eq!((info.cores, info.threads), (8, 2));
    }

    #[test]
    fn arm_without_model_name_uses_hardware_or_cpu_part() {
        let blocks = "processor\t: 0\nBogoMIPS\t: 108.00\nCPU implementer\t: 0x41\n\
                      CPU part\t: 0xd08\n\nprocessor\t: 1\nCPU part\t: 0xd08\n\n";
        let info = parse_cpuinfo(&format!(
            "{blocks}Hardware\t: BCM2835\nRevision\t: c03111\n"
        ));
        assert_eq!(
            info,
            CpuInfo {
                model: "BCM2835".into(),
                threads: 2,
                cores: 2,
                hypervisor: false,
            }
        );
        assert_eq!(parse_cpuinfo(blocks).model, "0xd08");
        assert_eq!(parse_cpuinfo("processor : 0\n").model, "");
    }

    #[test]
    fn empty_cpuinfo() {
        assert_eq!(parse_cpuinfo(""), CpuInfo::default());
    }
}
