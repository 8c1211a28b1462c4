//! Connected external monitors from the DRM connectors' EDID, for their
//! embodied emissions. Serial numbers are never read (privacy).

use sobre_proto::v1::Monitor;

use super::{Optional, Roots};

/// The EDID base block's fixed header.
const HEADER: [u8; 8] = [0x00, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x00];
/// Size of the EDID base block.
const BLOCK: usize = 128;
/// Offset of the four 18-byte descriptors in the base block.
const DESCRIPTORS: usize = 54;
/// Display descriptor tag: display product name.
const TAG_NAME: u8 = 0xFC;

/// Connector types of panels built into the machine: embedded DisplayPort,
/// LVDS and MIPI DSI. Such a panel is part of the laptop's (or tablet's)
/// embodied footprint, not a monitor of its own, so it is not listed.
const INTERNAL: &[&str] = &["eDP", "LVDS", "DSI"];

/// The external monitors connected to the machine: every
/// `{sys}/class/drm/card*-*` connector whose `status` is `connected` and
/// whose `edid` holds a valid EDID base block, internal panels excepted.
pub fn monitors(roots: &Roots) -> Vec<Monitor> {
    let mut optional = Optional::default();
    let mut found = Vec::new();
    for (name, dir) in optional.list_dir(&roots.sys.join("class/drm")) {
        if !name.starts_with("card") || !name.contains('-') {
            continue;
        }
        if INTERNAL.iter().any(|kind| name.contains(kind)) {
            continue;
        }
        if optional.read_trimmed(&dir.join("status")).as_deref() != Some("connected") {
            continue;
        }
        let Some(edid) = optional.read_bytes(&dir.join("edid")) else {
            continue;
        };
        match parse_edid(&name, &edid) {
            Some(monitor) => found.push(monitor),
            None => tracing::debug!(connector = %name, "connected display without a valid EDID"),
        }
    }
    found
}

/// The monitor an EDID describes, or `None` when the base block is not
/// valid: shorter than 128 bytes, wrong header, or its bytes not summing to
/// 0 mod 256. Extension blocks are ignored.
///
/// - manufacturer: the PNP id of bytes 8–9 (three 5-bit letters, 1 = 'A');
///   empty if a letter is out of range;
/// - model: the display product name descriptors (tag 0xFC) concatenated
///   and trimmed, else the product code (bytes 10–11, little endian) as 4
///   hex digits;
/// - size: the first detailed timing descriptor's image size in mm, else
///   the basic screen size of bytes 21–22 in cm × 10 (0 × 0 when either is
///   0: then it is an aspect ratio or undefined);
/// - year: 1990 + byte 17. Byte 16 = 0xFF means byte 17 is a model year
///   rather than a year of manufacture (EDID 1.4): kept as the best year
///   there is. 0 when byte 17 is 0 or 0xFF (unset, or an impossible 2245).
pub(crate) fn parse_edid(connector: &str, edid: &[u8]) -> Option<Monitor> {
    let block = edid.get(..BLOCK)?;
    if block[..8] != HEADER {
        return None;
    }
    if block.iter().fold(0u8, |sum, b| sum.wrapping_add(*b)) != 0 {
        return None;
    }
    let descriptors: Vec<&[u8]> = block[DESCRIPTORS..DESCRIPTORS + 4 * 18]
        .chunks_exact(18)
        .collect();

    let name: String = descriptors
        .iter()
        .filter(|d| d[..3] == [0, 0, 0] && d[3] == TAG_NAME)
        .map(|d| descriptor_text(&d[5..]))
        .collect::<Vec<_>>()
        .join(" ");
    let name = name.trim();
    let model = if name.is_empty() {
        format!("{:04X}", u16::from_le_bytes([block[10], block[11]]))
    } else {
        name.to_owned()
    };

    let dtd_size = descriptors
        .iter()
        .filter(|d| d[0] != 0 || d[1] != 0)
        .map(|d| {
            (
                u32::from(d[12]) | (u32::from(d[14] >> 4) << 8),
                u32::from(d[13]) | (u32::from(d[14] & 0x0F) << 8),
            )
        })
        .find(|&(w, h)| w > 0 && h > 0);
    let (width_mm, height_mm) = match dtd_size {
        Some(size) => size,
        None if block[21] > 0 && block[22] > 0 => {
            (u32::from(block[21]) * 10, u32::from(block[22]) * 10)
        }
        None => (0, 0),
    };

    let year = match block[17] {
        0 | 0xFF => 0,
        y => 1990 + u32::from(y),
    };

    Some(Monitor {
        connector: connector.to_owned(),
        manufacturer: pnp_id(block[8], block[9]),
        model,
        width_mm,
        height_mm,
        year,
    })
}

/// The three-letter PNP id packed big-endian in 15 bits (bit 15 reserved).
fn pnp_id(hi: u8, lo: u8) -> String {
    let packed = u16::from_be_bytes([hi, lo]);
    let letters: Option<String> = [10u16, 5, 0]
        .iter()
        .map(|shift| match (packed >> shift) & 0x1F {
            v @ 1..=26 => Some(char::from(b'A' + (v as u8) - 1)),
            _ => None,
        })
        .collect();
    letters.unwrap_or_default()
}

