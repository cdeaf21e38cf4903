//! ROC AUC of every subgroup and of its complement from one pass over the images sorted by score.
//!
//! AUC is the share of (positive, negative) pairs ranked the right way, ties counting one half. In one
//! ascending pass, each positive of group `h` meets the weight of negatives below it in every group
//! `g`; summing those into `cross[h][g]` gives, for every group at once, its own pairs (`cross[g][g]`)
//! and the pairs of everyone else (all pairs less row `g` and column `g`). Sorting happens once per
//! finding; a bootstrap resample is then weights on the same order, so each resample costs one linear
//! pass per finding, not a sort per subgroup.

use super::groups::Partition;

/// One finding's images with a known label, in ascending score order.
pub struct Ranked {
    pub scores: Vec<f64>,
    pub positive: Vec<bool>,
    /// Index of the image (into the audit's image list) at each sorted position.
    pub image: Vec<u32>,
}

impl Ranked {
    /// `truth[i]` is `None` where image `i`'s label is unknown; those images are left out.
    pub fn new(scores: &[f64], truth: &[Option<bool>]) -> Ranked {
        let mut idx: Vec<u32> = (0..scores.len() as u32)
            .filter(|&i| truth[i as usize].is_some())
            .collect();
        idx.sort_by(|&a, &b| scores[a as usize].total_cmp(&scores[b as usize]));
        Ranked {
            scores: idx.iter().map(|&i| scores[i as usize]).collect(),
            positive: idx
                .iter()
                .map(|&i| truth[i as usize] == Some(true))
                .collect(),
            image: idx,
        }
    }
}

/// Every partition's groups numbered one after another, and each image's group in each partition.
pub struct Layout {
    /// First global group index of each partition, then the total.
    pub offsets: Vec<usize>,
    /// `groups[i * partitions + p]`: image `i`'s global group in partition `p`.
    pub groups: Vec<u32>,
}

impl Layout {
    pub fn new(partitions: &[Partition], images: usize) -> Layout {
        let mut offsets = vec![0];
        for p in partitions {
            offsets.push(offsets.last().unwrap() + p.groups.len());
        }
        let np = partitions.len();
        let mut groups = vec![0u32; images * np];
        for (p, part) in partitions.iter().enumerate() {
            for (i, &g) in part.of_image.iter().enumerate() {
                groups[i * np + p] = (offsets[p] + g as usize) as u32;
            }
        }
        Layout { offsets, groups }
    }

    fn partitions(&self) -> usize {
        self.offsets.len() - 1
    }

    pub fn total_groups(&self) -> usize {
        *self.offsets.last().unwrap()
    }
}

/// Weighted positive and negative totals and pair sums, overall and per group.
pub struct Tally {
    pub pos: f64,
    pub neg: f64,
    pub pairs: f64,
    pub group_pos: Vec<f64>,
    pub group_neg: Vec<f64>,
    /// Per partition, `k × k` row-major: positives of group `h` against negatives of group `g`.
    cross: Vec<Vec<f64>>,
}

fn ratio(pairs: f64, pos: f64, neg: f64) -> Option<f64> {
    (pos > 0.0 && neg > 0.0).then(|| pairs / (pos * neg))
}

impl Tally {
    /// AUC over all images.
    pub fn auc(&self) -> Option<f64> {
        ratio(self.pairs, self.pos, self.neg)
    }

    /// AUC within group `g` (global index) and within everyone else in its partition.
    pub fn group_and_rest(&self, layout: &Layout, g: usize) -> (Option<f64>, Option<f64>) {
        let p = layout.offsets.partition_point(|&o| o <= g) - 1;
        let k = layout.offsets[p + 1] - layout.offsets[p];
        let l = g - layout.offsets[p];
        let c = &self.cross[p];
        let row: f64 = c[l * k..(l + 1) * k].iter().sum();
        let col: f64 = (0..k).map(|h| c[h * k + l]).sum();
        let own = c[l * k + l];
        let (gp, gn) = (self.group_pos[g], self.group_neg[g]);
        (
            ratio(own, gp, gn),
            ratio(self.pairs - row - col + own, self.pos - gp, self.neg - gn),
        )
    }
}

