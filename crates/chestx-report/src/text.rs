//! Report structure: section headings inside free text, and sentence boundaries.
//!
//! Everything here works on byte offsets into the original text, so that evidence spans can always
//! be traced back to the exact characters a radiologist wrote.

use std::ops::Range;

/// Section kinds a report may carry. Labels come from [`Section::Findings`] and
/// [`Section::Impression`] by default, as in the paper.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Section {
    Findings,
    Impression,
    Indication,
    History,
    Comparison,
    Technique,
    Recommendation,
    /// Text under no recognised heading.
    Other,
}

impl Section {
    pub const ALL: [Section; 8] = [
        Section::Findings,
        Section::Impression,
        Section::Indication,
        Section::History,
        Section::Comparison,
        Section::Technique,
        Section::Recommendation,
        Section::Other,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Section::Findings => "findings",
            Section::Impression => "impression",
            Section::Indication => "indication",
            Section::History => "history",
            Section::Comparison => "comparison",
            Section::Technique => "technique",
            Section::Recommendation => "recommendation",
            Section::Other => "other",
        }
    }

    /// Map a heading or column name ("FINDINGS", "Clinical history", "impression") to a section.
    pub fn from_heading(heading: &str) -> Option<Section> {
        let h = heading
            .trim()
            .trim_end_matches(':')
            .trim()
            .to_ascii_lowercase();
        let s = match h.as_str() {
            "findings" | "finding" | "report" | "body" => Section::Findings,
            "impression" | "impressions" | "conclusion" | "conclusions" | "summary" | "opinion"
            | "interpretation" | "diagnosis" => Section::Impression,
            "indication"
            | "indications"
            | "reason for exam"
            | "reason for examination"
            | "reason for study"
            | "clinical indication" => Section::Indication,
            "history"
            | "clinical history"
            | "clinical information"
            | "clinical data"
            | "clinical details" => Section::History,
            "comparison" | "comparisons" | "prior" | "priors" | "prior studies" => {
                Section::Comparison
            }
            "technique" | "exam" | "examination" | "procedure" | "views" | "study" => {
                Section::Technique
            }
            "recommendation" | "recommendations" | "notification" | "notifications"
            | "addendum" => Section::Recommendation,
            "other" | "text" => Section::Other,
            _ => return None,
        };
        Some(s)
    }
}

/// A span of a source text that belongs to one section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SectionSpan {
    pub section: Section,
    pub range: Range<usize>,
}

/// Split free text at section headings: a recognised heading word or phrase followed by a colon, at the
/// start of the text, a line, or a sentence ("FINDINGS: ... IMPRESSION: ..."). Text before the first
/// heading, or in a text without headings, is [`Section::Other`].
pub fn split_sections(text: &str) -> Vec<SectionSpan> {
    let bytes = text.as_bytes();
    let mut heads: Vec<(usize, usize, Section)> = Vec::new(); // (heading start, body start, section)
    let mut i = 0;
    while let Some(off) = text[i..].find(':') {
        let colon = i + off;
        // Walk back over at most four words of letters/spaces to the heading start.
        let mut start = colon;
        let mut words = 0;
        while start > 0 {
            let c = bytes[start - 1];
            if c.is_ascii_alphabetic() {
                start -= 1;
            } else if c == b' ' && start > 1 && bytes[start - 2].is_ascii_alphabetic() && words < 3
            {
                words += 1;
                start -= 1;
            } else {
                break;
            }
        }
        let at_boundary = start == 0 || {
            let before = text[..start].trim_end_matches([' ', '\t']);
            before.is_empty() || before.ends_with(['\n', '\r', '.', '!', '?'])
        };
        if at_boundary {
            // The heading may have absorbed a leading word ("Chest FINDINGS:"); try suffixes too.
            let cand = &text[start..colon];
            let found = std::iter::once(0)
                .chain(cand.match_indices(' ').map(|(p, _)| p + 1))
                .find_map(|p| Section::from_heading(&cand[p..]).map(|s| (p, s)));
            if let Some((p, s)) = found {
                if p == 0 {
                    heads.push((start, colon + 1, s));
                }
            }
        }
        i = colon + 1;
    }
    let mut out = Vec::new();
    let first = heads.first().map_or(text.len(), |h| h.0);
    if !text[..first].trim().is_empty() {
        out.push(SectionSpan {
            section: Section::Other,
            range: 0..first,
        });
    }
    for (k, &(_, body, s)) in heads.iter().enumerate() {
        let end = heads.get(k + 1).map_or(text.len(), |h| h.0);
        out.push(SectionSpan {
            section: s,
            range: body..end,
        });
    }
    out
}

