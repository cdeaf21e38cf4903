//! The labeler's vocabulary and rules, loaded from a TOML data file and compiled into one
//! Aho-Corasick automaton, so a report is scanned once whatever the number of phrases.
//!
//! Phrase syntax: literal words matched case-insensitively on word boundaries; a trailing `s`/`es`
//! plural in the text is accepted; a final `*` matches any word ending ("atelecta*").

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};
use chestx_core::Finding;
use std::collections::BTreeMap;

/// The compiled-in default rules.
pub const DEFAULT_RULES: &str = include_str!("../rules/default.toml");

#[derive(Debug, thiserror::Error)]
pub enum RulesError {
    #[error("rules file is not valid TOML: {0}")]
    Toml(#[from] toml::de::Error),
    #[error("rules file names unknown finding {0:?}")]
    UnknownFinding(String),
    #[error("rules file has an empty phrase in {0}")]
    EmptyPhrase(String),
    #[error("rules file lists phrase {phrase:?} twice, in {first} and in {second}")]
    Duplicate {
        phrase: String,
        first: String,
        second: String,
    },
    #[error("could not build the phrase automaton: {0}")]
    Automaton(String),
}

/// The rules file as written.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RulesFile {
    /// Per finding name: its phrases and compound (head + modifier) patterns.
    pub findings: BTreeMap<String, FindingRules>,
    /// Abnormalities outside the 14 findings: any affirmed one makes `No Finding` blank.
    pub other: PhraseList,
    /// Phrases that contain a finding's word but mean something else ("pericardial effusion" is
    /// no pleural effusion); they are matched, then ignored.
    pub ignore: PhraseList,
    pub triggers: Triggers,
}

#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PhraseList {
    #[serde(default)]
    pub phrases: Vec<String>,
}

#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FindingRules {
    #[serde(default)]
    pub phrases: Vec<String>,
    /// Signs that suggest the finding without naming it ("blunting of the costophrenic angle" for an
    /// effusion, "vascular congestion" for edema). Listed with the finding for the reader, they count
    /// as an abnormality outside the 14: the OpenI gold and radiologists do not read them as the finding.
    #[serde(default)]
    pub signs: Vec<String>,
    #[serde(default)]
    pub compound: Vec<Compound>,
}

/// A finding written as two parts in one clause: "the heart is mildly enlarged", "enlarged cardiac
/// silhouette". Fires when a head and a modifier lie within `window` words of each other.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Compound {
    pub heads: Vec<String>,
    pub modifiers: Vec<String>,
    #[serde(default = "default_window")]
    pub window: usize,
}

fn default_window() -> usize {
    6
}

#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Triggers {
    /// Negation cues that precede the mention: "no", "without", "negative for".
    pub negation_pre: Vec<String>,
    /// Negation cues that follow it: "is not seen", "has resolved".
    pub negation_post: Vec<String>,
    pub uncertainty_pre: Vec<String>,
    pub uncertainty_post: Vec<String>,
    /// Hedges that reach both ways: "versus".
    #[serde(default)]
    pub uncertainty_both: Vec<String>,
    /// Words that end a cue's scope: "but", "however", "which".
    pub terminators: Vec<String>,
    /// Look like cues but are not: "no change", "not only"; matched to mask shorter cues inside them.
    #[serde(default)]
    pub pseudo: Vec<String>,
}

/// What a matched phrase means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Mention(Finding),
    Other,
    Ignore,
    Head(u16),
    Modifier(u16),
    NegPre,
    NegPost,
    UncPre,
    UncPost,
    UncBoth,
    Terminator,
    Pseudo,
}

impl Kind {
    pub fn is_cue(self) -> bool {
        matches!(
            self,
            Kind::NegPre | Kind::NegPost | Kind::UncPre | Kind::UncPost | Kind::UncBoth
        )
    }

    /// Short rule-id prefix for evidence.
    pub fn tag(self) -> &'static str {
        match self {
            Kind::NegPre => "neg-pre",
            Kind::NegPost => "neg-post",
            Kind::UncPre => "unc-pre",
            Kind::UncPost => "unc-post",
            Kind::UncBoth => "unc-both",
            Kind::Terminator => "stop",
            Kind::Pseudo => "pseudo",
            _ => "mention",
        }
    }
}

/// One pattern of the automaton.
#[derive(Debug, Clone)]
pub struct Pattern {
    pub kind: Kind,
    pub phrase: String,
    /// Ends with `*`: the match extends to the end of the word.
    pub prefix: bool,
}

/// A compound rule after compilation.
#[derive(Debug, Clone)]
pub struct CompiledCompound {
    pub finding: Finding,
    pub window: usize,
}