/// Tally `r` with per-image `weights` (`None`: every image once).
pub fn tally(r: &Ranked, weights: Option<&[u32]>, layout: &Layout) -> Tally {
    let np = layout.partitions();
    let ng = layout.total_groups();
    let mut t = Tally {
        pos: 0.0,
        neg: 0.0,
        pairs: 0.0,
        group_pos: vec![0.0; ng],
        group_neg: vec![0.0; ng],
        cross: (0..np)
            .map(|p| {
                let k = layout.offsets[p + 1] - layout.offsets[p];
                vec![0.0; k * k]
            })
            .collect(),
    };
    // Negative weight in the current tie block, per group and overall; added below once it ends.
    let mut block_neg = vec![0.0; ng];
    let mut touched: Vec<usize> = Vec::new();
    let n = r.scores.len();
    let mut start = 0;
    while start < n {
        let mut end = start + 1;
        while end < n && r.scores[end] == r.scores[start] {
            end += 1;
        }
        let mut block_all = 0.0;
        for k in start..end {
            let i = r.image[k] as usize;
            let w = weights.map_or(1.0, |w| w[i] as f64);
            if w == 0.0 || r.positive[k] {
                continue;
            }
            block_all += w;
            for &g in &layout.groups[i * np..(i + 1) * np] {
                if block_neg[g as usize] == 0.0 {
                    touched.push(g as usize);
                }
                block_neg[g as usize] += w;
            }
        }
        for k in start..end {
            let i = r.image[k] as usize;
            let w = weights.map_or(1.0, |w| w[i] as f64);
            if w == 0.0 || !r.positive[k] {
                continue;
            }
            t.pos += w;
            t.pairs += w * (t.neg + 0.5 * block_all);
            for p in 0..np {
                let h = layout.groups[i * np + p] as usize;
                t.group_pos[h] += w;
                let (o, k) = (layout.offsets[p], layout.offsets[p + 1] - layout.offsets[p]);
                let row = &mut t.cross[p][(h - o) * k..(h - o + 1) * k];
                for (l, cell) in row.iter_mut().enumerate() {
                    *cell += w * (t.group_neg[o + l] + 0.5 * block_neg[o + l]);
                }
            }
        }
        t.neg += block_all;
        for g in touched.drain(..) {
            t.group_neg[g] += block_neg[g];
            block_neg[g] = 0.0;
        }
        start = end;
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::groups::Partition;

    /// AUC by counting pairs directly.
    fn pairwise(scores: &[f64], truth: &[bool], keep: impl Fn(usize) -> bool) -> Option<f64> {
        let (mut num, mut den) = (0.0, 0.0);
        for i in (0..scores.len()).filter(|&i| keep(i) && truth[i]) {
            for j in (0..scores.len()).filter(|&j| keep(j) && !truth[j]) {
                den += 1.0;
                num += if scores[i] > scores[j] {
                    1.0
                } else if scores[i] == scores[j] {
                    0.5
                } else {
                    0.0
                };
            }
        }
        (den > 0.0).then(|| num / den)
    }

    #[test]
    fn every_group_and_its_rest_match_pair_counting_with_ties() {
        // Scores on a coarse grid so that ties are common, across groups.
        let n = 300;
        let scores: Vec<f64> = (0..n).map(|i| ((i * 7919) % 23) as f64 / 23.0).collect();
        let truth: Vec<bool> = (0..n).map(|i| (i * 31 + i / 3) % 5 < 2).collect();
        let a: Vec<u16> = (0..n).map(|i| (i % 3) as u16).collect();
        let b: Vec<u16> = (0..n).map(|i| ((i / 7) % 2) as u16).collect();
        let parts = vec![
            Partition {
                name: "a".into(),
                column: "a".into(),
                groups: vec!["0".into(), "1".into(), "2".into()],
                of_image: a.clone(),
            },
            Partition {
                name: "b".into(),
                column: "b".into(),
                groups: vec!["x".into(), "y".into()],
                of_image: b.clone(),
            },
        ];
        let layout = Layout::new(&parts, n);
        let known: Vec<Option<bool>> = truth.iter().map(|&t| Some(t)).collect();
        let t = tally(&Ranked::new(&scores, &known), None, &layout);
        let close = |x: Option<f64>, y: Option<f64>| (x.unwrap() - y.unwrap()).abs() < 1e-12;
        assert!(close(t.auc(), pairwise(&scores, &truth, |_| true)));
        for g in 0..3 {
            let (own, rest) = t.group_and_rest(&layout, g);
            assert!(close(
                own,
                pairwise(&scores, &truth, |i| a[i] as usize == g)
            ));
            assert!(close(
                rest,
                pairwise(&scores, &truth, |i| a[i] as usize != g)
            ));
        }
        for g in 0..2 {
            let (own, rest) = t.group_and_rest(&layout, 3 + g);
            assert!(close(
                own,
                pairwise(&scores, &truth, |i| b[i] as usize == g)
            ));
            assert!(close(
                rest,
                pairwise(&scores, &truth, |i| b[i] as usize != g)
            ));
        }
    }

    #[test]
    fn weights_count_an_image_that_many_times_and_unknown_labels_are_left_out() {
        let scores = [0.9, 0.4, 0.5, 0.1, 0.7];
        let known = [Some(true), Some(true), Some(false), Some(false), None];
        let part = Partition {
            name: "all".into(),
            column: "c".into(),
            groups: vec!["g".into()],
            of_image: vec![0; 5],
        };
        let layout = Layout::new(std::slice::from_ref(&part), 5);
        let r = Ranked::new(&scores, &known);
        assert_eq!(r.image.len(), 4);
        assert_eq!(tally(&r, None, &layout).auc(), Some(0.75));
        // The 0.4 positive twice: pairs (0.9>0.5, 0.9>0.1, 2×(0.4<0.5), 2×(0.4>0.1)) = 4/6.
        let t = tally(&r, Some(&[1, 2, 1, 1, 1]), &layout);
        assert!((t.auc().unwrap() - 4.0 / 6.0).abs() < 1e-12);
        // Dropping every negative leaves no AUC.
        assert_eq!(tally(&r, Some(&[1, 1, 0, 0, 1]), &layout).auc(), None);
    }
}