/// Sentence ranges of `text`, as byte ranges, trimmed of surrounding whitespace. A sentence ends at
/// `.`, `!`, `?` or `;` followed by whitespace or the end, at a line break, and before a numbered list
/// item ("1." / "2)"). Decimal points ("3.2 cm") do not end sentences.
pub fn sentences(text: &str) -> Vec<Range<usize>> {
    let b = text.as_bytes();
    let mut out = Vec::new();
    let mut start = 0;
    let mut i = 0;
    let push = |out: &mut Vec<Range<usize>>, s: usize, e: usize| {
        let (mut s, mut e) = (s, e);
        while s < e && b[s].is_ascii_whitespace() {
            s += 1;
        }
        while e > s && b[e - 1].is_ascii_whitespace() {
            e -= 1;
        }
        if e > s {
            out.push(s..e);
        }
    };
    while i < b.len() {
        let c = b[i];
        let next = b.get(i + 1).copied();
        let end_here = match c {
            b'\n' | b'\r' => true,
            b'.' | b'!' | b'?' | b';' => {
                let digit_around = c == b'.'
                    && i > 0
                    && b[i - 1].is_ascii_digit()
                    && next.is_some_and(|n| n.is_ascii_digit());
                // "1." opening a numbered item is not a sentence of its own.
                let seg = text[start..i].trim();
                let list_marker =
                    c == b'.' && !seg.is_empty() && seg.bytes().all(|d| d.is_ascii_digit());
                !digit_around
                    && !list_marker
                    && next.is_none_or(|n| n.is_ascii_whitespace() || n == b'.')
            }
            _ => false,
        };
        if end_here {
            // A list marker "2." just after a sentence end belongs to the next sentence; drop it.
            push(&mut out, start, i + 1);
            start = i + 1;
        } else if c.is_ascii_digit()
            && (i == 0 || b[i - 1].is_ascii_whitespace())
            && matches!(next, Some(b'.') | Some(b')'))
            && b.get(i + 2).is_none_or(|n| n.is_ascii_whitespace())
            && text[start..i].trim().len() > 1
        {
            // "... effusion 2. Cardiomegaly": a numbered item starts a new sentence.
            push(&mut out, start, i);
            start = i;
        }
        i += 1;
    }
    push(&mut out, start, b.len());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts<'a>(t: &'a str, r: &[Range<usize>]) -> Vec<&'a str> {
        r.iter().map(|r| &t[r.clone()]).collect()
    }

    #[test]
    fn sentences_split_at_ends_but_not_decimals() {
        let t = "Mass measures 3.2 cm. No effusion!\nHeart normal; lungs clear 1. Edema 2) Nodule";
        assert_eq!(
            texts(t, &sentences(t)),
            vec![
                "Mass measures 3.2 cm.",
                "No effusion!",
                "Heart normal;",
                "lungs clear",
                "1. Edema",
                "2) Nodule"
            ]
        );
    }

    #[test]
    fn sentences_of_empty_and_blank_text() {
        assert!(sentences("").is_empty());
        assert!(sentences("  \n ").is_empty());
        assert_eq!(
            texts("no period", &sentences("no period")),
            vec!["no period"]
        );
    }

    #[test]
    fn headings_split_free_text_into_sections() {
        let t = "EXAM: Chest 2 views\nINDICATION: cough.\nFINDINGS: No effusion. IMPRESSION: Normal chest.";
        let s = split_sections(t);
        let got: Vec<(Section, &str)> = s
            .iter()
            .map(|s| (s.section, t[s.range.clone()].trim()))
            .collect();
        assert_eq!(
            got,
            vec![
                (Section::Technique, "Chest 2 views"),
                (Section::Indication, "cough."),
                (Section::Findings, "No effusion."),
                (Section::Impression, "Normal chest."),
            ]
        );
    }

    #[test]
    fn text_without_headings_is_one_other_section() {
        let t = "Heart size normal: lungs clear.";
        let s = split_sections(t);
        assert_eq!(
            s,
            vec![SectionSpan {
                section: Section::Other,
                range: 0..t.len()
            }]
        );
    }

    #[test]
    fn lowercase_headings_count_too() {
        let t = "findings: small effusion\nimpression: effusion";
        let s = split_sections(t);
        assert_eq!(
            s.iter().map(|s| s.section).collect::<Vec<_>>(),
            vec![Section::Findings, Section::Impression]
        );
    }
}
