//! The walk's files grouped by size, the first stage of duplicate finding:
//! a radix sort of (size, index) keys packed in one `u64`.

use super::walk::FileRec;

/// The files of non-zero size as (size, index), by size then index. A
/// radix sort on one `u64` key (size and index side by side) when they fit
/// in it, as they do but for files of many terabytes: a few passes over
/// 200,000 keys, several times faster than comparing pairs; the keys are
/// read as pairs where needed, never copied out (3 MB less to touch).
pub(super) enum BySize {
    Packed { keys: Vec<u64>, shift: u32 },
    Pairs(Vec<(u64, u32)>),
}

impl BySize {
    pub fn new(files: &[FileRec]) -> BySize {
        let shift = usize::BITS - files.len().leading_zeros();
        let max = files.iter().map(|f| f.size).max().unwrap_or(0);
        let sized = || (0..files.len()).filter(|&i| files[i].size > 0);
        if u64::BITS - max.leading_zeros() + shift > u64::BITS {
            let mut v: Vec<(u64, u32)> = sized().map(|i| (files[i].size, i as u32)).collect();
            v.sort_unstable();
            return BySize::Pairs(v);
        }
        let mut keys: Vec<u64> = sized()
            .map(|i| (files[i].size << shift) | i as u64)
            .collect();
        radix_sort(&mut keys);
        BySize::Packed { keys, shift }
    }

    fn len(&self) -> usize {
        match self {
            BySize::Packed { keys, .. } => keys.len(),
            BySize::Pairs(v) => v.len(),
        }
    }

    fn get(&self, i: usize) -> (u64, u32) {
        match self {
            BySize::Packed { keys, shift } => {
                let k = keys[i];
                (k >> shift, (k & ((1u64 << shift) - 1)) as u32)
            }
            BySize::Pairs(v) => v[i],
        }
    }

    /// Each size that two files or more have, and those files.
    pub fn runs(&self) -> impl Iterator<Item = (u64, impl Iterator<Item = u32> + '_)> + '_ {
        let mut at = 0;
        std::iter::from_fn(move || {
            while at < self.len() {
                let (size, _) = self.get(at);
                let start = at;
                while at < self.len() && self.get(at).0 == size {
                    at += 1;
                }
                if at - start > 1 {
                    return Some((size, (start..at).map(|i| self.get(i).1)));
                }
            }
            None
        })
    }
}

/// Least significant digit first, 11 bits at a time, skipping the digits
/// every key shares.
fn radix_sort(keys: &mut Vec<u64>) {
    const BITS: u32 = 11;
    const DIGITS: usize = u64::BITS.div_ceil(BITS) as usize;
    const MASK: u64 = (1 << BITS) - 1;
    let mut counts = vec![[0usize; 1 << BITS]; DIGITS];
    for &k in keys.iter() {
        for (d, c) in counts.iter_mut().enumerate() {
            c[((k >> (d as u32 * BITS)) & MASK) as usize] += 1;
        }
    }
    let mut tmp = vec![0u64; keys.len()];
    for (d, c) in counts.iter().enumerate() {
        if c.contains(&keys.len()) {
            continue;
        }
        let mut at = [0usize; 1 << BITS];
        let mut sum = 0;
        for (a, &n) in at.iter_mut().zip(c) {
            *a = sum;
            sum += n;
        }
        for &k in keys.iter() {
            let b = ((k >> (d as u32 * BITS)) & MASK) as usize;
            tmp[at[b]] = k;
            at[b] += 1;
        }
        std::mem::swap(keys, &mut tmp);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn radix_sort_sorts(mut v in proptest::collection::vec(any::<u64>(), 0..2000), shift in 0u32..64) {
            for k in v.iter_mut() {
                *k >>= shift;
            }
            let mut want = v.clone();
            want.sort_unstable();
            radix_sort(&mut v);
            prop_assert_eq!(v, want);
        }

        /// Packed keys (sizes that fit beside the index) and pairs (a file
        /// of exabytes) give the runs a plain grouping gives.
        #[test]
        fn size_runs(sizes in proptest::collection::vec(0u64..6, 0..300), huge in any::<bool>()) {
            let mut files: Vec<FileRec> = sizes
                .iter()
                .map(|&s| {
                    let mut f = FileRec::default();
                    f.size = s * 1000;
                    f
                })
                .collect();
            if huge {
                files.extend([u64::MAX - 1, u64::MAX - 1].map(|s| {
                    let mut f = FileRec::default();
                    f.size = s;
                    f
                }));
            }
            let mut want: std::collections::BTreeMap<u64, Vec<u32>> = Default::default();
            for (i, f) in files.iter().enumerate().filter(|(_, f)| f.size > 0) {
                want.entry(f.size).or_default().push(i as u32);
            }
            want.retain(|_, v| v.len() > 1);
            let by = BySize::new(&files);
            prop_assert_eq!(matches!(by, BySize::Pairs(_)), huge);
            let got: Vec<(u64, Vec<u32>)> = by.runs().map(|(s, r)| (s, r.collect())).collect();
            prop_assert_eq!(got, want.into_iter().collect::<Vec<_>>());
        }
    }
}
