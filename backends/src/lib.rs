//! netcfg's backends: everything that touches the kernel lives here, behind small interfaces.
//! `nftables`: IR -> typed ruleset -> nft script, applied atomically per namespace.
//! `netlink`: IR -> desired state; live state over rtnetlink; diff -> ordered `Plan`; apply with
//! rollback; verify.

pub mod codes;
pub mod netlink;
pub mod netns;
pub mod nftables;
pub mod plan;
