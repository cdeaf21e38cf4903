//! One test per negation / uncertainty construction: each sentence is labelled with the compiled-in
//! rules and the state of one finding is checked, with the cue that fired where there is one.

use chestx_core::{Finding, LabelState};
use chestx_report::Labeler;
use std::sync::OnceLock;

fn labeler() -> &'static Labeler {
    static L: OnceLock<Labeler> = OnceLock::new();
    L.get_or_init(Labeler::with_defaults)
}

fn state(text: &str, f: Finding) -> Option<LabelState> {
    labeler().label_text(text).labels.get(f)
}

use Finding::*;
use LabelState::*;

#[track_caller]
fn check(text: &str, f: Finding, want: Option<LabelState>) {
    let got = state(text, f);
    assert_eq!(got, want, "{f} in {text:?}");
}

#[test]
fn affirmed_mentions_are_positive() {
    check("Small left pleural effusion.", Effusion, Some(Positive));
    check(
        "There is a right upper lobe pneumonia.",
        Pneumonia,
        Some(Positive),
    );
    check("Cardiomegaly.", Cardiomegaly, Some(Positive));
    check(
        "Bibasilar atelectatic changes.",
        Atelectasis,
        Some(Positive),
    );
}

#[test]
fn unmentioned_findings_are_blank() {
    check("Small left pleural effusion.", Pneumothorax, None);
    check("The lungs are clear.", Atelectasis, None);
}

#[test]
fn pre_negation_cues() {
    check("No pneumothorax.", Pneumothorax, Some(Negative));
    check(
        "Lungs are clear without pleural effusion.",
        Effusion,
        Some(Negative),
    );
    check(
        "The lungs are free of consolidation.",
        Consolidation,
        Some(Negative),
    );
    check(
        "Lungs are clear of focal infiltrate.",
        Infiltration,
        Some(Negative),
    );
    check(
        "Resolved right lower lobe pneumonia.",
        Pneumonia,
        Some(Negative),
    );
    check("No evidence of pneumothorax.", Pneumothorax, Some(Negative));
    check("Negative for pulmonary edema.", Edema, Some(Negative));
}

#[test]
fn post_negation_cues() {
    check("A pneumothorax is not seen.", Pneumothorax, Some(Negative));
    check(
        "The right pleural effusion has resolved.",
        Effusion,
        Some(Negative),
    );
    check(
        "Focal consolidation is not identified.",
        Consolidation,
        Some(Negative),
    );
}

#[test]
fn uncertainty_cues() {
    check(
        "Cannot exclude early pneumonia.",
        Pneumonia,
        Some(Uncertain),
    );
    check("Pneumonia cannot be excluded.", Pneumonia, Some(Uncertain));
    check(
        "This may represent atelectasis.",
        Atelectasis,
        Some(Uncertain),
    );
    check("Possible small left effusion.", Effusion, Some(Uncertain));
    check(
        "Opacity suggestive of pneumonia.",
        Pneumonia,
        Some(Uncertain),
    );
    check(
        "Basilar opacity, atelectasis versus consolidation.",
        Atelectasis,
        Some(Uncertain),
    );
    check(
        "Basilar opacity, atelectasis versus consolidation.",
        Consolidation,
        Some(Uncertain),
    );
    check(
        "Questionable nodule in the right upper lobe.",
        Nodule,
        Some(Uncertain),
    );
    check("Opacity, likely atelectasis.", Atelectasis, Some(Uncertain));
    check(
        "Right basilar opacity concerning for pneumonia.",
        Pneumonia,
        Some(Uncertain),
    );
}

#[test]
fn double_negation_is_uncertain_not_negative() {
    // "cannot" holds "not", and "not excluded" holds "not": the longer hedge wins.
    check(
        "Cannot exclude a small pneumothorax.",
        Pneumothorax,
        Some(Uncertain),
    );
    check(
        "A small effusion is not excluded.",
        Effusion,
        Some(Uncertain),
    );
    check("Pneumonia cannot be ruled out.", Pneumonia, Some(Uncertain));
    check(
        "There is no evidence to suggest pneumonia.",
        Pneumonia,
        Some(Negative),
    );
}

#[test]
fn one_cue_covers_a_list() {
    let text = "No focal consolidation, pleural effusion, or pneumothorax.";
    check(text, Consolidation, Some(Negative));
    check(text, Effusion, Some(Negative));
    check(text, Pneumothorax, Some(Negative));
}

