//! From text to mentions with a state: the scanning, scoping and aggregation of the labeler.
//!
//! One pass of the automaton finds every phrase and cue in a section. Within each sentence a mention
//! takes the state of the nearest cue whose scope reaches it: a pre-cue ("no", "possible") reaches
//! forward, a post-cue ("is not seen", "cannot be excluded") backward, both stopping at a scope
//! terminator ("but", "which") or at a cue of the other direction. Lists therefore share one cue
//! ("no effusion, pneumothorax, or consolidation"). Longer cues mask the shorter words inside them
//! ("cannot exclude" is a hedge, not a negation), and pseudo-cues ("no change") mask what they contain.

use crate::rules::{Kind, Rules};
use crate::text::{sentences, split_sections, Section};
use crate::{Report, Source};
use chestx_core::{Finding, LabelState, ReportLabels};
use std::ops::Range;

/// Which sections labels are taken from.
#[derive(Debug, Clone)]
pub struct SectionPolicy {
    pub wanted: Vec<Section>,
    /// When a report has none of the wanted sections, label its un-headed text instead.
    pub fallback_to_unheaded: bool,
}

impl SectionPolicy {
    /// The sections named (`all` takes every section), or the default with no names; an unknown
    /// name is an error listing the known ones. `chestx label --sections` and the Python package.
    pub fn from_names(names: Option<&[String]>) -> Result<SectionPolicy, String> {
        let Some(names) = names else {
            return Ok(SectionPolicy::default());
        };
        if names.iter().any(|n| n.eq_ignore_ascii_case("all")) {
            return Ok(SectionPolicy {
                wanted: Section::ALL.to_vec(),
                fallback_to_unheaded: false,
            });
        }
        let mut wanted = Vec::new();
        for n in names {
            match Section::ALL
                .iter()
                .find(|s| s.name().eq_ignore_ascii_case(n.trim()))
            {
                Some(s) => wanted.push(*s),
                None => {
                    let known: Vec<_> = Section::ALL.iter().map(|s| s.name()).collect();
                    return Err(format!(
                        "unknown section {n:?}; known sections: {}, all",
                        known.join(", ")
                    ));
                }
            }
        }
        Ok(SectionPolicy {
            wanted,
            fallback_to_unheaded: false,
        })
    }
}

impl Default for SectionPolicy {
    /// Findings + impression, as in the paper, falling back to the un-headed text of plain reports.
    fn default() -> Self {
        SectionPolicy {
            wanted: vec![Section::Findings, Section::Impression],
            fallback_to_unheaded: true,
        }
    }
}

/// One finding mention, with the evidence for its state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mention {
    /// `None` for an abnormality outside the 14 findings (it only affects `No Finding`).
    pub finding: Option<Finding>,
    pub state: LabelState,
    /// Index into the report's sources.
    pub source: usize,
    pub section: Section,
    /// Byte range of the matched phrase in the source text.
    pub span: Range<usize>,
    /// Byte range of its sentence.
    pub sentence: Range<usize>,
    /// The cue that set the state, as `tag:phrase` (e.g. `neg-pre:no evidence of`); `None` when affirmed.
    pub rule: Option<String>,
}

/// Labels of one report and the mentions they came from.
#[derive(Debug, Clone, Default)]
pub struct Labelled {
    pub labels: ReportLabels,
    pub mentions: Vec<Mention>,
}

/// A matched phrase in one section text.
#[derive(Debug, Clone, Copy)]
struct Token {
    start: usize,
    end: usize,
    pattern: usize,
    kind: Kind,
}

fn is_word(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b >= 0x80
}

/// The report labeler: rules plus a section policy. Cheap to share between threads.
#[derive(Debug)]
pub struct Labeler {
    rules: Rules,
    policy: SectionPolicy,
}

impl Labeler {
    pub fn new(rules: Rules, policy: SectionPolicy) -> Self {
        Labeler { rules, policy }
    }

    /// The compiled-in rules with the default section policy.
    pub fn with_defaults() -> Self {
        Labeler::new(Rules::default_rules(), SectionPolicy::default())
    }

