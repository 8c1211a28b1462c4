//! The CPU's thermal design power: a table of common models, else a typical
//! value for the chassis (flagged), and for virtual machines CCF's per-vCPU
//! figures instead (a host's TDP says nothing about a guest's share of it).

use sobre_proto::v1::Inventory;

use super::model::ModelCoefficients;

/// Where a TDP came from, as `Inventory.cpu_tdp_source` carries it.
pub const SOURCE_TABLE: &str = "table";
/// Unknown CPU model: the chassis' typical TDP, an assumption.
pub const SOURCE_CHASSIS_DEFAULT: &str = "chassis-default";
/// A virtual machine: vCPUs × CCF's maximum watts per vCPU.
pub const SOURCE_CCF_VCPU: &str = "ccf-vcpu";

/// TDP per socket, in watts, keyed by a normalised model-name fragment (see
/// [`normalise`]) that must match whole words of the model name.
///
/// The figures are the manufacturers' published TDP ("Processor Base Power"
/// for Intel from the 12th generation on, "Default TDP" for AMD): Intel ARK
/// (<https://ark.intel.com>, each model's "Processor Base Power" or "TDP")
/// and AMD's product pages (<https://www.amd.com/en/products/specifications/processors>,
/// "Default TDP"). They are facts about the products; this table is ours,
/// compiled for Sobre, not copied from a licensed data set.
const TDP_TABLE: &[(&str, f32)] = &[
    // Intel Core desktop.
    ("i3-10100", 65.0),
    ("i3-12100", 60.0),
    ("i5-6500", 65.0),
    ("i5-7500", 65.0),
    ("i5-8400", 65.0),
    ("i5-8500", 65.0),
    ("i5-9500", 65.0),
    ("i5-10400", 65.0),
    ("i5-12400", 65.0),
    ("i5-12600k", 125.0),
    ("i5-13400", 65.0),
    ("i7-8700", 65.0),
    ("i7-8700k", 95.0),
    ("i7-9700", 65.0),
    ("i7-10700", 65.0),
    ("i7-12700", 65.0),
    ("i7-13700", 65.0),
    ("i9-9900k", 95.0),
    ("i9-12900k", 125.0),
    ("i9-13900k", 125.0),
    // Intel Core mobile (U, P, H).
    ("i5-6200u", 15.0),
    ("i5-7200u", 15.0),
    ("i5-8250u", 15.0),
    ("i5-8265u", 15.0),
    ("i5-8350u", 15.0),
    ("i7-8550u", 15.0),
    ("i7-8565u", 15.0),
    ("i7-8650u", 15.0),
    ("i5-10210u", 15.0),
    ("i7-10510u", 15.0),
    ("i5-1235u", 15.0),
    ("i7-1255u", 15.0),
    ("i5-1335u", 15.0),
    ("i7-1355u", 15.0),
    ("i5-1240p", 28.0),
    ("i7-1260p", 28.0),
    ("i7-9750h", 45.0),
    ("i7-10750h", 45.0),
    ("i5-12500h", 45.0),
    ("i7-12700h", 45.0),
    ("ultra 5 125u", 15.0),
    ("ultra 7 155h", 28.0),
    // Intel Xeon.
    ("e3-1230 v5", 80.0),
    ("e5-2630 v4", 85.0),
    ("e5-2650 v4", 105.0),
    ("e-2224", 71.0),
    ("e-2236", 80.0),
    ("e-2334", 65.0),
    ("silver 4110", 85.0),
    ("silver 4210", 85.0),
    ("silver 4210r", 100.0),
    ("silver 4214", 85.0),
    ("silver 4310", 120.0),
    ("silver 4314", 135.0),
    ("gold 5118", 105.0),
    ("gold 5218", 125.0),
    ("gold 5318y", 165.0),
    ("gold 6130", 125.0),
    ("gold 6230", 125.0),
    ("gold 6248", 150.0),
    ("gold 6338", 205.0),
    // AMD Ryzen desktop.
    ("ryzen 3 3200g", 65.0),
    ("ryzen 3 4100", 65.0),
    ("ryzen 5 3600", 65.0),
    ("ryzen 5 5600g", 65.0),
    ("ryzen 5 5600x", 65.0),
    ("ryzen 5 7600", 65.0),
    ("ryzen 7 3700x", 65.0),
    ("ryzen 7 5700g", 65.0),
    ("ryzen 7 5800x", 105.0),
    ("ryzen 7 7700x", 105.0),
    ("ryzen 9 5900x", 105.0),
    ("ryzen 9 5950x", 105.0),
    ("ryzen 9 7950x", 170.0),
    // AMD Ryzen mobile (U, H).
    ("ryzen 5 4500u", 15.0),
    ("ryzen 7 4700u", 15.0),
    ("ryzen 5 5500u", 15.0),
    ("ryzen 7 5700u", 15.0),
    ("ryzen 5 7530u", 15.0),
    ("ryzen 7 4800h", 45.0),
    ("ryzen 7 5800h", 45.0),
    ("ryzen 9 5900hx", 45.0),
    // AMD Ryzen PRO.
    ("ryzen 5 pro 4650u", 15.0),
    ("ryzen 7 pro 4750u", 15.0),
    ("ryzen 5 pro 5650u", 15.0),
    ("ryzen 7 pro 5850u", 15.0),
    ("ryzen 5 pro 4650g", 65.0),
    ("ryzen 7 pro 5750g", 65.0),
    // AMD EPYC.
    ("epyc 7282", 120.0),
    ("epyc 7302", 155.0),
    ("epyc 7313", 155.0),
    ("epyc 7402", 180.0),
    ("epyc 7502", 180.0),
    ("epyc 7543", 225.0),
    ("epyc 7742", 225.0),
    ("epyc 7763", 280.0),
    ("epyc 9354", 280.0),
];

