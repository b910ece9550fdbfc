//! netcfg's spec language: KDL text to a spanned, typed AST.
//!
//! Invariants: parsing never fails (it returns the AST it could build and diagnostics);
//! every value with a grammar is parsed here, once, into a typed value with its span; nothing
//! here touches the kernel or prints.

pub mod ast;
pub mod code;
pub mod diagnostic;
pub mod kdl;
pub mod links;
pub mod loader;
pub mod parse;
pub mod rare;
mod reader;
pub mod source;
pub mod suppress;
pub mod template;
pub mod value;
pub mod vocab;

pub use code::Code;
pub use diagnostic::{Diagnostic, Label, Severity};
pub use loader::{FsLoader, LoadError, Loader, Refusal};
pub use parse::{parse_str, Parsed};
pub use source::{FileId, SourceMap, Span, Spanned};
