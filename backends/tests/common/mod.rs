//! The backends' tests reach the workspace's shared test support (`testkit/`) as `common`.

#![allow(unused_imports)]

pub use netcfg_testkit::*;
