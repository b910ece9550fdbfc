//! `netcfg fmt FILE...`: rewrite spec files in the canonical layout (see `canonical`).
//! Files that are not valid KDL are left untouched and their syntax errors reported.
//! `--check` writes nothing and lists the files that would change; `-` formats stdin to stdout.
//!
//! A file is read like `check` reads it (through a confined `FsLoader`: a regular file whose
//! real path is inside the directory it is named in, at most 16 MiB), so a committed symlink
//! can never make `fmt` rewrite a file outside the tree. A symlink inside the tree is followed
//! and stays a symlink. Writes are atomic: a temporary file next to the target, with the
//! target's permissions and owner, renamed over it.

use crate::canonical;
use crate::exit_status::ExitStatus;
use crate::load::{self, Input};
use crate::report::{human, Findings};
use netcfg_lang::{Diagnostic, LoadError, Loader, Parsed, SourceMap};
use std::path::{Path, PathBuf};

#[derive(clap::Args)]
pub struct Args {
    /// Spec files to format in place. `-` formats stdin to stdout.
    #[arg(required = true, value_name = "FILE")]
    files: Vec<PathBuf>,
    /// Write nothing; list the files that would change and exit with 1 if there are any.
    #[arg(long)]
    check: bool,
}

/// What happened to one file.
enum Outcome {
    Unchanged,
    Changed,
    /// Not valid KDL (or not UTF-8): not touched.
    Invalid,
    /// Could not be read, formatted or written: reported on stderr.
    Failed,
}

pub fn run(args: Args) -> ExitStatus {
    let inputs = match load::inputs(&args.files) {
        Ok(inputs) => inputs,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitStatus::Error;
        }
    };
    let outcomes: Vec<Outcome> = inputs.iter().map(|input| format_input(input, args.check)).collect();
    if outcomes.iter().any(|o| matches!(o, Outcome::Failed)) {
        ExitStatus::Error
    } else if outcomes.iter().any(|o| matches!(o, Outcome::Invalid) || (args.check && matches!(o, Outcome::Changed))) {
        ExitStatus::Failure
    } else {
        ExitStatus::Success
    }
}

/// The file to rewrite (its real path, inside the tree) and its bytes.
fn read_confined(input: &Input) -> Result<(Option<PathBuf>, Vec<u8>), String> {
    let Some(path) = input.path() else {
        return input.read().map(|b| (None, b)).map_err(|e| e.to_string());
    };
    let name = input.name();
    let mut loader =
        load::loader(std::slice::from_ref(input), &load::IncludeArgs::default()).map_err(|e| e.to_string())?;
    let failed = |e: LoadError| match e {
        LoadError::Refused(r) => format!("`{name}` {r}; not formatted"),
        LoadError::Io(e) => format!("cannot read `{name}`: {e}"),
    };
    let real = loader.resolve(path).map_err(failed)?;
    let bytes = loader.read(&real).map_err(failed)?;
    Ok((Some(real), bytes))
}

/// Replaces `target` with `text` atomically: a new file in the same directory, given the
/// target's permissions (and owner, when allowed), synced, then renamed over it.
fn write_atomically(target: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
    let dir = target.parent().unwrap_or(Path::new("."));
    let file_name = target.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let meta = std::fs::metadata(target)?;
    let tmp = dir.join(format!(".{file_name}.netcfg-fmt.{}.tmp", std::process::id()));
    let result = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&tmp)?;
        f.write_all(text.as_bytes())?;
        // Ownership first: changing the owner may clear set-id bits that the mode then restores.
        let _ = std::os::unix::fs::fchown(&f, Some(meta.uid()), Some(meta.gid()));
        f.set_permissions(meta.permissions())?;
        f.sync_all()?;
        std::fs::rename(&tmp, target)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

fn format_input(input: &Input, check: bool) -> Outcome {
    let name = input.name();
    let (real, bytes) = match read_confined(input) {
        Ok(read) => read,
        Err(e) => {
            eprintln!("error: {e}");
            return Outcome::Failed;
        }
    };
    let (sources, errors) = syntax_errors(input, &bytes);
    if !errors.is_empty() {
        let findings = Findings { diagnostics: &errors, sources: &sources, suppressed: &[] };
        eprint!("{}", human::render(&findings, &human::Style::stderr()));
        eprintln!("error: `{name}` is not valid KDL; left unchanged");
        return Outcome::Invalid;
    }
    let text = String::from_utf8_lossy(&bytes);
    let formatted = match canonical::format(&text) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("error: cannot format `{name}`: {e}");
            return Outcome::Failed;
        }
    };
    let changed = formatted.as_bytes() != bytes.as_slice();
    if check {
        if changed && super::write_stdout(&format!("would reformat: {name}\n")).is_err() {
            return Outcome::Failed;
        }
    } else {
        match input.path() {
            None => {
                if super::write_stdout(&formatted).is_err() {
                    return Outcome::Failed;
                }
            }
            Some(_) if changed => {
                let target = real.as_deref().expect("a file input has a real path");
                if let Err(e) = write_atomically(target, &formatted) {
                    eprintln!("error: cannot write `{name}`: {e}");
                    return Outcome::Failed;
                }
                eprintln!("reformatted {name}");
            }
            Some(_) => {}
        }
    }
    if changed {
        Outcome::Changed
    } else {
        Outcome::Unchanged
    }
}

/// The file's KDL syntax and UTF-8 errors (what stops formatting), from the same parser
/// `check` uses. Includes are not followed: each file is formatted on its own.
fn syntax_errors(input: &Input, bytes: &[u8]) -> (SourceMap, Vec<Diagnostic>) {
    struct NoIncludes;
    impl Loader for NoIncludes {
        fn resolve(&mut self, _: &Path) -> Result<PathBuf, LoadError> {
            Err(LoadError::Io(std::io::ErrorKind::Unsupported.into()))
        }
        fn read(&mut self, _: &Path) -> Result<Vec<u8>, LoadError> {
            Err(LoadError::Io(std::io::ErrorKind::Unsupported.into()))
        }
    }
    let mut parsed = Parsed::default();
    parsed.add_file(input.name(), input.path().map(Path::to_path_buf), bytes, &mut NoIncludes);
    let mut errors: Vec<Diagnostic> = parsed
        .diagnostics
        .into_iter()
        .filter(|d| [netcfg_lang::code::SYNTAX, netcfg_lang::code::INVALID_UTF8].contains(&d.code))
        .collect();
    netcfg_lang::diagnostic::sort_diagnostics(&mut errors);
    (parsed.sources, errors)
}
