//! Splitting one job over many processes that never talk: shard `i` of `n` takes a deterministic
//! part of the sorted input, writes `…-0000i-of-0000n.*` atomically with a manifest written last,
//! and `chestx merge` joins the parts and proves that every input was covered exactly once.
//!
//! The shard comes from `--shard i/n` or, without it, from the engine that launched the process:
//! `CHESTX_SHARD=i/n`, a Slurm job array (`SLURM_ARRAY_TASK_ID` − `SLURM_ARRAY_TASK_MIN` of
//! `SLURM_ARRAY_TASK_COUNT`), a Kubernetes Indexed Job (`JOB_COMPLETION_INDEX` of
//! `CHESTX_SHARD_COUNT`, which the Job sets to its `completions`), or torchrun (`RANK` of
//! `WORLD_SIZE`). A count of 1 is the unsharded job.
//!
//! Indices are 0-based, like the engines' own (Slurm arrays are offset by their minimum).

use std::ops::Range;
use std::path::{Path, PathBuf};

/// Shard `index` of `count` (`index < count`, `count ≥ 2`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Shard {
    pub index: usize,
    pub count: usize,
}

/// Shards beyond this are refused: a typo, not a plan (and the names keep five digits).
pub const MAX_SHARDS: usize = 99_999;

impl Shard {
    /// `i/n`. A count of 1 means no sharding (`None`).
    pub fn parse(spec: &str) -> Result<Option<Shard>, String> {
        let bad = || format!("shard {spec:?}: expected i/n with 0 ≤ i < n, e.g. 3/64");
        let (i, n) = spec.trim().split_once('/').ok_or_else(bad)?;
        let index: usize = i.trim().parse().map_err(|_| bad())?;
        let count: usize = n.trim().parse().map_err(|_| bad())?;
        if count == 0 || index >= count {
            return Err(bad());
        }
        if count > MAX_SHARDS {
            return Err(format!("shard {spec:?}: at most {MAX_SHARDS} shards"));
        }
        Ok((count > 1).then_some(Shard { index, count }))
    }

    /// The shard the launching engine asks for, and which variables said so; `None` when no engine
    /// variable is set (or they say one shard). An engine variable that cannot be read is an error,
    /// not a silent unsharded run.
    pub fn from_env(
        get: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<(Shard, &'static str)>, String> {
        let num = |name: &str| -> Result<Option<usize>, String> {
            match get(name) {
                None => Ok(None),
                Some(v) if v.trim().is_empty() => Ok(None),
                Some(v) => v
                    .trim()
                    .parse()
                    .map(Some)
                    .map_err(|_| format!("{name}={v:?} is not a number")),
            }
        };
        let pair = |i: usize, n: usize, from: &'static str| -> Result<_, String> {
            Ok(Shard::parse(&format!("{i}/{n}"))
                .map_err(|e| format!("{from}: {e}"))?
                .map(|s| (s, from)))
        };
        if let Some(spec) = get("CHESTX_SHARD").filter(|s| !s.trim().is_empty()) {
            return Ok(Shard::parse(&spec)
                .map_err(|e| format!("CHESTX_SHARD: {e}"))?
                .map(|s| (s, "CHESTX_SHARD")));
        }
        if let (Some(id), Some(n)) = (num("SLURM_ARRAY_TASK_ID")?, num("SLURM_ARRAY_TASK_COUNT")?) {
            let min = num("SLURM_ARRAY_TASK_MIN")?.unwrap_or(0);
            let i = id.checked_sub(min).ok_or_else(|| {
                format!("SLURM_ARRAY_TASK_ID {id} is below SLURM_ARRAY_TASK_MIN {min}")
            })?;
            return pair(i, n, "SLURM_ARRAY_TASK_ID/SLURM_ARRAY_TASK_COUNT");
        }
        if let Some(i) = num("JOB_COMPLETION_INDEX")? {
            let n = num("CHESTX_SHARD_COUNT")?.ok_or(
                "JOB_COMPLETION_INDEX is set (a Kubernetes Indexed Job) but CHESTX_SHARD_COUNT, \
                 the Job's completions, is not: set it in the Job's environment, or pass --shard i/n",
            )?;
            return pair(i, n, "JOB_COMPLETION_INDEX/CHESTX_SHARD_COUNT");
        }
        if let (Some(i), Some(n)) = (num("RANK")?, num("WORLD_SIZE")?) {
            return pair(i, n, "RANK/WORLD_SIZE");
        }
        Ok(None)
    }

    /// `-00003-of-00064`.
    pub fn suffix(&self) -> String {
        format!("-{:05}-of-{:05}", self.index, self.count)
    }

    /// `dir/labels.csv` → `dir/labels-00003-of-00064.csv` (the suffix goes before the last
    /// extension, or at the end of a name without one).
    pub fn file_name(&self, path: &Path) -> PathBuf {
        let name = path
            .file_name()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let named = match name.rsplit_once('.') {
            Some((stem, ext)) if !stem.is_empty() => format!("{stem}{}.{ext}", self.suffix()),
            _ => format!("{name}{}", self.suffix()),
        };
        path.with_file_name(named)
    }