/// A model name reduced to lowercase words: trademark marks dropped, every
/// character other than a letter, a digit or `-` turned into a space, runs
/// of spaces collapsed. "Intel(R) Core(TM) i5-8250U CPU @ 1.60GHz" becomes
/// "intel core i5-8250u cpu 1 60ghz".
pub fn normalise(model: &str) -> String {
    let lower = model
        .to_lowercase()
        .replace("(r)", " ")
        .replace("(tm)", " ");
    let spaced: String = lower
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || c == '-' {
                c
            } else {
                ' '
            }
        })
        .collect();
    spaced.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The per-socket TDP of a known CPU model, in watts.
pub fn table_tdp(model: &str) -> Option<f32> {
    let name = normalise(model);
    TDP_TABLE
        .iter()
        .find(|(key, _)| contains_words(&name, key))
        .map(|&(_, watts)| watts)
}

/// Whether `key` occurs in `name` starting and ending on word boundaries
/// ("ryzen 5 3600" matches "amd ryzen 5 3600 6-core processor", not
/// "amd ryzen 5 3600x 6-core processor").
fn contains_words(name: &str, key: &str) -> bool {
    let bytes = name.as_bytes();
    name.match_indices(key).any(|(start, _)| {
        let end = start + key.len();
        (start == 0 || bytes[start - 1] == b' ') && (end == bytes.len() || bytes[end] == b' ')
    })
}

/// Whether the power model treats `hw` as a virtual machine.
pub(crate) fn is_vm(hw: &Inventory) -> bool {
    hw.virtual_machine || hw.chassis == "vm"
}

/// The CPU power the model uses at full load for `hw` with `sockets`
/// physical packages, and where it came from: a known model's TDP ×
/// sockets ("table"), the chassis' typical TDP × sockets
/// ("chassis-default"), or for a VM vCPUs × CCF's maximum watts per vCPU
/// ("ccf-vcpu"). With the default coefficients; the runtime fills
/// `Inventory.cpu_tdp_w` / `cpu_tdp_source` from it.
pub fn tdp(hw: &Inventory, sockets: u32) -> (f32, &'static str) {
    tdp_with(hw, sockets, &ModelCoefficients::default())
}

/// [`tdp`] with the given coefficients.
pub fn tdp_with(
    hw: &Inventory,
    sockets: u32,
    coefficients: &ModelCoefficients,
) -> (f32, &'static str) {
    if is_vm(hw) {
        return (vcpus(hw) as f32 * coefficients.vcpu_max_w, SOURCE_CCF_VCPU);
    }
    let sockets = sockets.max(1) as f32;
    match table_tdp(&hw.cpu_model) {
        Some(watts) => (watts * sockets, SOURCE_TABLE),
        None => (
            coefficients.default_tdp_w.get(&hw.chassis) * sockets,
            SOURCE_CHASSIS_DEFAULT,
        ),
    }
}

/// A VM's vCPUs: its logical CPUs, at least one.
pub(crate) fn vcpus(hw: &Inventory) -> u32 {
    hw.cpu_threads.max(1)
}

