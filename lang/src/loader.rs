//! Where spec files come from, and which ones may be read at all.
//!
//! `netcfg check` runs on pull requests from anyone, so an `include` is untrusted input: it may
//! name `/etc/shadow`, `/proc/self/environ`, `/dev/zero`, a FIFO, or a committed symlink to any
//! of them. [`FsLoader`] reads a file only when it is a regular file whose real path (symlinks
//! resolved) lies inside one of its roots, and within the size caps. A refused file is never
//! opened for reading, so no byte of it can reach a diagnostic.
//!
//! This module must not parse: it hands bytes to `parse.rs`, which owns cycle detection and
//! read-once on the keys [`Loader::resolve`] returns.

use std::fmt;
use std::io::Read;
use std::path::{Component, Path, PathBuf};

/// The largest spec file netcfg reads (per file).
pub const MAX_FILE_BYTES: u64 = 16 << 20;
/// The most bytes netcfg reads over all the files of one run.
pub const MAX_TOTAL_BYTES: u64 = 64 << 20;
/// How deep `include`s may nest (a file including a file including …).
pub const MAX_INCLUDE_DEPTH: usize = 64;

/// Why a file is not read.
#[derive(Debug)]
pub enum LoadError {
    /// The file breaks a rule of [`FsLoader`]; it was not opened for reading.
    Refused(Refusal),
    /// Reading failed (it does not exist, no permission, …).
    Io(std::io::Error),
}

impl From<std::io::Error> for LoadError {
    fn from(e: std::io::Error) -> LoadError {
        LoadError::Io(e)
    }
}

/// The rule a file breaks. Displayed as a predicate: "`PATH` {refusal}".
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Its path leads outside every root (`..`, an absolute path).
    OutsideRoot { roots: Vec<PathBuf> },
    /// Its path is inside a root, but a symlink on the way leads outside.
    SymlinkOutsideRoot { roots: Vec<PathBuf> },
    /// A directory, device, FIFO or socket.
    NotRegular { kind: &'static str },
    /// Larger than [`MAX_FILE_BYTES`].
    TooLarge,
    /// Reading it would pass [`MAX_TOTAL_BYTES`] for the run.
    TotalTooLarge,
    /// Nested deeper than [`MAX_INCLUDE_DEPTH`].
    TooDeep,
}

impl Refusal {
    /// How to fix it, for a diagnostic's `help`.
    pub fn help(&self) -> &'static str {
        match self {
            Refusal::OutsideRoot { .. } | Refusal::SymlinkOutsideRoot { .. } => {
                "includes stay inside the directories of the files given on the command line; \
                 `--include-root DIR` sets the directory tree they may come from"
            }
            Refusal::NotRegular { .. } => "include a regular spec file",
            Refusal::TooLarge | Refusal::TotalTooLarge => "split the spec, or remove what it does not need",
            Refusal::TooDeep => "include the files from a common top-level file instead of from each other",
        }
    }
}

fn roots_text(roots: &[PathBuf]) -> String {
    let list: Vec<String> = roots.iter().map(|r| format!("`{}`", r.display())).collect();
    match list.len() {
        1 => format!("the include root {}", list[0]),
        _ => format!("the include roots ({})", list.join(", ")),
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::OutsideRoot { roots } => write!(f, "is outside {}", roots_text(roots)),
            Refusal::SymlinkOutsideRoot { roots } => {
                write!(f, "is a symlink to a file outside {}", roots_text(roots))
            }
            Refusal::NotRegular { kind } => write!(f, "is {kind}, not a regular file"),
            Refusal::TooLarge => write!(f, "is larger than {} MiB", MAX_FILE_BYTES >> 20),
            Refusal::TotalTooLarge => {
                write!(f, "would take the spec files past {} MiB in total", MAX_TOTAL_BYTES >> 20)
            }
            Refusal::TooDeep => write!(f, "is included more than {MAX_INCLUDE_DEPTH} files deep"),
        }
    }
}

impl fmt::Display for LoadError {
    /// A predicate on the path: "`PATH` {self}" or "cannot read `PATH`: {self}".
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoadError::Refused(r) => r.fmt(f),
            LoadError::Io(e) => {
                let text = e.to_string();
                let mut c = text.chars();
                match c.next() {
                    Some(first) => write!(f, "{}{}", first.to_lowercase(), c.as_str()),
                    None => Ok(()),
                }
            }
        }
    }
}

/// Where spec files come from: the file system in the CLI, a map in tests.
pub trait Loader {
    /// The identity of the file `path` names (for [`FsLoader`], its canonical path), or why it
    /// may not be read. A file is read once per identity, and an include of an identity that is
    /// being read is a cycle, however the path was spelled.
    fn resolve(&mut self, path: &Path) -> Result<PathBuf, LoadError>;
    /// The bytes of the file [`Loader::resolve`] returned `key` for.
    fn read(&mut self, key: &Path) -> Result<Vec<u8>, LoadError>;
}

/// The file system, confined to include roots: regular files whose real path lies under a
/// root, at most [`MAX_FILE_BYTES`] each and [`MAX_TOTAL_BYTES`] together.
#[derive(Debug)]
pub struct FsLoader {
    /// Each root as given (made absolute, `.`/`..` removed) and as its canonical path.
    roots: Vec<(PathBuf, PathBuf)>,
    total: u64,
}