    /// Label a report from the sections the policy selects.
    pub fn label(&self, report: &Report) -> Labelled {
        let mut out = Labelled::default();
        let spans = self.select(report);
        let mut tokens = Vec::new();
        for (src, section, range) in spans {
            let text = &report.sources[src].text;
            self.label_section(text, range, src, section, &mut tokens, &mut out.mentions);
        }
        let mut abnormal = false;
        for m in &out.mentions {
            if let Some(f) = m.finding {
                out.labels.add_mention(f, m.state);
            }
            abnormal |= m.state != LabelState::Negative;
        }
        if !abnormal {
            out.labels
                .set(Finding::NoFinding, Some(LabelState::Positive));
        }
        out
    }

    /// Label one piece of free text, as a report with a single un-headed source.
    pub fn label_text(&self, text: &str) -> Labelled {
        self.label(&Report {
            id: String::new(),
            origin: String::new(),
            sources: vec![Source {
                name: "text".into(),
                section: None,
                text: text.to_string(),
            }],
        })
    }

    /// (source index, section, byte range) of every span to label.
    fn select(&self, report: &Report) -> Vec<(usize, Section, Range<usize>)> {
        let mut all = Vec::new();
        for (i, s) in report.sources.iter().enumerate() {
            match s.section {
                Some(sec) => all.push((i, sec, 0..s.text.len())),
                None => all.extend(
                    split_sections(&s.text)
                        .into_iter()
                        .map(|sp| (i, sp.section, sp.range)),
                ),
            }
        }
        let wanted: Vec<_> = all
            .iter()
            .filter(|(_, s, _)| self.policy.wanted.contains(s))
            .cloned()
            .collect();
        if wanted.is_empty() && self.policy.fallback_to_unheaded {
            all.into_iter()
                .filter(|(_, s, _)| *s == Section::Other)
                .collect()
        } else {
            wanted
        }
    }

    fn scan(&self, text: &str, range: &Range<usize>, tokens: &mut Vec<Token>) {
        tokens.clear();
        let hay = &text.as_bytes()[..range.end];
        let input = aho_corasick::Input::new(hay).range(range.clone());
        for m in self.rules.ac.find_overlapping_iter(input) {
            let p = &self.rules.patterns[m.pattern().as_usize()];
            let (start, mut end) = (m.start(), m.end());
            if start > 0 && is_word(hay[start - 1]) {
                continue;
            }
            if p.prefix {
                while end < hay.len() && is_word(hay[end]) {
                    end += 1;
                }
            } else if end < hay.len() && is_word(hay[end]) {
                // Accept a plural ending: "effusions", "masses".
                let rest = &hay[end..];
                let plural = [&b"s"[..], b"es"].into_iter().find(|suf| {
                    rest.len() >= suf.len()
                        && rest[..suf.len()].eq_ignore_ascii_case(suf)
                        && rest.get(suf.len()).is_none_or(|&b| !is_word(b))
                });
                match plural {
                    Some(suf) => end += suf.len(),
                    None => continue,
                }
            }
            tokens.push(Token {
                start,
                end,
                pattern: m.pattern().as_usize(),
                kind: p.kind,
            });
        }
        // Leftmost-longest, non-overlapping.
        tokens.sort_unstable_by(|a, b| a.start.cmp(&b.start).then(b.end.cmp(&a.end)));
        let mut last_end = 0;
        tokens.retain(|t| {
            if t.start >= last_end {
                last_end = t.end;
                true
            } else {
                false
            }
        });
    }

    fn label_section(
        &self,
        text: &str,
        range: Range<usize>,
        source: usize,
        section: Section,
        tokens: &mut Vec<Token>,
        out: &mut Vec<Mention>,
    ) {
        self.scan(text, &range, tokens);
        if tokens.is_empty() {
            return;
        }
        let sents = sentences(&text[range.clone()]);
        let mut k = 0;
        for s in sents {
            let sent = (s.start + range.start)..(s.end + range.start);
            let first = k;
            while k < tokens.len() && tokens[k].start < sent.end {
                k += 1;
            }
            let toks = &tokens[first..k];
            if toks.is_empty() {
                continue;
            }
            self.label_sentence(text, &sent, toks, source, section, out);
        }
    }