/// The physical packages in a `/proc/cpuinfo`: distinct `physical id`s, at
/// least one (ARM and many guests have no `physical id` lines).
pub(crate) fn sockets_in_cpuinfo(text: &str) -> u32 {
    let mut ids: Vec<&str> = text
        .lines()
        .filter_map(|l| l.split_once(':'))
        .filter(|(k, _)| k.trim() == "physical id")
        .map(|(_, v)| v.trim())
        .collect();
    ids.sort_unstable();
    ids.dedup();
    u32::try_from(ids.len()).unwrap_or(u32::MAX).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inventory(model: &str, chassis: &str) -> Inventory {
        Inventory {
            cpu_model: model.into(),
            chassis: chassis.into(),
            cpu_threads: 8,
            ..Inventory::default()
        }
    }

    #[test]
    fn normalised_names() {
        assert_eq!(
            normalise("Intel(R) Core(TM) i5-8250U CPU @ 1.60GHz"),
            "intel core i5-8250u cpu 1 60ghz"
        );
        assert_eq!(
            normalise("AMD Ryzen 5 PRO 4650U with Radeon Graphics"),
            "amd ryzen 5 pro 4650u with radeon graphics"
        );
    }

    #[test]
    fn known_models_from_cpuinfo_strings() {
        let cases: &[(&str, f32)] = &[
            ("Intel(R) Core(TM) i5-8250U CPU @ 1.60GHz", 15.0),
            ("12th Gen Intel(R) Core(TM) i7-1260P", 28.0),
            ("Intel(R) Core(TM) i7-8700K CPU @ 3.70GHz", 95.0),
            ("Intel(R) Core(TM) i7-8700 CPU @ 3.20GHz", 65.0),
            ("Intel(R) Xeon(R) CPU E5-2630 v4 @ 2.20GHz", 85.0),
            ("Intel(R) Xeon(R) Gold 6248 CPU @ 2.50GHz", 150.0),
            ("Intel(R) Xeon(R) Silver 4210R CPU @ 2.40GHz", 100.0),
            ("Intel(R) Xeon(R) Silver 4210 CPU @ 2.20GHz", 85.0),
            ("Intel(R) Core(TM) Ultra 7 155H", 28.0),
            ("AMD Ryzen 5 PRO 4650U with Radeon Graphics", 15.0),
            ("AMD Ryzen 5 3600 6-Core Processor", 65.0),
            ("AMD Ryzen 9 7950X 16-Core Processor", 170.0),
            ("AMD EPYC 7502 32-Core Processor", 180.0),
        ];
        for (model, watts) in cases {
            assert_eq!(table_tdp(model), Some(*watts), "{model}");
        }
        // Whole words only: a 3600X or an i5-8250 is not a 3600 or an
        // i5-8250U.
        assert_eq!(table_tdp("AMD Ryzen 5 3600X 6-Core Processor"), None);
        assert_eq!(table_tdp("Intel(R) Core(TM) i5-8250 CPU"), None);
        assert_eq!(table_tdp("Intel(R) Xeon(R) Processor"), None);
        assert_eq!(table_tdp(""), None);
    }

    #[test]
    fn every_key_finds_its_own_entry() {
        for (key, watts) in TDP_TABLE {
            assert_eq!(table_tdp(key), Some(*watts), "{key} is shadowed");
            assert_eq!(normalise(key), *key, "{key} is not normalised");
        }
        assert!(TDP_TABLE.len() >= 40);
    }

    #[test]
    fn table_tdp_times_sockets() {
        let hw = inventory("Intel(R) Xeon(R) Gold 6248 CPU @ 2.50GHz", "server");
        assert_eq!(tdp(&hw, 1), (150.0, "table"));
        assert_eq!(tdp(&hw, 2), (300.0, "table"));
        // Unknown sockets count as one.
        assert_eq!(tdp(&hw, 0), (150.0, "table"));
    }

    #[test]
    fn unknown_cpu_gets_the_chassis_default_flagged() {
        let cases: &[(&str, f32)] = &[
            ("laptop", 15.0),
            ("desktop", 65.0),
            ("server", 120.0),
            ("tablet", 7.0),
            ("other", 65.0),
            ("unknown", 65.0),
            ("", 65.0),
        ];
        for (chassis, watts) in cases {
            let hw = inventory("Mystery CPU 9000", chassis);
            assert_eq!(tdp(&hw, 1), (*watts, "chassis-default"), "{chassis}");
        }
        let hw = inventory("Mystery CPU 9000", "server");
        assert_eq!(tdp(&hw, 2), (240.0, "chassis-default"));
    }

    #[test]
    fn vm_uses_ccf_vcpus() {
        // 8 vCPUs × 3.5 W, whatever the (host's) CPU model says.
        let hw = inventory("Intel(R) Xeon(R) Gold 6248 CPU @ 2.50GHz", "vm");
        assert_eq!(tdp(&hw, 2), (28.0, "ccf-vcpu"));
        let mut hw = inventory("Intel(R) Xeon(R) Processor", "server");
        hw.virtual_machine = true;
        hw.cpu_threads = 0;
        assert_eq!(tdp(&hw, 1), (3.5, "ccf-vcpu"));
    }

    #[test]
    fn sockets_from_physical_ids() {
        let two = "processor : 0\nphysical id : 0\n\nprocessor : 1\nphysical id : 1\n\n\
                   processor : 2\nphysical id : 0\n\nprocessor : 3\nphysical id : 1\n";
        assert_eq!(sockets_in_cpuinfo(two), 2);
        assert_eq!(sockets_in_cpuinfo("processor : 0\nphysical id : 0\n"), 1);
        assert_eq!(sockets_in_cpuinfo("processor : 0\n"), 1);
        assert_eq!(sockets_in_cpuinfo(""), 1);
    }
}
