//! The codes the backends report (not produced by `netcfg check`), and the registry of every
//! code netcfg can report: the reader's, resolution's, each check's and these.

use netcfg_lang::{Code, Severity};

pub const NFT_UNREPRESENTABLE: Code =
    Code::error("nft-unrepresentable", "a name or value that cannot appear in an nft rule as written");
pub const NFT_REJECTED: Code = Code::error("nft-rejected", "nft refused the ruleset generated from this spec text");
pub const NFT_FAILED: Code = Code::error("nft-failed", "nft could not be run");
pub const MISSING_LINK: Code = Code::error("missing-link", "an `ethernet` link of the spec does not exist on the node");
pub const FOREIGN_LINK: Code =
    Code::error("foreign-link", "a link netcfg did not create holds a name the spec wants for one it creates");
pub const UNREACHABLE_PEER: Code =
    Code::error("unreachable-peer", "netcfg would delete a veth whose peer sits in a namespace it does not read");
pub const MISSING_KERNEL_FEATURE: Code = Code::error(
    "missing-kernel-feature",
    "the running kernel neither has built in nor can load a module the spec needs",
);
pub const APPLY_FAILED: Code = Code::new(
    "apply-failed",
    &[Severity::Error],
    "an operation failed during apply, or the node still differed from the spec afterwards",
);

/// Every code the backends report.
pub const CODES: &[Code] = &[
    NFT_UNREPRESENTABLE,
    NFT_REJECTED,
    NFT_FAILED,
    MISSING_LINK,
    FOREIGN_LINK,
    UNREACHABLE_PEER,
    MISSING_KERNEL_FEATURE,
    APPLY_FAILED,
];

/// Where a code comes from: what runs to report it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Stage {
    /// Reading the KDL into the AST.
    Read,
    /// Resolving names, templates and settings into the IR.
    Resolve,
    /// A check over the network model.
    Check,
    /// Compiling to nftables or planning and applying on a node.
    Backend,
}

impl Stage {
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Read => "read",
            Stage::Resolve => "resolve",
            Stage::Check => "check",
            Stage::Backend => "backend",
        }
    }
}

/// Every code netcfg can report, with its stage, sorted by id. Ids are unique (tested).
pub fn registry() -> Vec<(Stage, Code)> {
    // Suppression comments are read with the spec text, so their codes belong to `Read`.
    let mut all: Vec<(Stage, Code)> = netcfg_lang::code::CODES
        .iter()
        .map(|c| (Stage::Read, *c))
        .chain(netcfg_lang::suppress::CODES.iter().map(|c| (Stage::Read, *c)))
        .chain(netcfg_compiler::resolve::CODES.iter().map(|c| (Stage::Resolve, *c)))
        .chain(netcfg_compiler::checks::CHECKS.iter().map(|c| (Stage::Check, c.code)))
        .chain(CODES.iter().map(|c| (Stage::Backend, *c)))
        .collect();
    all.sort_by_key(|(_, c)| c.id);
    all
}

#[cfg(test)]
mod tests {
    #[test]
    fn ids_are_unique_and_kebab_case() {
        let all = super::registry();
        for w in all.windows(2) {
            assert_ne!(w[0].1.id, w[1].1.id, "code registered twice");
        }
        for (_, c) in &all {
            assert!(c.id.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'), "{}", c.id);
            assert!(!c.severities.is_empty() && !c.summary.is_empty(), "{}", c.id);
        }
    }
}
