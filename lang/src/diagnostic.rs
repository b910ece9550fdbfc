//! Diagnostics: what every stage returns instead of printing. Rendering belongs to the CLI.

use crate::code::Code;
use crate::source::Span;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    Error,
    Warning,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        }
    }
}

/// A span with a short message saying what is there.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Label {
    pub span: Span,
    pub message: String,
}

/// One finding. `code` is stable and documented in spec.md; `message` states the problem,
/// `help` names the fix (never the other way round).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    pub code: Code,
    pub severity: Severity,
    pub message: String,
    pub primary: Label,
    pub secondary: Vec<Label>,
    pub help: Option<String>,
}

impl Diagnostic {
    pub fn error(code: Code, span: Span, message: impl Into<String>) -> Diagnostic {
        Diagnostic::new(Severity::Error, code, span, message)
    }

    pub fn warning(code: Code, span: Span, message: impl Into<String>) -> Diagnostic {
        Diagnostic::new(Severity::Warning, code, span, message)
    }

    fn new(severity: Severity, code: Code, span: Span, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            code,
            severity,
            message: message.into(),
            primary: Label { span, message: String::new() },
            secondary: Vec::new(),
            help: None,
        }
    }

    /// The label text under the primary span.
    pub fn with_label(mut self, message: impl Into<String>) -> Diagnostic {
        self.primary.message = message.into();
        self
    }

    /// Another place involved in the finding ("first defined here").
    pub fn with_secondary(mut self, span: Span, message: impl Into<String>) -> Diagnostic {
        self.secondary.push(Label { span, message: message.into() });
        self
    }

    pub fn with_help(mut self, help: impl Into<String>) -> Diagnostic {
        self.help = Some(help.into());
        self
    }

    /// Sort key for deterministic output: by file, position, then code.
    pub fn sort_key(&self) -> (Span, &'static str, &str) {
        (self.primary.span, self.code.id, &self.message)
    }
}

/// Sorts diagnostics into their canonical order and removes exact duplicates.
pub fn sort_diagnostics(diags: &mut Vec<Diagnostic>) {
    diags.sort_by(|a, b| a.sort_key().cmp(&b.sort_key()));
    diags.dedup();
}

/// Names longer than this (in bytes) get no suggestion. Every name and keyword of the language
/// is at most 64 bytes, so a longer one is no typo of any; the bound keeps "did you mean" linear
/// in the input on adversarial specs (a 10 MB unknown name).
pub const MAX_SUGGESTED_LEN: usize = 256;

/// "did you mean" support: the candidate closest to `name`, if it is close enough to be a typo.
///
/// The distance is `strsim::osa_distance` (optimal string alignment: insertions, deletions,
/// substitutions and adjacent transpositions such as `mut` -> `mtu` each cost one), which keeps
/// two rows instead of the whole table. It is computed only for candidates whose length is
/// within the limit of `name`'s, since the distance is at least the difference in length; so a
/// long name against short candidates costs a length comparison each.
pub fn closest<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    if name.len() > MAX_SUGGESTED_LEN {
        return None;
    }
    let n = name.chars().count();
    let mut best: Option<(usize, &str)> = None;
    for c in candidates {
        if c.len() > MAX_SUGGESTED_LEN {
            continue;
        }
        let m = c.chars().count();
        let limit = (n.max(m) / 3).max(1);
        if n.abs_diff(m) > limit {
            continue;
        }
        let d = strsim::osa_distance(name, c);
        if d <= limit && best.is_none_or(|(bd, bc)| (d, c) < (bd, bc)) {
            best = Some((d, c));
        }
    }
    best.map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::closest;

    #[test]
    fn closest_finds_typos_only() {
        assert_eq!(closest("ecs-brdge", ["ecs-bridge", "eth0"]), Some("ecs-bridge"));
        assert_eq!(closest("eth1", ["eth0", "eth14"]), Some("eth0"));
        assert_eq!(closest("wan", ["ecs-bridge", "cni0"]), None);
        assert_eq!(closest("mut", ["mac", "mtu"]), Some("mtu"));
        assert_eq!(closest("brdige", ["bridge"]), Some("bridge"));
    }
}

#[cfg(test)]
mod bounds {
    use super::{closest, MAX_SUGGESTED_LEN};

    #[test]
    fn an_overlong_name_gets_no_suggestion_and_costs_no_table() {
        // The old n x m table would take 10M x 8 x 8 bytes here; this returns at once.
        let huge = "n".repeat(10 << 20);
        assert_eq!(closest(&huge, ["node", "template", "include"]), None);
        let huge_typo = format!("{}x", "a".repeat(MAX_SUGGESTED_LEN));
        let candidate = "a".repeat(MAX_SUGGESTED_LEN);
        assert_eq!(closest(&huge_typo, [candidate.as_str()]), None, "over the bound: no suggestion");
        let long_typo = format!("{}x", "a".repeat(MAX_SUGGESTED_LEN - 2));
        let long = "a".repeat(MAX_SUGGESTED_LEN - 1);
        assert_eq!(closest(&long_typo, [long.as_str()]), Some(long.as_str()), "within the bound: suggested");
    }

    /// The length filter never drops a candidate the full distance would have accepted.
    #[test]
    fn the_length_filter_agrees_with_the_full_distance() {
        let words = ["", "a", "ab", "abc", "abcd", "abcdef", "abcdefghi", "bridge", "brdige", "veth", "vxlan", "mtu"];
        for a in words {
            let full = words
                .iter()
                .map(|c| (strsim::osa_distance(a, c), *c))
                .filter(|(d, c)| *d <= (a.chars().count().max(c.chars().count()) / 3).max(1))
                .min()
                .map(|(_, c)| c);
            assert_eq!(closest(a, words), full, "{a:?}");
        }
    }
}
