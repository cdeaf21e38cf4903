//! `POST /v1/label`: report text in, labels in the CheXpert convention out, with the evidence of
//! each (the phrase, its sentence, the cue that set its state).

use crate::error::ApiError;
use chestx_core::{Finding, LabelState};
use chestx_report::{Labeler, Report, Source};

/// The body: plain text (one report), or JSON — a string, `{"id", "text"}`, or a list of either.
#[derive(Debug, serde::Deserialize)]
#[serde(untagged)]
pub enum LabelRequest {
    One(ReportIn),
    Many(Vec<ReportIn>),
}

#[derive(Debug, serde::Deserialize)]
#[serde(untagged)]
pub enum ReportIn {
    Text(String),
    Record {
        #[serde(default)]
        id: Option<String>,
        text: String,
    },
}

impl ReportIn {
    fn into_parts(self, i: usize) -> (String, String) {
        match self {
            ReportIn::Text(t) => (i.to_string(), t),
            ReportIn::Record { id, text } => (id.unwrap_or_else(|| i.to_string()), text),
        }
    }
}

#[derive(Debug, serde::Serialize)]
pub struct Evidence {
    pub finding: &'static str,
    /// positive, negative or uncertain.
    pub status: LabelState,
    pub phrase: String,
    /// Offsets of the phrase in the text, in characters (Unicode scalar values).
    pub start: usize,
    pub end: usize,
    /// The same offsets in UTF-16 code units, as JavaScript strings index them.
    pub utf16_start: usize,
    pub utf16_end: usize,
    pub sentence: String,
    pub section: chestx_report::Section,
    /// The cue that set the state, as `tag:phrase` (e.g. `neg-pre:no`); absent when affirmed.
    pub rule: Option<String>,
}

#[derive(Debug, serde::Serialize)]
pub struct LabelledReport {
    pub id: String,
    /// Finding name → 1, 0, -1 or null (not mentioned): the CheXpert convention.
    pub labels: serde_json::Map<String, serde_json::Value>,
    pub evidence: Vec<Evidence>,
}

/// Most reports one request may carry.
pub const MAX_REPORTS: usize = 10_000;

pub fn parse(content_type: Option<&str>, body: &[u8]) -> Result<Vec<(String, String)>, ApiError> {
    let is_json = content_type.is_some_and(|c| c.starts_with("application/json"));
    let text = std::str::from_utf8(body).map_err(|e| {
        ApiError::bad_request("not_utf8", format!("the body is not UTF-8 text: {e}"))
    })?;
    let reports: Vec<(String, String)> = if is_json {
        let req: LabelRequest = serde_json::from_str(text).map_err(|e| {
            ApiError::bad_request(
                "bad_json",
                format!(
                    "expected a report as a string, {{\"id\", \"text\"}}, or a list of them: {e}"
                ),
            )
        })?;
        match req {
            LabelRequest::One(r) => vec![r.into_parts(0)],
            LabelRequest::Many(v) => v
                .into_iter()
                .enumerate()
                .map(|(i, r)| r.into_parts(i))
                .collect(),
        }
    } else {
        vec![("0".into(), text.to_string())]
    };
    if reports.is_empty() || reports.iter().all(|(_, t)| t.trim().is_empty()) {
        return Err(ApiError::bad_request(
            "empty_body",
            "no report text to label",
        ));
    }
    if reports.len() > MAX_REPORTS {
        return Err(ApiError::new(
            axum::http::StatusCode::PAYLOAD_TOO_LARGE,
            "too_many_reports",
            format!(
                "{} reports in one request; at most {MAX_REPORTS} (use `chestx label` for archives)",
                reports.len()
            ),
        ));
    }
    Ok(reports)
}

pub fn label(labeler: &Labeler, id: String, text: String) -> LabelledReport {
    let report = Report {
        id: id.clone(),
        origin: String::new(),
        sources: vec![Source {
            name: "text".into(),
            section: None,
            text,
        }],
    };
    let l = labeler.label(&report);
    let text = &report.sources[0].text;
    let mut labels = serde_json::Map::new();
    for f in Finding::ALL {
        let v = l
            .labels
            .get(f)
            .map_or(serde_json::Value::Null, |s| s.code().into());
        labels.insert(f.name().to_string(), v);
    }
    let evidence = l
        .mentions
        .iter()
        .map(|m| {
            let before = &text[..m.span.start];
            let phrase = &text[m.span.clone()];
            let (start, utf16_start) = (before.chars().count(), before.encode_utf16().count());
            Evidence {
                finding: m.finding.map_or("Other", |f| f.name()),
                status: m.state,
                phrase: phrase.to_string(),
                start,
                end: start + phrase.chars().count(),
                utf16_start,
                utf16_end: utf16_start + phrase.encode_utf16().count(),
                sentence: text[m.sentence.clone()].to_string(),
                section: m.section,
                rule: m.rule.clone(),
            }
        })
        .collect();
    LabelledReport {
        id,
        labels,
        evidence,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negation_uncertainty_and_offsets_that_javascript_can_use() {
        let lab = Labeler::with_defaults();
        // "é" and an emoji make characters, UTF-16 units and bytes disagree.
        let text = "Café 🙂 study. No pneumothorax. Cannot exclude pneumonia. Small left effusion.";
        let r = label(&lab, "r1".into(), text.into());
        assert_eq!(r.labels["Pneumothorax"], 0);
        assert_eq!(r.labels["Pneumonia"], -1);
        assert_eq!(r.labels["Effusion"], 1);
        assert_eq!(r.labels["Mass"], serde_json::Value::Null);
        let utf16: Vec<u16> = text.encode_utf16().collect();
        for e in &r.evidence {
            let chars: String = text.chars().skip(e.start).take(e.end - e.start).collect();
            assert_eq!(chars, e.phrase);
            let units = String::from_utf16(&utf16[e.utf16_start..e.utf16_end]).unwrap();
            assert_eq!(units, e.phrase);
        }
        let neg = r
            .evidence
            .iter()
            .find(|e| e.finding == "Pneumothorax")
            .unwrap();
        assert!(neg.rule.as_deref().unwrap().starts_with("neg"), "{neg:?}");
    }

    #[test]
    fn bodies_in_every_accepted_shape_and_the_bad_ones() {
        let json = Some("application/json");
        assert_eq!(parse(None, b"No effusion.").unwrap().len(), 1);
        assert_eq!(parse(json, br#""No effusion.""#).unwrap().len(), 1);
        let many = parse(json, br#"[{"id":"a","text":"x"}, "y"]"#).unwrap();
        assert_eq!(many, [("a".into(), "x".into()), ("1".into(), "y".into())]);
        assert_eq!(parse(json, b"{bad").unwrap_err().kind, "bad_json");
        assert_eq!(parse(json, b"[]").unwrap_err().kind, "empty_body");
        assert_eq!(parse(None, b"  ").unwrap_err().kind, "empty_body");
        assert_eq!(parse(None, b"\xff\xfe").unwrap_err().kind, "not_utf8");
    }
}