    fn label_sentence(
        &self,
        text: &str,
        sent: &Range<usize>,
        toks: &[Token],
        source: usize,
        section: Section,
        out: &mut Vec<Mention>,
    ) {
        let mut used_modifier = vec![false; toks.len()];
        for (i, t) in toks.iter().enumerate() {
            let (finding, lo, hi, span) = match t.kind {
                Kind::Mention(f) => (Some(f), i, i, t.start..t.end),
                Kind::Other => (None, i, i, t.start..t.end),
                Kind::Head(c) => match self.pair_compound(text, toks, i, c, &used_modifier) {
                    Some(j) => {
                        used_modifier[j] = true;
                        let (lo, hi) = (i.min(j), i.max(j));
                        let f = self.rules.compounds[c as usize].finding;
                        (Some(f), lo, hi, toks[lo].start..toks[hi].end)
                    }
                    None => continue,
                },
                _ => continue,
            };
            let cue = self.cue_for(toks, lo, hi);
            let (state, rule) = match cue {
                Some(c) => {
                    let k = toks[c].kind;
                    let state = match k {
                        Kind::NegPre | Kind::NegPost => LabelState::Negative,
                        _ => LabelState::Uncertain,
                    };
                    let phrase = &self.rules.patterns[toks[c].pattern].phrase;
                    (state, Some(format!("{}:{}", k.tag(), phrase)))
                }
                None => (LabelState::Positive, None),
            };
            out.push(Mention {
                finding,
                state,
                source,
                section,
                span,
                sentence: sent.clone(),
                rule,
            });
        }
    }

    /// The modifier of compound `c` that pairs with the head at `i`: the nearest one within the window,
    /// with no terminator between.
    fn pair_compound(
        &self,
        text: &str,
        toks: &[Token],
        i: usize,
        c: u16,
        used: &[bool],
    ) -> Option<usize> {
        // Head and modifier must share a phrase: within the window and not across a comma
        // ("heart size, enlarged aorta" is no cardiomegaly). Scope terminators such as "remains" do
        // not split them ("heart size remains enlarged").
        let window = self.rules.compounds[c as usize].window;
        let close = |a: usize, b: usize| {
            let gap = &text[a..b];
            !gap.contains(',') && gap.split_ascii_whitespace().count() <= window
        };
        let fwd = toks[i + 1..]
            .iter()
            .enumerate()
            .map(|(o, t)| (i + 1 + o, t))
            .find(|(j, t)| t.kind == Kind::Modifier(c) && !used[*j])
            .filter(|(_, t)| close(toks[i].end, t.start))
            .map(|(j, _)| j);
        let back = toks[..i]
            .iter()
            .enumerate()
            .rev()
            .find(|(j, t)| t.kind == Kind::Modifier(c) && !used[*j])
            .filter(|(_, t)| close(t.end, toks[i].start))
            .map(|(j, _)| j);
        match (fwd, back) {
            (Some(f), Some(b)) => {
                if toks[f].start - toks[i].end <= toks[i].start - toks[b].end {
                    Some(f)
                } else {
                    Some(b)
                }
            }
            (f, b) => f.or(b),
        }
    }

    /// The cue governing the mention spanning tokens `lo..=hi`: a cue inside a compound's span first,
    /// else the nearest pre-cue before or post-cue after whose scope reaches it.
    fn cue_for(&self, toks: &[Token], lo: usize, hi: usize) -> Option<usize> {
        if let Some(inner) = (lo + 1..hi).find(|&j| toks[j].kind.is_cue()) {
            return Some(inner);
        }
        let mut pre = None;
        for j in (0..lo).rev() {
            match toks[j].kind {
                Kind::Terminator | Kind::NegPost | Kind::UncPost => break,
                Kind::NegPre | Kind::UncPre | Kind::UncBoth => {
                    pre = Some(j);
                    break;
                }
                _ => {}
            }
        }
        let mut post = None;
        for (j, t) in toks.iter().enumerate().skip(hi + 1) {
            match t.kind {
                Kind::Terminator | Kind::NegPre | Kind::UncPre => break,
                Kind::NegPost | Kind::UncPost | Kind::UncBoth => {
                    post = Some(j);
                    break;
                }
                _ => {}
            }
        }
        match (pre, post) {
            (Some(p), Some(q)) => {
                let dp = toks[lo].start - toks[p].end;
                let dq = toks[q].start - toks[hi].end;
                Some(if dp <= dq { p } else { q })
            }
            (p, q) => p.or(q),
        }
    }
}
