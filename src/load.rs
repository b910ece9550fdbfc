//! Reading the FILE arguments. Every command that takes specs (check, fmt, plan, apply,
//! verify) loads them here, so they all agree on what `-` means, how files are named in
//! diagnostics, and that several files form one fleet.

use netcfg_lang::loader::MAX_FILE_BYTES;
use netcfg_lang::{FsLoader, Loader, Parsed, Refusal};
use std::collections::HashSet;
use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};

/// The name stdin gets in diagnostics.
pub const STDIN_NAME: &str = "<stdin>";

/// One FILE argument: a path, or `-` for stdin.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Input {
    Stdin,
    File(PathBuf),
}

impl Input {
    pub fn from_arg(arg: &Path) -> Input {
        if arg == Path::new("-") {
            Input::Stdin
        } else {
            Input::File(arg.to_path_buf())
        }
    }

    /// The name shown to users: the path as given on the command line, or `<stdin>`.
    pub fn name(&self) -> String {
        match self {
            Input::Stdin => STDIN_NAME.to_string(),
            Input::File(p) => p.display().to_string(),
        }
    }

    pub fn path(&self) -> Option<&Path> {
        match self {
            Input::Stdin => None,
            Input::File(p) => Some(p),
        }
    }

    pub fn read(&self) -> Result<Vec<u8>, LoadError> {
        let result = match self {
            Input::Stdin => read_stdin(),
            Input::File(p) if p.is_dir() => {
                Err(std::io::Error::new(std::io::ErrorKind::InvalidInput, "it is a directory"))
            }
            Input::File(p) => std::fs::read(p),
        };
        result.map_err(|error| LoadError::Io { name: self.name(), error })
    }
}

/// `--include-root`: shared by every command that reads specs.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct IncludeArgs {
    /// The directory tree every spec file must lie in (files given and included, symlinks
    /// resolved); may be repeated. Default: the directories of the files given (the working
    /// directory for stdin).
    #[arg(long = "include-root", value_name = "DIR")]
    pub include_roots: Vec<PathBuf>,
}

/// Why the inputs could not be read. Reported as one line on stderr, exit status 2.
#[derive(Debug)]
pub enum LoadError {
    Io {
        name: String,
        error: std::io::Error,
    },
    /// The file breaks a confinement rule; it was not read.
    Refused {
        name: String,
        refusal: Refusal,
    },
    /// An `--include-root` (or a file's directory) that cannot be used as a root.
    Root {
        dir: PathBuf,
        error: std::io::Error,
    },
    StdinTwice,
}

impl LoadError {
    fn from_loader(name: String, e: netcfg_lang::LoadError) -> LoadError {
        match e {
            netcfg_lang::LoadError::Refused(refusal) => LoadError::Refused { name, refusal },
            netcfg_lang::LoadError::Io(error) => LoadError::Io { name, error },
        }
    }
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoadError::Io { name, error } => write!(f, "cannot read `{name}`: {error}"),
            LoadError::Refused { name, refusal } => write!(f, "`{name}` {refusal}; not read"),
            LoadError::Root { dir, error } => write!(f, "cannot use `{}` as an include root: {error}", dir.display()),
            LoadError::StdinTwice => write!(f, "`-` (stdin) can be given only once"),
        }
    }
}

/// The FILE arguments as inputs; `-` may appear once.
pub fn inputs(args: &[PathBuf]) -> Result<Vec<Input>, LoadError> {
    let inputs: Vec<Input> = args.iter().map(|a| Input::from_arg(a)).collect();
    if inputs.iter().filter(|i| **i == Input::Stdin).count() > 1 {
        return Err(LoadError::StdinTwice);
    }
    Ok(inputs)
}

/// [`load`] for commands: unreadable inputs are reported on stderr (one line each) and end the
/// command with status 2.
pub fn load_or_report(args: &[PathBuf], includes: &IncludeArgs) -> Result<Parsed, crate::exit_status::ExitStatus> {
    load(args, includes).map_err(|errors| {
        for e in errors {
            eprintln!("error: {e}");
        }
        crate::exit_status::ExitStatus::Error
    })
}

