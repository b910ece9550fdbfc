//! Diagnostic codes as values. A [`Code`] is the stable id of one kind of finding with the
//! severities it is reported with and a one-line summary; every stage declares its own codes as
//! constants next to the code that reports them (this module for the reader, `resolve` and each
//! check file in the compiler, `backends::codes` for the backends), and the CLI's registry
//! chains those lists. A typo in a code is a compile error, not a new undocumented code; the
//! catalogue in spec.md is generated from the registry and tested against it.

use crate::diagnostic::Severity;
use std::fmt;

#[derive(Clone, Copy, Debug)]
pub struct Code {
    /// The stable id (`invalid-value`): never renamed, never reused.
    pub id: &'static str,
    /// The severities findings of this code are reported with, most common first.
    pub severities: &'static [Severity],
    /// What the code catches, in one line (SARIF rule text, spec.md's tables).
    pub summary: &'static str,
}

const ERROR: &[Severity] = &[Severity::Error];
const WARNING: &[Severity] = &[Severity::Warning];

impl Code {
    /// A code reported as an error.
    pub const fn error(id: &'static str, summary: &'static str) -> Code {
        Code { id, severities: ERROR, summary }
    }

    /// A code reported as a warning.
    pub const fn warning(id: &'static str, summary: &'static str) -> Code {
        Code { id, severities: WARNING, summary }
    }

    pub const fn new(id: &'static str, severities: &'static [Severity], summary: &'static str) -> Code {
        Code { id, severities, summary }
    }

    pub fn as_str(&self) -> &'static str {
        self.id
    }
}

impl PartialEq for Code {
    fn eq(&self, other: &Code) -> bool {
        self.id == other.id
    }
}

impl Eq for Code {}

impl PartialOrd for Code {
    fn partial_cmp(&self, other: &Code) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Code {
    fn cmp(&self, other: &Code) -> std::cmp::Ordering {
        self.id.cmp(other.id)
    }
}

impl std::hash::Hash for Code {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.id.hash(state);
    }
}

/// Tests and reporters compare codes with their ids.
impl PartialEq<&str> for Code {
    fn eq(&self, other: &&str) -> bool {
        self.id == *other
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.id)
    }
}

pub const SYNTAX: Code = Code::error("syntax", "the file is not valid KDL");
pub const INVALID_UTF8: Code = Code::error("invalid-utf8", "the file is not valid UTF-8");
pub const UNKNOWN_NODE: Code = Code::error("unknown-node", "a node keyword that is not allowed where it is written");
pub const UNKNOWN_PROPERTY: Code = Code::error("unknown-property", "a property the node does not have");
pub const UNEXPECTED_ARGUMENT: Code = Code::error("unexpected-argument", "an argument the node does not take");
pub const MISSING_ARGUMENT: Code = Code::error("missing-argument", "a required argument is missing");
pub const MISSING_PROPERTY: Code = Code::error("missing-property", "a required property is missing");
pub const DUPLICATE_PROPERTY: Code = Code::error("duplicate-property", "a property or setting is given twice");
pub const INVALID_VALUE: Code =
    Code::error("invalid-value", "a value of the wrong type, out of range, or not in its grammar");
pub const INCLUDE_FAILED: Code = Code::error("include-failed", "an included file cannot be read");
pub const INCLUDE_CYCLE: Code = Code::error("include-cycle", "a file includes itself, directly or through other files");
pub const INCLUDE_REFUSED: Code = Code::error(
    "include-refused",
    "an include names a file netcfg may not read (outside the include root, not a regular file, too large)",
);
/// Reported by the CLI's renderers, which show at most 1000 diagnostics per run.
pub const TOO_MANY_DIAGNOSTICS: Code = Code::new(
    "too-many-diagnostics",
    &[Severity::Error, Severity::Warning],
    "more diagnostics than netcfg shows in one run; the rest are counted by code",
);

/// Every code the reader reports.
pub const CODES: &[Code] = &[
    SYNTAX,
    INVALID_UTF8,
    UNKNOWN_NODE,
    UNKNOWN_PROPERTY,
    UNEXPECTED_ARGUMENT,
    MISSING_ARGUMENT,
    MISSING_PROPERTY,
    DUPLICATE_PROPERTY,
    INVALID_VALUE,
    INCLUDE_FAILED,
    INCLUDE_CYCLE,
    INCLUDE_REFUSED,
    TOO_MANY_DIAGNOSTICS,
];
