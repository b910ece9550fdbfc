//! Reading the FILE arguments. Every command that takes specs (check, fmt, plan, apply,
//! verify) loads them here, so they all agree on what `-` means, how files are named in
//! diagnostics, and that several files form one fleet.

use netcfg_lang::{FsLoader, Parsed};
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
            Input::Stdin => {
                let mut bytes = Vec::new();
                std::io::stdin().read_to_end(&mut bytes).map(|_| bytes)
            }
            Input::File(p) if p.is_dir() => {
                Err(std::io::Error::new(std::io::ErrorKind::InvalidInput, "it is a directory"))
            }
            Input::File(p) => std::fs::read(p),
        };
        result.map_err(|error| LoadError::Io { name: self.name(), error })
    }
}

/// Why the inputs could not be read. Reported as one line on stderr, exit status 2.
#[derive(Debug)]
pub enum LoadError {
    Io { name: String, error: std::io::Error },
    StdinTwice,
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoadError::Io { name, error } => write!(f, "cannot read `{name}`: {error}"),
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

/// Reads every FILE argument (and the files they include) into one [`Parsed`]: several files
/// are one fleet, so cross-node checks see all of them. A file given twice is read once.
/// Unreadable inputs are all reported; with any of them there is no result, because checks on
/// a partial fleet would be wrong in both directions.
/// [`load`] for commands: unreadable inputs are reported on stderr (one line each) and end the
/// command with status 2.
pub fn load_or_report(args: &[PathBuf]) -> Result<Parsed, crate::exit_status::ExitStatus> {
    load(args).map_err(|errors| {
        for e in errors {
            eprintln!("error: {e}");
        }
        crate::exit_status::ExitStatus::Error
    })
}

pub fn load(args: &[PathBuf]) -> Result<Parsed, Vec<LoadError>> {
    let inputs = inputs(args).map_err(|e| vec![e])?;
    let mut read = Vec::new();
    let mut errors = Vec::new();
    for input in inputs {
        match input.read() {
            Ok(bytes) => read.push((input, bytes)),
            Err(e) => errors.push(e),
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    let mut parsed = Parsed::default();
    for (input, bytes) in read {
        if input.path().is_some_and(|p| parsed.sources.find_path(p).is_some()) {
            continue;
        }
        parsed.add_file(input.name(), input.path().map(Path::to_path_buf), &bytes, &mut FsLoader);
    }
    Ok(parsed)
}