#[test]
fn scope_ends_at_but_and_clause_boundaries() {
    check(
        "No pneumothorax but there is a small effusion.",
        Effusion,
        Some(Positive),
    );
    check(
        "No pneumothorax but there is a small effusion.",
        Pneumothorax,
        Some(Negative),
    );
    check(
        "No effusion, however atelectasis persists at the left base.",
        Atelectasis,
        Some(Positive),
    );
    check(
        "No pneumothorax; left lower lobe atelectasis.",
        Atelectasis,
        Some(Positive),
    );
    check(
        "No acute disease, stable cardiomegaly.",
        Cardiomegaly,
        Some(Positive),
    );
}

#[test]
fn scope_ends_at_the_sentence() {
    check(
        "No pneumothorax. Small right effusion.",
        Effusion,
        Some(Positive),
    );
    check(
        "Possible pneumonia. Large effusion.",
        Effusion,
        Some(Positive),
    );
    check("Emphysema. No effusion.", Emphysema, Some(Positive));
}

#[test]
fn the_nearest_cue_wins() {
    let text = "Possible small left effusion, no pneumothorax.";
    check(text, Effusion, Some(Uncertain));
    check(text, Pneumothorax, Some(Negative));
}

#[test]
fn pseudo_negations_do_not_negate() {
    check(
        "No change in the small left effusion.",
        Effusion,
        Some(Positive),
    );
    check(
        "No interval change in cardiomegaly.",
        Cardiomegaly,
        Some(Positive),
    );
}

#[test]
fn compound_mentions_and_their_negation() {
    check(
        "The heart is mildly enlarged.",
        Cardiomegaly,
        Some(Positive),
    );
    check("Enlarged cardiac silhouette.", Cardiomegaly, Some(Positive));
    check(
        "Heart size remains slightly large.",
        Cardiomegaly,
        Some(Positive),
    );
    check("The heart is not enlarged.", Cardiomegaly, Some(Negative));
    check(
        "Heart size is at the upper limits of normal.",
        Cardiomegaly,
        None,
    );
    // A comma separates the heart from an enlarged aorta.
    check(
        "Stable heart size, moderately enlarged aorta.",
        Cardiomegaly,
        None,
    );
}

#[test]
fn look_alike_phrases_are_not_the_finding() {
    check("Hyperinflated lungs.", Emphysema, None);
    check("Small pericardial effusion.", Effusion, None);
    check("Massive hiatal hernia.", Mass, None);
    check("Changes of cystic fibrosis.", Fibrosis, None);
    check("Blunting of the left costophrenic angle.", Effusion, None);
    check("Calcified granuloma in the right upper lobe.", Nodule, None);
}

#[test]
fn plurals_and_case_are_matched() {
    check("BILATERAL PLEURAL EFFUSIONS.", Effusion, Some(Positive));
    check("Multiple pulmonary nodules.", Nodule, Some(Positive));
    check("Right hilar masses.", Mass, Some(Positive));
}

#[test]
fn no_finding_follows_the_paper_rule() {
    let nf = |t: &str| state(t, NoFinding);
    assert_eq!(
        nf("Heart size normal. Lungs are clear. No effusion or pneumothorax."),
        Some(Positive)
    );
    assert_eq!(nf("No acute cardiopulmonary abnormality."), Some(Positive));
    // Abnormalities outside the 14 findings count.
    assert_eq!(
        nf("Lungs clear. Calcified granuloma in the left upper lobe."),
        None
    );
    assert_eq!(nf("No acute disease. Thoracic scoliosis."), None);
    assert_eq!(nf("Median sternotomy wires. Lungs clear."), None);
    // So do uncertain findings.
    assert_eq!(nf("Possible small effusion."), None);
    // Negated abnormalities do not.
    assert_eq!(nf("No fracture. No scoliosis."), Some(Positive));
}

#[test]
fn evidence_records_phrase_sentence_and_rule() {
    let text = "Heart normal. No evidence of pneumothorax.";
    let l = labeler().label_text(text);
    let m = l
        .mentions
        .iter()
        .find(|m| m.finding == Some(Pneumothorax))
        .unwrap();
    assert_eq!(&text[m.span.clone()], "pneumothorax");
    assert_eq!(&text[m.sentence.clone()], "No evidence of pneumothorax.");
    assert_eq!(m.rule.as_deref(), Some("neg-pre:no evidence of"));
    assert_eq!(m.state, Negative);
}