    /// This shard's contiguous block of `len` sorted items: sizes differ by at most one, and the
    /// blocks of shards 0..n, in order, are the whole range.
    pub fn block(&self, len: usize) -> Range<usize> {
        let at = |i: usize| (i as u128 * len as u128 / self.count as u128) as usize;
        at(self.index)..at(self.index + 1)
    }

    /// Whether the `k`-th record of a stream (counted from 0) is this shard's: round robin, so a
    /// stream of unknown length splits evenly as it is read.
    pub fn owns(&self, k: u64) -> bool {
        k % self.count as u64 == self.index as u64
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// A running fingerprint of a sequence of strings (order matters): shards that read the same input
/// agree on it, so a merge can prove they did.
#[derive(Debug, Clone, Copy, Default)]
pub struct Fingerprint(u64);

impl Fingerprint {
    pub fn add(&mut self, item: &str) {
        // FNV-1a over the item, then folded into the running value; the separator keeps
        // ["ab","c"] apart from ["a","bc"].
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for &b in item.as_bytes().iter().chain(b"\x1f") {
            h = (h ^ b as u64).wrapping_mul(0x0100_0000_01b3);
        }
        self.0 = crate::seed::mix64(self.0 ^ h).wrapping_add(0x9e37_79b9_7f4a_7c15);
    }

    pub fn hex(&self) -> String {
        format!("{:016x}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| m.get(k).cloned()
    }

    #[test]
    fn specs_parse_and_bad_ones_are_refused() {
        assert_eq!(
            Shard::parse("3/64").unwrap(),
            Some(Shard {
                index: 3,
                count: 64
            })
        );
        assert_eq!(Shard::parse("0/1").unwrap(), None);
        for bad in ["4/4", "1/0", "x/2", "3", "-1/4", "1/100000"] {
            assert!(Shard::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn engines_environments_name_the_shard() {
        let s = |i, n| Shard { index: i, count: n };
        assert_eq!(Shard::from_env(env(&[])).unwrap(), None);
        let slurm = env(&[
            ("SLURM_ARRAY_TASK_ID", "5"),
            ("SLURM_ARRAY_TASK_MIN", "1"),
            ("SLURM_ARRAY_TASK_COUNT", "8"),
        ]);
        assert_eq!(Shard::from_env(slurm).unwrap().unwrap().0, s(4, 8));
        let k8s = env(&[("JOB_COMPLETION_INDEX", "2"), ("CHESTX_SHARD_COUNT", "3")]);
        assert_eq!(Shard::from_env(k8s).unwrap().unwrap().0, s(2, 3));
        let torchrun = env(&[("RANK", "1"), ("WORLD_SIZE", "2")]);
        assert_eq!(Shard::from_env(torchrun).unwrap().unwrap().0, s(1, 2));
        let explicit = env(&[("CHESTX_SHARD", "0/2"), ("RANK", "1"), ("WORLD_SIZE", "2")]);
        assert_eq!(Shard::from_env(explicit).unwrap().unwrap().0, s(0, 2));
        assert_eq!(
            Shard::from_env(env(&[("RANK", "0"), ("WORLD_SIZE", "1")])).unwrap(),
            None
        );
        let k8s_no_count = env(&[("JOB_COMPLETION_INDEX", "2")]);
        assert!(Shard::from_env(k8s_no_count)
            .unwrap_err()
            .contains("CHESTX_SHARD_COUNT"));
        assert!(Shard::from_env(env(&[("RANK", "x"), ("WORLD_SIZE", "2")])).is_err());
    }

    #[test]
    fn blocks_cover_every_item_once_and_round_robin_splits_evenly() {
        for len in [0, 1, 7, 64, 1001] {
            for count in [2, 3, 7, 64] {
                let mut next = 0;
                for index in 0..count {
                    let b = Shard { index, count }.block(len);
                    assert_eq!(b.start, next);
                    assert!(b.len() <= len / count + 1);
                    next = b.end;
                }
                assert_eq!(next, len);
            }
        }
        let s = Shard { index: 1, count: 3 };
        let mine: Vec<u64> = (0..10).filter(|&k| s.owns(k)).collect();
        assert_eq!(mine, [1, 4, 7]);
    }

    #[test]
    fn shard_names_keep_the_extension() {
        let s = Shard {
            index: 3,
            count: 64,
        };
        assert_eq!(
            s.file_name(Path::new("out/labels.csv")),
            Path::new("out/labels-00003-of-00064.csv")
        );
        assert_eq!(
            s.file_name(Path::new("run/preds")),
            Path::new("run/preds-00003-of-00064")
        );
    }

    #[test]
    fn fingerprints_depend_on_content_and_order() {
        let fp = |items: &[&str]| {
            let mut f = Fingerprint::default();
            items.iter().for_each(|i| f.add(i));
            f.hex()
        };
        assert_eq!(fp(&["a", "b"]), fp(&["a", "b"]));
        assert_ne!(fp(&["a", "b"]), fp(&["b", "a"]));
        assert_ne!(fp(&["ab", "c"]), fp(&["a", "bc"]));
    }
}