impl FsLoader {
    /// Confined to the directory trees of `roots`. A root that cannot be resolved is an error.
    pub fn new(roots: impl IntoIterator<Item = PathBuf>) -> std::io::Result<FsLoader> {
        let mut out: Vec<(PathBuf, PathBuf)> = Vec::new();
        for root in roots {
            let canonical = std::fs::canonicalize(&root)?;
            if !canonical.is_dir() {
                return Err(std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a directory"));
            }
            let lexical = absolute_lexical(&root)?;
            if !out.iter().any(|(_, c)| *c == canonical) {
                out.push((lexical, canonical));
            }
        }
        Ok(FsLoader { roots: out, total: 0 })
    }

    /// Confined to the directories the given files are in (the working directory for a file
    /// named without one).
    pub fn for_files<'a>(files: impl IntoIterator<Item = &'a Path>) -> std::io::Result<FsLoader> {
        FsLoader::new(files.into_iter().map(|f| match f.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        }))
    }

    /// The canonical roots.
    pub fn roots(&self) -> Vec<PathBuf> {
        self.roots.iter().map(|(_, c)| c.clone()).collect()
    }

    fn refuse(&self, r: Refusal) -> LoadError {
        LoadError::Refused(r)
    }
}

impl Loader for FsLoader {
    fn resolve(&mut self, path: &Path) -> Result<PathBuf, LoadError> {
        // The path as written first, before touching the file system: whether a file outside
        // the roots exists is none of the spec's business.
        let lexical = absolute_lexical(path)?;
        if !self.roots.iter().any(|(l, c)| lexical.starts_with(l) || lexical.starts_with(c)) {
            return Err(self.refuse(Refusal::OutsideRoot { roots: self.roots() }));
        }
        let canonical = std::fs::canonicalize(path)?;
        if !self.roots.iter().any(|(_, c)| canonical.starts_with(c)) {
            return Err(self.refuse(Refusal::SymlinkOutsideRoot { roots: self.roots() }));
        }
        // The type before any open: opening a FIFO blocks, reading a device never ends.
        let meta = std::fs::metadata(&canonical)?;
        if let Some(kind) = not_regular(&meta.file_type()) {
            return Err(self.refuse(Refusal::NotRegular { kind }));
        }
        if meta.len() > MAX_FILE_BYTES {
            return Err(self.refuse(Refusal::TooLarge));
        }
        Ok(canonical)
    }

    fn read(&mut self, key: &Path) -> Result<Vec<u8>, LoadError> {
        use std::os::unix::fs::OpenOptionsExt;
        // O_NOFOLLOW: `key` is canonical, so a symlink here was put there since `resolve`.
        // O_NONBLOCK: a FIFO swapped in since then cannot block the open.
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open(key)?;
        let meta = file.metadata()?;
        if let Some(kind) = not_regular(&meta.file_type()) {
            return Err(self.refuse(Refusal::NotRegular { kind }));
        }
        // `/proc` files say they are empty: the caps hold on what is read, not on what is said.
        let room = MAX_TOTAL_BYTES.saturating_sub(self.total);
        let limit = MAX_FILE_BYTES.min(room);
        let mut bytes = Vec::with_capacity(meta.len().min(limit) as usize);
        file.take(limit + 1).read_to_end(&mut bytes)?;
        if bytes.len() as u64 > limit {
            return Err(self.refuse(if limit < MAX_FILE_BYTES { Refusal::TotalTooLarge } else { Refusal::TooLarge }));
        }
        self.total += bytes.len() as u64;
        Ok(bytes)
    }
}

/// What a file is when it is not a regular file.
fn not_regular(t: &std::fs::FileType) -> Option<&'static str> {
    use std::os::unix::fs::FileTypeExt;
    if t.is_file() {
        None
    } else if t.is_dir() {
        Some("a directory")
    } else if t.is_fifo() {
        Some("a FIFO")
    } else if t.is_char_device() {
        Some("a character device")
    } else if t.is_block_device() {
        Some("a block device")
    } else if t.is_socket() {
        Some("a socket")
    } else {
        Some("not a file")
    }
}

/// `path` made absolute against the working directory, with `.` and `..` removed by their
/// text (symlinks are not looked at).
pub fn absolute_lexical(path: &Path) -> std::io::Result<PathBuf> {
    let joined = if path.is_absolute() { path.to_path_buf() } else { std::env::current_dir()?.join(path) };
    Ok(normalize(&joined))
}

/// `.` and `..` removed by their text; `..` above the root stays at the root.
pub fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() && !path.is_absolute() {
                    out.push("..");
                }
            }
            other => out.push(other.as_os_str()),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_removes_dots_by_text() {
        assert_eq!(normalize(Path::new("/a/b/../c/./d")), PathBuf::from("/a/c/d"));
        assert_eq!(normalize(Path::new("/../../etc")), PathBuf::from("/etc"));
    }

    #[test]
    fn refusals_read_as_predicates() {
        let r = Refusal::OutsideRoot { roots: vec![PathBuf::from("/repo")] };
        assert_eq!(r.to_string(), "is outside the include root `/repo`");
        assert_eq!(Refusal::NotRegular { kind: "a FIFO" }.to_string(), "is a FIFO, not a regular file");
    }
}