/// Loads and compiles the spec for a command that works on what resolved (`graph`, `trace`):
/// load errors end the command; errors in the spec are counted in a note on stderr, naming
/// `what` the command makes of the rest.
pub fn compile_noting_errors(
    args: &[PathBuf],
    includes: &IncludeArgs,
    what: &str,
) -> Result<(Parsed, netcfg_compiler::Compiled), crate::exit_status::ExitStatus> {
    let parsed = load_or_report(args, includes)?;
    let compiled = netcfg_compiler::compile_after(&parsed.spec, &parsed.diagnostics);
    let errors = parsed
        .diagnostics
        .iter()
        .chain(&compiled.diagnostics)
        .filter(|d| d.severity == netcfg_lang::Severity::Error)
        .count();
    if errors > 0 {
        eprintln!("note: the spec has {errors} errors (`netcfg check` shows them); {what} uses what resolved");
    }
    Ok((parsed, compiled))
}

/// The loader every command reads specs through: confined to `--include-root`, or to the
/// directories of the files given (the working directory for stdin).
pub fn loader(inputs: &[Input], includes: &IncludeArgs) -> Result<FsLoader, LoadError> {
    let roots: Vec<PathBuf> = if includes.include_roots.is_empty() {
        inputs
            .iter()
            .map(|i| match i.path().and_then(Path::parent) {
                Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
                _ => PathBuf::from("."),
            })
            .collect()
    } else {
        includes.include_roots.clone()
    };
    for dir in &roots {
        if let Err(error) = FsLoader::new([dir.clone()]) {
            return Err(LoadError::Root { dir: dir.clone(), error });
        }
    }
    FsLoader::new(roots.clone()).map_err(|error| LoadError::Root { dir: roots[0].clone(), error })
}

/// Reads every FILE argument (and the files they include) into one [`Parsed`]: several files
/// are one fleet, so cross-node checks see all of them. A file given twice is read once.
/// Unreadable inputs are all reported; with any of them there is no result, because checks on
/// a partial fleet would be wrong in both directions. Every file, given or included, is read
/// through one confined [`FsLoader`] (see `lang/src/loader.rs`).
pub fn load(args: &[PathBuf], includes: &IncludeArgs) -> Result<Parsed, Vec<LoadError>> {
    let inputs = inputs(args).map_err(|e| vec![e])?;
    let mut loader = loader(&inputs, includes).map_err(|e| vec![e])?;
    let mut read = Vec::new();
    let mut errors = Vec::new();
    let mut seen = HashSet::new();
    for input in inputs {
        let bytes = match &input {
            Input::Stdin => read_stdin().map_err(|error| LoadError::Io { name: input.name(), error }),
            Input::File(p) => match loader.resolve(p) {
                Ok(key) if !seen.insert(key.clone()) => continue,
                Ok(key) => loader.read(&key).map_err(|e| LoadError::from_loader(input.name(), e)),
                Err(e) => Err(LoadError::from_loader(input.name(), e)),
            },
        };
        match bytes {
            Ok(bytes) => read.push((input, bytes)),
            Err(e) => errors.push(e),
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    let mut parsed = Parsed::default();
    for (input, bytes) in read {
        if input.path().and_then(|p| loader.resolve(p).ok()).is_some_and(|key| parsed.has_read(&key)) {
            // Already read as an include of an earlier file.
            continue;
        }
        parsed.add_file_owned(input.name(), input.path().map(Path::to_path_buf), bytes, &mut loader);
    }
    Ok(parsed)
}

/// Stdin, up to the per-file cap.
fn read_stdin() -> std::io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    std::io::stdin().lock().take(MAX_FILE_BYTES + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("it is larger than {} MiB", MAX_FILE_BYTES >> 20),
        ));
    }
    Ok(bytes)
}
