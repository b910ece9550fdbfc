//! netcfg's backends: everything that touches the kernel lives here, behind small interfaces.
//! `nftables`: IR -> typed ruleset -> nft script, applied atomically per namespace.

pub mod netns;
pub mod nftables;
pub mod plan;
