//! Source files and byte spans. Every AST and IR item points back into a file through a [`Span`].

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

/// Index of a file in a [`SourceMap`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct FileId(pub u32);

/// A byte range in one source file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Span {
    pub file: FileId,
    pub start: u32,
    pub end: u32,
}

impl Span {
    pub fn new(file: FileId, start: usize, end: usize) -> Span {
        Span { file, start: start as u32, end: end.max(start) as u32 }
    }

    pub fn len(&self) -> usize {
        (self.end - self.start) as usize
    }

    pub fn is_empty(&self) -> bool {
        self.end == self.start
    }

    /// The sub-span `start..end` relative to this span's start, clamped to this span.
    pub fn sub(&self, start: usize, end: usize) -> Span {
        let s = (self.start as usize + start).min(self.end as usize);
        let e = (self.start as usize + end).min(self.end as usize);
        Span::new(self.file, s, e)
    }
}

/// A value together with the span of the text it was parsed from.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Spanned<T> {
    pub value: T,
    pub span: Span,
}

impl<T> Spanned<T> {
    pub fn new(value: T, span: Span) -> Spanned<T> {
        Spanned { value, span }
    }

    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Spanned<U> {
        Spanned { value: f(self.value), span: self.span }
    }

    pub fn as_ref(&self) -> Spanned<&T> {
        Spanned { value: &self.value, span: self.span }
    }
}

impl<T: fmt::Display> fmt::Display for Spanned<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.value.fmt(f)
    }
}

/// One loaded file: the name shown to users and its text.
#[derive(Clone, Debug)]
pub struct SourceFile {
    /// The path as the user wrote it (or `<stdin>`); shown in diagnostics.
    pub name: String,
    /// The path used to resolve `include`s relative to this file (`None` for stdin).
    pub path: Option<PathBuf>,
    pub text: Arc<str>,
    /// Built on the first position query, then shared by every later one.
    index: OnceLock<LineIndex>,
}

/// Where lines start, so a position costs a binary search instead of a scan from the start of
/// the file (which made rendering N diagnostics cost N times the file size).
#[derive(Clone, Debug)]
struct LineIndex {
    /// Byte offset of every line start (after each `\n`); the first is 0.
    line_starts: Vec<u32>,
    /// `None` for ASCII text (a column is a byte distance). Otherwise the number of characters
    /// before each `CHAR_BLOCK`-byte block (rounded down to a character boundary), so a column
    /// costs at most one block of counting, even on a 10 MB line.
    block_chars: Option<Vec<u32>>,
}

const CHAR_BLOCK: usize = 4096;

impl LineIndex {
    fn new(text: &str) -> LineIndex {
        let mut line_starts = vec![0u32];
        line_starts.extend(text.bytes().enumerate().filter(|(_, b)| *b == b'\n').map(|(i, _)| i as u32 + 1));
        let block_chars = (!text.is_ascii()).then(|| {
            let mut out = Vec::with_capacity(text.len() / CHAR_BLOCK + 1);
            let mut chars = 0u32;
            let mut prev = 0usize;
            for k in 0..=text.len() / CHAR_BLOCK {
                let b = floor_boundary(text, k * CHAR_BLOCK);
                chars += text[prev..b].chars().count() as u32;
                out.push(chars);
                prev = b;
            }
            out
        });
        LineIndex { line_starts, block_chars }
    }

    /// Characters in `text[..offset]` (`offset` on a character boundary).
    fn char_index(&self, text: &str, offset: usize) -> usize {
        match &self.block_chars {
            None => offset,
            Some(blocks) => {
                let k = offset / CHAR_BLOCK;
                let b = floor_boundary(text, k * CHAR_BLOCK);
                blocks[k] as usize + text[b..offset].chars().count()
            }
        }
    }
}

fn floor_boundary(text: &str, offset: usize) -> usize {
    let mut i = offset.min(text.len());
    while !text.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// Every file that took part in one compilation, addressed by [`FileId`].
#[derive(Clone, Debug, Default)]
pub struct SourceMap {
    files: Vec<SourceFile>,
}

impl SourceMap {
    pub fn add(&mut self, name: String, path: Option<PathBuf>, text: impl Into<Arc<str>>) -> FileId {
        self.files.push(SourceFile { name, path, text: text.into(), index: OnceLock::new() });
        FileId((self.files.len() - 1) as u32)
    }

    pub fn get(&self, id: FileId) -> &SourceFile {
        &self.files[id.0 as usize]
    }

    pub fn files(&self) -> impl Iterator<Item = (FileId, &SourceFile)> {
        self.files.iter().enumerate().map(|(i, f)| (FileId(i as u32), f))
    }

    pub fn find_path(&self, path: &Path) -> Option<FileId> {
        self.files.iter().position(|f| f.path.as_deref() == Some(path)).map(|i| FileId(i as u32))
    }

    /// The text covered by `span`.
    pub fn slice(&self, span: Span) -> &str {
        let text = &self.get(span.file).text;
        let end = (span.end as usize).min(text.len());
        let start = (span.start as usize).min(end);
        text.get(start..end).unwrap_or("")
    }

    /// 1-based line and column (in characters) of a byte offset (rounded down to a character
    /// boundary). Lines end at `\n`. Logarithmic in the file size after the first call.
    pub fn line_col(&self, file: FileId, offset: u32) -> (usize, usize) {
        let f = self.get(file);
        let text: &str = &f.text;
        let index = f.index.get_or_init(|| LineIndex::new(text));
        let offset = floor_boundary(text, offset as usize);
        let line = index.line_starts.partition_point(|s| *s as usize <= offset);
        let line_start = index.line_starts[line - 1] as usize;
        let col = index.char_index(text, offset) - index.char_index(text, line_start) + 1;
        (line, col)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The definition the index must agree with: count from the start of the file.
    fn scan(text: &str, offset: usize) -> (usize, usize) {
        let before = &text[..offset];
        let line_start = before.rfind('\n').map(|i| i + 1).unwrap_or(0);
        (before.matches('\n').count() + 1, before[line_start..].chars().count() + 1)
    }

    #[test]
    fn line_col_agrees_with_a_scan_from_the_start() {
        let long = "é".repeat(5000);
        for text in ["", "a\nbc\n\nd", "αβ\nγ x\n", &format!("x{long}y\nz{long}")] {
            let mut map = SourceMap::default();
            let f = map.add("t".into(), None, text);
            for offset in (0..=text.len()).filter(|o| text.is_char_boundary(*o)) {
                assert_eq!(map.line_col(f, offset as u32), scan(text, offset), "{text:?} at {offset}");
            }
        }
    }
}
