use crate::Finding;

/// A finding's state in one report, in the CheXpert convention.
///
/// "Not mentioned" is the absence of a state (`Option::None`), written as a blank cell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LabelState {
    /// Mentioned and affirmed: `1`.
    Positive,
    /// Mentioned and negated: `0`.
    Negative,
    /// Mentioned with a hedge ("cannot exclude", "may represent"): `-1`.
    Uncertain,
}

impl LabelState {
    /// The CheXpert cell value.
    pub fn code(self) -> i8 {
        match self {
            LabelState::Positive => 1,
            LabelState::Negative => 0,
            LabelState::Uncertain => -1,
        }
    }

    /// Precedence when one finding is mentioned several times in a report: any affirmed mention wins,
    /// then a hedged one, then a negated one (CheXpert's aggregation).
    fn rank(self) -> u8 {
        match self {
            LabelState::Positive => 3,
            LabelState::Uncertain => 2,
            LabelState::Negative => 1,
        }
    }

    /// Combine two mentions of the same finding.
    pub fn merge(a: Option<LabelState>, b: LabelState) -> LabelState {
        match a {
            Some(a) if a.rank() >= b.rank() => a,
            _ => b,
        }
    }
}

/// The 15 label cells of one report, indexed by [`Finding::index`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReportLabels(pub [Option<LabelState>; 15]);

impl ReportLabels {
    pub fn get(&self, f: Finding) -> Option<LabelState> {
        self.0[f.index()]
    }

    pub fn set(&mut self, f: Finding, s: Option<LabelState>) {
        self.0[f.index()] = s;
    }

    /// Record one more mention of `f`, keeping the strongest state.
    pub fn add_mention(&mut self, f: Finding, s: LabelState) {
        let slot = &mut self.0[f.index()];
        *slot = Some(LabelState::merge(*slot, s));
    }

    /// Binary view: positive is 1, uncertain is `uncertain_as`, negated or blank is 0.
    pub fn binary(&self, f: Finding, uncertain_as: bool) -> bool {
        match self.get(f) {
            Some(LabelState::Positive) => true,
            Some(LabelState::Uncertain) => uncertain_as,
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_prefers_positive_then_uncertain_then_negative() {
        let mut l = ReportLabels::default();
        l.add_mention(Finding::Edema, LabelState::Negative);
        assert_eq!(l.get(Finding::Edema), Some(LabelState::Negative));
        l.add_mention(Finding::Edema, LabelState::Uncertain);
        assert_eq!(l.get(Finding::Edema), Some(LabelState::Uncertain));
        l.add_mention(Finding::Edema, LabelState::Negative);
        assert_eq!(l.get(Finding::Edema), Some(LabelState::Uncertain));
        l.add_mention(Finding::Edema, LabelState::Positive);
        assert_eq!(l.get(Finding::Edema), Some(LabelState::Positive));
        assert!(l.binary(Finding::Edema, false));
        assert!(!l.binary(Finding::Mass, true));
    }

    #[test]
    fn codes_follow_chexpert() {
        assert_eq!(LabelState::Positive.code(), 1);
        assert_eq!(LabelState::Negative.code(), 0);
        assert_eq!(LabelState::Uncertain.code(), -1);
    }
}