/// A descriptor's 13 text bytes: up to the 0x0A terminator, printable
/// ASCII only, trimmed of the 0x20 padding.
fn descriptor_text(bytes: &[u8]) -> String {
    bytes
        .iter()
        .take_while(|&&b| b != 0x0A)
        .filter(|b| b.is_ascii_graphic() || **b == b' ')
        .map(|&b| char::from(b))
        .collect::<String>()
        .trim()
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::fixture::Tree;

    /// A valid 128-byte EDID for a Dell P2419H: manufacturer "DEL", product
    /// code 0xA0C3, made in 2019, 527 × 296 mm in the detailed timing, 53 ×
    /// 30 cm in the basic size, a 0xFC name descriptor, a serial descriptor.
    fn dell_edid() -> Vec<u8> {
        let mut e = vec![0u8; 128];
        e[..8].copy_from_slice(&HEADER);
        // "DEL": D=4, E=5, L=12 → 00100 00101 01100 = 0x10AC.
        e[8..10].copy_from_slice(&[0x10, 0xAC]);
        e[10..12].copy_from_slice(&[0xC3, 0xA0]);
        e[16] = 12; // week
        e[17] = 29; // 1990 + 29 = 2019
        e[18..20].copy_from_slice(&[1, 4]);
        e[21] = 53;
        e[22] = 30;
        // Detailed timing: pixel clock 148.5 MHz; 527 = 0x20F, 296 = 0x128.
        let dtd = &mut e[54..72];
        dtd[..2].copy_from_slice(&14850u16.to_le_bytes());
        dtd[12] = 0x0F;
        dtd[13] = 0x28;
        dtd[14] = 0x21;
        // Serial number descriptor (never read) and the name descriptor.
        e[72..77].copy_from_slice(&[0, 0, 0, 0xFF, 0]);
        e[77..90].copy_from_slice(b"ABC123456789\n");
        e[90..95].copy_from_slice(&[0, 0, 0, TAG_NAME, 0]);
        e[95..108].copy_from_slice(b"DELL P2419H\n ");
        fix_checksum(&mut e);
        e
    }

    fn fix_checksum(e: &mut [u8]) {
        let sum = e[..127].iter().fold(0u8, |s, b| s.wrapping_add(*b));
        e[127] = 0u8.wrapping_sub(sum);
    }

    fn dell() -> Monitor {
        Monitor {
            connector: "card0-DP-1".into(),
            manufacturer: "DEL".into(),
            model: "DELL P2419H".into(),
            width_mm: 527,
            height_mm: 296,
            year: 2019,
        }
    }

    #[test]
    fn valid_edid_is_parsed() {
        assert_eq!(parse_edid("card0-DP-1", &dell_edid()), Some(dell()));
    }

    #[test]
    fn without_name_or_timing_sizes() {
        let mut e = dell_edid();
        // No name descriptor (dummy tag 0x10), no pixel clock: the product
        // code and the basic size in cm.
        e[93] = 0x10;
        e[54..56].copy_from_slice(&[0, 0]);
        e[17] = 0;
        fix_checksum(&mut e);
        let m = parse_edid("card1-HDMI-A-1", &e).expect("valid");
        assert_eq!(m.model, "A0C3");
        assert_eq!((m.width_mm, m.height_mm, m.year), (530, 300, 0));
        // Basic size 0 (undefined or an aspect ratio): unknown.
        e[22] = 0;
        fix_checksum(&mut e);
        let m = parse_edid("card1-HDMI-A-1", &e).expect("valid");
        assert_eq!((m.width_mm, m.height_mm), (0, 0));
    }

    #[test]
    fn invalid_edids_are_rejected() {
        let good = dell_edid();
        let mut bad_sum = good.clone();
        bad_sum[127] = bad_sum[127].wrapping_add(1);
        assert_eq!(parse_edid("c", &bad_sum), None);
        let mut bad_header = good.clone();
        bad_header[0] = 0xFF;
        fix_checksum(&mut bad_header);
        assert_eq!(parse_edid("c", &bad_header), None);
        assert_eq!(parse_edid("c", &good[..127]), None);
        assert_eq!(parse_edid("c", &[]), None);
        // Extension blocks after the base block do not matter.
        let mut extended = good;
        extended.extend_from_slice(&[0xAB; 128]);
        assert_eq!(parse_edid("card0-DP-1", &extended), Some(dell()));
    }

    #[test]
    fn pnp_ids() {
        assert_eq!(pnp_id(0x10, 0xAC), "DEL");
        // "SAM": S=19, A=1, M=13 → 10011 00001 01101 = 0x4C2D.
        assert_eq!(pnp_id(0x4C, 0x2D), "SAM");
        assert_eq!(pnp_id(0, 0), "");
    }

    fn connector(t: &Tree, name: &str, status: &str, edid: &[u8]) {
        t.write(
            &format!("sys/class/drm/{name}/status"),
            format!("{status}\n"),
        );
        t.write(&format!("sys/class/drm/{name}/edid"), edid);
    }

    #[test]
    fn connected_external_monitors_only() {
        let t = Tree::new();
        let edid = dell_edid();
        connector(&t, "card0-DP-1", "connected", &edid);
        connector(&t, "card0-eDP-1", "connected", &edid);
        connector(&t, "card0-LVDS-1", "connected", &edid);
        connector(&t, "card0-HDMI-A-1", "disconnected", &[]);
        connector(&t, "card0-DP-2", "disconnected", &edid);
        let mut bad = edid.clone();
        bad[127] ^= 1;
        connector(&t, "card0-DP-3", "connected", &bad);
        t.mkdir("sys/class/drm/card0");
        t.mkdir("sys/class/drm/renderD128");
        t.write("sys/class/drm/version", "drm 1.1.0 20060810\n");
        assert_eq!(monitors(&t.roots), vec![dell()]);
        assert!(monitors(&Tree::new().roots).is_empty());
    }
}
