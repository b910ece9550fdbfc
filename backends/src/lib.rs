//! netcfg backends (nftables, netlink). Filled in by issues 3 and 4.
