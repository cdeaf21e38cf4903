//! ROC AUC computed from ranks (the Mann-Whitney U statistic), with tied scores given their average
//! rank — the definition that reproduces published AUCs to the last digit — ROC curve points and
//! Youden thresholds. Bootstrap intervals (over patients) are the audit's: [`crate::audit`].

/// ROC AUC of `scores` for binary `labels`; `None` when one class is absent.
pub fn roc_auc(scores: &[f64], labels: &[bool]) -> Option<f64> {
    assert_eq!(scores.len(), labels.len(), "one label per score");
    let mut idx: Vec<usize> = (0..scores.len()).collect();
    idx.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    auc_from_sorted(&idx, scores, labels)
}

/// AUC given indices sorted by ascending score.
fn auc_from_sorted(idx: &[usize], scores: &[f64], labels: &[bool]) -> Option<f64> {
    let n_pos = idx.iter().filter(|&&i| labels[i]).count() as f64;
    let n_neg = idx.len() as f64 - n_pos;
    if n_pos == 0.0 || n_neg == 0.0 {
        return None;
    }
    // Sum of the (1-based, tie-averaged) ranks of the positives.
    let mut rank_sum = 0.0;
    let mut i = 0;
    while i < idx.len() {
        let mut j = i + 1;
        while j < idx.len() && scores[idx[j]] == scores[idx[i]] {
            j += 1;
        }
        let avg_rank = (i + 1 + j) as f64 / 2.0;
        let pos_in_tie = idx[i..j].iter().filter(|&&k| labels[k]).count() as f64;
        rank_sum += avg_rank * pos_in_tie;
        i = j;
    }
    Some((rank_sum - n_pos * (n_pos + 1.0) / 2.0) / (n_pos * n_neg))
}

/// The central `level` interval of bootstrap estimates (nearest-rank percentiles); `None` when
/// there are none.
pub fn percentile_interval(mut values: Vec<f64>, level: f64) -> Option<(f64, f64)> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let last = values.len() - 1;
    let q = |p: f64| values[((p * last as f64).round() as usize).min(last)];
    let tail = (1.0 - level) / 2.0;
    Some((q(tail), q(1.0 - tail)))
}

/// ROC curve points `(false positive rate, true positive rate)`, one per distinct threshold, from
/// (0,0) to (1,1).
pub fn roc_curve(scores: &[f64], labels: &[bool]) -> Vec<(f64, f64)> {
    let mut idx: Vec<usize> = (0..scores.len()).collect();
    idx.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    let n_pos = labels.iter().filter(|&&l| l).count().max(1) as f64;
    let n_neg = (labels.len() - labels.iter().filter(|&&l| l).count()).max(1) as f64;
    let (mut tp, mut fp) = (0.0, 0.0);
    let mut pts = vec![(0.0, 0.0)];
    let mut i = 0;
    while i < idx.len() {
        let s = scores[idx[i]];
        while i < idx.len() && scores[idx[i]] == s {
            if labels[idx[i]] {
                tp += 1.0;
            } else {
                fp += 1.0;
            }
            i += 1;
        }
        pts.push((fp / n_neg, tp / n_pos));
    }
    pts
}

/// The score threshold maximising sensitivity + specificity − 1.
pub fn youden_threshold(scores: &[f64], labels: &[bool]) -> Option<f64> {
    let pos = labels.iter().filter(|&&l| l).count() as f64;
    let neg = labels.len() as f64 - pos;
    if pos == 0.0 || neg == 0.0 {
        return None;
    }
    let mut idx: Vec<usize> = (0..scores.len()).collect();
    idx.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    let (mut tp, mut fp, mut best, mut best_t) = (0.0, 0.0, f64::NEG_INFINITY, 0.5);
    for (k, &i) in idx.iter().enumerate() {
        if labels[i] {
            tp += 1.0;
        } else {
            fp += 1.0;
        }
        let next_differs = idx.get(k + 1).is_none_or(|&j| scores[j] != scores[i]);
        if next_differs {
            let j = tp / pos - fp / neg;
            if j > best {
                best = j;
                best_t = scores[i];
            }
        }
    }
    Some(best_t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auc_worked_by_hand() {
        // Positives 0.9, 0.4; negatives 0.5, 0.1: pairs (0.9>0.5)(0.9>0.1)(0.4<0.5)(0.4>0.1) -> 3/4.
        assert_eq!(
            roc_auc(&[0.9, 0.4, 0.5, 0.1], &[true, true, false, false]),
            Some(0.75)
        );
        // A tie between a positive and a negative counts one half.
        assert_eq!(roc_auc(&[0.5, 0.5], &[true, false]), Some(0.5));
        assert_eq!(roc_auc(&[0.7, 0.5, 0.5], &[true, true, false]), Some(0.75));
        assert_eq!(roc_auc(&[0.1, 0.2], &[true, true]), None);
    }

    #[test]
    fn roc_curve_runs_corner_to_corner_and_its_area_is_the_auc() {
        let s = [0.9, 0.8, 0.7, 0.6, 0.55, 0.3, 0.2];
        let l = [true, false, true, true, false, false, true];
        let pts = roc_curve(&s, &l);
        assert_eq!(pts.first(), Some(&(0.0, 0.0)));
        assert_eq!(pts.last(), Some(&(1.0, 1.0)));
        let area: f64 = pts
            .windows(2)
            .map(|w| (w[1].0 - w[0].0) * (w[1].1 + w[0].1) / 2.0)
            .sum();
        assert!((area - roc_auc(&s, &l).unwrap()).abs() < 1e-12);
    }

    #[test]
    fn youden_threshold_separates_perfectly_ranked_scores() {
        let s = [0.9, 0.8, 0.3, 0.2];
        let l = [true, true, false, false];
        assert_eq!(youden_threshold(&s, &l), Some(0.8));
        assert_eq!(youden_threshold(&s, &[true; 4]), None);
    }
}
