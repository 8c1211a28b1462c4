//! The fleet's storage: per-category totals over every host's latest scan
//! summary, by group, and the same large content found on several hosts
//! (from keyed fingerprints: the collector never sees names or content).

use serde::Serialize;
use sobre_proto::v1::StorageSummary;
use std::collections::BTreeMap;

/// One host's latest summary.
#[derive(Debug, Clone)]
pub struct HostStorage {
    pub agent_id: String,
    pub group: String,
    pub summary: StorageSummary,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Total {
    pub files: u64,
    pub bytes: u64,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct CategoryRow {
    pub category: String,
    pub age: Option<String>,
    pub files: u64,
    pub bytes: u64,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct GroupRow {
    pub group: String,
    pub hosts: usize,
    /// Bytes in every category but `large` (large files are not bloat by
    /// themselves), duplicates counted as their reclaimable bytes.
    pub reclaimable_bytes: u64,
    pub categories: Vec<CategoryRow>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Redundant {
    /// First 8 bytes of the keyed hash, hex: enough to tell groups apart,
    /// useless for looking the content up.
    pub id: String,
    pub size: u64,
    pub hosts: usize,
    pub copies: u64,
    /// Bytes freed by keeping one copy in the fleet.
    pub reclaimable_bytes: u64,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct FleetStorage {
    pub hosts: usize,
    pub files: u64,
    pub bytes: u64,
    pub unreadable: u64,
    /// Hosts whose latest scan stopped early: their figures are partial.
    pub partial_hosts: usize,
    pub reclaimable_bytes: u64,
    pub categories: Vec<CategoryRow>,
    pub by_age: Vec<CategoryRow>,
    pub by_group: Vec<GroupRow>,
    /// Large files present on more than one host, biggest savings first.
    pub redundant: Vec<Redundant>,
    pub redundant_bytes: u64,
}

/// Categories that count as reclaimable bloat.
fn reclaimable(category: &str) -> bool {
    category != "large"
}

/// Aggregates the fleet's latest summaries. `top` bounds `redundant`.
pub fn fleet(hosts: &[HostStorage], top: usize) -> FleetStorage {
    let mut cats: BTreeMap<String, Total> = BTreeMap::new();
    let mut ages: BTreeMap<(String, String), Total> = BTreeMap::new();
    let mut groups: BTreeMap<String, (usize, BTreeMap<String, Total>)> = BTreeMap::new();
    let mut prints: BTreeMap<Vec<u8>, (u64, usize, u64)> = BTreeMap::new();
    let mut out = FleetStorage {
        hosts: hosts.len(),
        files: 0,
        bytes: 0,
        unreadable: 0,
        partial_hosts: 0,
        reclaimable_bytes: 0,
        categories: Vec::new(),
        by_age: Vec::new(),
        by_group: Vec::new(),
        redundant: Vec::new(),
        redundant_bytes: 0,
    };
    for h in hosts {
        let s = &h.summary;
        out.files += s.files;
        out.bytes += s.bytes;
        out.unreadable += s.unreadable;
        out.partial_hosts += usize::from(!s.complete);
        let g = groups.entry(h.group.clone()).or_default();
        g.0 += 1;
        for c in &s.categories {
            for t in [
                cats.entry(c.category.clone()).or_default(),
                ages.entry((c.category.clone(), c.age.clone())).or_default(),
                g.1.entry(c.category.clone()).or_default(),
            ] {
                t.files += c.files;
                t.bytes += c.bytes;
            }
        }
        for f in &s.large_files {
            let e = prints.entry(f.keyed_hash.clone()).or_insert((f.size, 0, 0));
            e.1 += 1;
            e.2 += u64::from(f.copies.max(1));
        }
    }
    let row = |(category, t): (String, Total)| CategoryRow {
        category,
        age: None,
        files: t.files,
        bytes: t.bytes,
    };
    out.reclaimable_bytes = cats
        .iter()
        .filter(|(c, _)| reclaimable(c))
        .map(|(_, t)| t.bytes)
        .sum();
    out.categories = cats.into_iter().map(row).collect();
    out.by_age = ages
        .into_iter()
        .map(|((category, age), t)| CategoryRow {
            category,
            age: Some(age),
            files: t.files,
            bytes: t.bytes,
        })
        .collect();
    out.by_group = groups
        .into_iter()
        .map(|(group, (n, cats))| GroupRow {
            group,
            hosts: n,
            reclaimable_bytes: cats
                .iter()
                .filter(|(c, _)| reclaimable(c))
                .map(|(_, t)| t.bytes)
                .sum(),
            categories: cats.into_iter().map(row).collect(),
        })
        .collect();
    let mut redundant: Vec<Redundant> = prints
        .into_iter()
        .filter(|(_, (_, hosts, _))| *hosts > 1)
        .map(|(hash, (size, hosts, copies))| Redundant {
            id: hash.iter().take(8).map(|b| format!("{b:02x}")).collect(),
            size,
            hosts,
            copies,
            reclaimable_bytes: size * copies.saturating_sub(1),
        })
        .collect();
    redundant.sort_by(|a, b| {
        b.reclaimable_bytes
            .cmp(&a.reclaimable_bytes)
            .then(a.id.cmp(&b.id))
    });
    out.redundant_bytes = redundant.iter().map(|r| r.reclaimable_bytes).sum();
    redundant.truncate(top);
    out.redundant = redundant;
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use sobre_proto::v1::{CategoryTotal, Fingerprint};

    fn host(
        id: &str,
        group: &str,
        cats: &[(&str, &str, u64, u64)],
        prints: &[(u8, u64, u32)],
    ) -> HostStorage {
        HostStorage {
            agent_id: id.into(),
            group: group.into(),
            summary: StorageSummary {
                files: 100,
                bytes: 1000,
                complete: true,
                categories: cats
                    .iter()
                    .map(|(c, a, f, b)| CategoryTotal {
                        category: (*c).into(),
                        age: (*a).into(),
                        files: *f,
                        bytes: *b,
                    })
                    .collect(),
                large_files: prints
                    .iter()
                    .map(|(h, size, copies)| Fingerprint {
                        keyed_hash: vec![*h; 16],
                        size: *size,
                        copies: *copies,
                    })
                    .collect(),
                ..Default::default()
            },
        }
    }

    #[test]
    fn totals_by_category_age_and_group() {
        let hosts = [
            host(
                "a",
                "rh",
                &[("duplicates", "<1y", 3, 300), ("large", ">5y", 1, 5000)],
                &[],
            ),
            host(
                "b",
                "rh",
                &[("duplicates", "2-5y", 2, 200), ("temp", "<1y", 4, 40)],
                &[],
            ),
            host("c", "dsi", &[("cold", ">5y", 1, 10)], &[]),
        ];
        let f = fleet(&hosts, 10);
        assert_eq!((f.hosts, f.files, f.bytes), (3, 300, 3000));
        let dup = f
            .categories
            .iter()
            .find(|c| c.category == "duplicates")
            .expect("dups");
        assert_eq!((dup.files, dup.bytes), (5, 500));
        assert_eq!(
            f.reclaimable_bytes,
            500 + 40 + 10,
            "large files are not bloat"
        );
        assert_eq!(f.by_age.len(), 5);
        let rh = f.by_group.iter().find(|g| g.group == "rh").expect("rh");
        assert_eq!((rh.hosts, rh.reclaimable_bytes), (2, 540));
    }

    #[test]
    fn the_same_content_on_several_hosts_is_found() {
        let gb = 1 << 30;
        let hosts = [
            host("a", "", &[], &[(1, gb, 2), (2, 5 * gb, 1)]),
            host("b", "", &[], &[(1, gb, 1)]),
            host("c", "", &[], &[(3, 7 * gb, 1)]),
        ];
        let f = fleet(&hosts, 10);
        assert_eq!(f.redundant.len(), 1, "only content on more than one host");
        let r = &f.redundant[0];
        assert_eq!((r.hosts, r.copies, r.size), (2, 3, gb));
        assert_eq!(
            r.reclaimable_bytes,
            2 * gb,
            "three copies in the fleet, one is enough"
        );
        assert_eq!(r.id, "0101010101010101");
        assert_eq!(f.redundant_bytes, 2 * gb);
    }
}