/// Rules compiled for matching.
pub struct Rules {
    pub(crate) ac: AhoCorasick,
    pub(crate) patterns: Vec<Pattern>,
    pub(crate) compounds: Vec<CompiledCompound>,
}

impl std::fmt::Debug for Rules {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rules")
            .field("patterns", &self.patterns.len())
            .finish()
    }
}

impl Rules {
    /// The compiled-in default rules.
    pub fn default_rules() -> Rules {
        Rules::from_toml(DEFAULT_RULES).expect("the compiled-in rules are valid")
    }

    pub fn from_toml(src: &str) -> Result<Rules, RulesError> {
        let file: RulesFile = toml::from_str(src)?;
        Rules::compile(&file)
    }

    pub fn compile(file: &RulesFile) -> Result<Rules, RulesError> {
        let mut patterns = Vec::new();
        let mut compounds = Vec::new();
        // A phrase in two lists would make the outcome depend on list order: refuse it.
        let mut seen: std::collections::HashMap<(String, bool), String> = Default::default();
        let mut add = |kind: Kind, list: &[String], ctx: &str| -> Result<(), RulesError> {
            for p in list {
                let p = p.trim();
                let (phrase, prefix) = match p.strip_suffix('*') {
                    Some(stem) => (stem, true),
                    None => (p, false),
                };
                if phrase.is_empty() {
                    return Err(RulesError::EmptyPhrase(ctx.to_string()));
                }
                let key = (phrase.to_ascii_lowercase(), prefix);
                if let Some(first) = seen.get(&key) {
                    if first != ctx || !matches!(kind, Kind::Mention(_) | Kind::Other) {
                        return Err(RulesError::Duplicate {
                            phrase: p.to_string(),
                            first: first.clone(),
                            second: ctx.to_string(),
                        });
                    }
                    continue;
                }
                seen.insert(key, ctx.to_string());
                patterns.push(Pattern {
                    kind,
                    phrase: phrase.to_ascii_lowercase(),
                    prefix,
                });
            }
            Ok(())
        };
        for (name, fr) in &file.findings {
            let finding: Finding = name
                .parse()
                .map_err(|_| RulesError::UnknownFinding(name.clone()))?;
            if finding == Finding::NoFinding {
                return Err(RulesError::UnknownFinding(name.clone()));
            }
            add(Kind::Mention(finding), &fr.phrases, name)?;
            add(Kind::Other, &fr.signs, name)?;
            for c in &fr.compound {
                let id = compounds.len() as u16;
                compounds.push(CompiledCompound {
                    finding,
                    window: c.window,
                });
                add(Kind::Head(id), &c.heads, name)?;
                add(Kind::Modifier(id), &c.modifiers, name)?;
            }
        }
        add(Kind::Other, &file.other.phrases, "other")?;
        add(Kind::Ignore, &file.ignore.phrases, "ignore")?;
        let t = &file.triggers;
        add(Kind::NegPre, &t.negation_pre, "negation_pre")?;
        add(Kind::NegPost, &t.negation_post, "negation_post")?;
        add(Kind::UncPre, &t.uncertainty_pre, "uncertainty_pre")?;
        add(Kind::UncPost, &t.uncertainty_post, "uncertainty_post")?;
        add(Kind::UncBoth, &t.uncertainty_both, "uncertainty_both")?;
        add(Kind::Terminator, &t.terminators, "terminators")?;
        add(Kind::Pseudo, &t.pseudo, "pseudo")?;
        let ac = AhoCorasickBuilder::new()
            .ascii_case_insensitive(true)
            .match_kind(MatchKind::Standard)
            .build(patterns.iter().map(|p| p.phrase.as_bytes()))
            .map_err(|e| RulesError::Automaton(e.to_string()))?;
        Ok(Rules {
            ac,
            patterns,
            compounds,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_rules_compile() {
        let r = Rules::default_rules();
        assert!(r.patterns.len() > 100);
        assert!(r
            .patterns
            .iter()
            .any(|p| p.kind == Kind::Mention(Finding::Hernia)));
    }

    #[test]
    fn a_phrase_in_two_lists_is_rejected() {
        let src = DEFAULT_RULES.replacen("\"but\",", "\"but\", \"no\",", 1);
        assert!(matches!(
            Rules::from_toml(&src),
            Err(RulesError::Duplicate { .. })
        ));
    }

    #[test]
    fn unknown_finding_is_rejected() {
        let src = DEFAULT_RULES.replacen("[findings.Atelectasis]", "[findings.Atelectasiss]", 1);
        assert!(matches!(
            Rules::from_toml(&src),
            Err(RulesError::UnknownFinding(_))
        ));
    }
}
