//! Diagnostics: what every stage returns instead of printing. Rendering belongs to the CLI.

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

/// Every code the parser reports, with a one-line summary (the CLI lists them as SARIF rules).
/// `duplicate-name` is listed with the resolver's codes (`netcfg_compiler::resolve::CODES`).
pub const CODES: &[(&str, &str)] = &[
    ("syntax", "the file is not valid KDL"),
    ("invalid-utf8", "the file is not valid UTF-8"),
    ("unknown-node", "a node keyword that is not allowed where it is written"),
    ("unknown-property", "a property the node does not have"),
    ("unexpected-argument", "an argument the node does not take"),
    ("missing-argument", "a required argument is missing"),
    ("missing-property", "a required property is missing"),
    ("duplicate-property", "a property is given twice on one node"),
    ("invalid-value", "a value of the wrong type, out of range, or not in its grammar"),
    ("include-failed", "an included file cannot be read"),
    ("include-cycle", "a file includes itself, directly or through other files"),
    ("too-many-diagnostics", "more diagnostics than netcfg shows in one run; the rest are counted by code"),
    (
        "include-refused",
        "an include names a file netcfg may not read (outside the include root, not a regular file, too large)",
    ),
];

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
    pub code: &'static str,
    pub severity: Severity,
    pub message: String,
    pub primary: Label,
    pub secondary: Vec<Label>,
    pub help: Option<String>,
}

impl Diagnostic {
    pub fn error(code: &'static str, span: Span, message: impl Into<String>) -> Diagnostic {
        Diagnostic::new(Severity::Error, code, span, message)
    }

    pub fn warning(code: &'static str, span: Span, message: impl Into<String>) -> Diagnostic {
        Diagnostic::new(Severity::Warning, code, span, message)
    }

    fn new(severity: Severity, code: &'static str, span: Span, message: impl Into<String>) -> Diagnostic {
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
        (self.primary.span, self.code, &self.message)
    }
}

/// Sorts diagnostics into their canonical order and removes exact duplicates.
pub fn sort_diagnostics(diags: &mut Vec<Diagnostic>) {
    diags.sort_by(|a, b| a.sort_key().cmp(&b.sort_key()));
    diags.dedup();
}

/// "did you mean" support: the candidate closest to `name`, if it is close enough to be a typo.
pub fn closest<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let mut best: Option<(usize, &str)> = None;
    for c in candidates {
        let d = edit_distance(name, c);
        let limit = (name.chars().count().max(c.chars().count()) / 3).max(1);
        if d <= limit && best.is_none_or(|(bd, bc)| (d, c) < (bd, bc)) {
            best = Some((d, c));
        }
    }
    best.map(|(_, c)| c)
}

/// Optimal-string-alignment distance: insertions, deletions, substitutions and adjacent
/// transpositions (`mut` -> `mtu`) each cost one.
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            d[i][j] = (d[i - 1][j] + 1).min(d[i][j - 1] + 1).min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                d[i][j] = d[i][j].min(d[i - 2][j - 2] + 1);
            }
        }
    }
    d[a.len()][b.len()]
}

#[cfg(test)]
mod tests {
    use super::closest;

    #[test]
    fn closest_finds_typos_only() {
        assert_eq!(closest("ecs-brdge", ["ecs-bridge", "eth0"]), Some("ecs-bridge"));
        assert_eq!(closest("eth1", ["eth0", "eth14"]), Some("eth0"));
        assert_eq!(closest("wan", ["ecs-bridge", "cni0"]), None);
    }
}
