//! Finding and layering the configuration (docs/interface.md §1, §2): the file lookup order, the
//! built-in demo, the layers defaults < TOML file < `ESMD__` environment variables (merged by the
//! `config` crate), and [`ConfigError`]. Reading values into types is `read`'s job and checking
//! them `validate`'s; this file only wires the steps together.

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::path::{Path, PathBuf};

use config::{File, FileFormat};

use super::env::Env;
use super::{raw, read, validate, Config};

/// Where to look for the configuration, and what to treat as the environment.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// `--config FILE`; a relative path is relative to `cwd`.
    pub config_path: Option<PathBuf>,
    /// The environment; `None` means the process environment.
    pub env: Option<HashMap<String, String>>,
    /// The working directory; `None` means the process working directory.
    pub cwd: Option<PathBuf>,
}

/// A loaded, validated configuration and where it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Loaded {
    /// The configuration.
    pub config: Config,
    /// The file used; `None` when no file was found and the built-in defaults (with the demo
    /// queue, function and mapping) were used.
    pub source: Option<PathBuf>,
}

/// Why the configuration could not be loaded. Every variant means exit code 78 (EX_CONFIG).
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The configuration was read but breaks rules: one line per problem, each naming its key.
    #[error("{}", problems.join("\n"))]
    Invalid {
        /// Every problem found, e.g. `mappings.resize.batch_size: 20000 is above the maximum of
        /// 10000 for a standard queue`.
        problems: Vec<String>,
    },
    /// `--config` or `ESMD_CONFIG` names a file that does not exist.
    #[error("configuration file {} does not exist", path.display())]
    MissingFile {
        /// The path as resolved against the working directory.
        path: PathBuf,
    },
    /// The file exists but could not be read.
    #[error("failed to read configuration file {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// The file is not valid TOML.
    #[error("failed to parse {origin}: {message}")]
    Parse {
        /// What was being parsed: the file's path, or "the built-in defaults".
        origin: String,
        /// The parser's message, with line and column.
        message: String,
    },
}

/// The file looked for in the working directory when neither `--config` nor `ESMD_CONFIG` is set.
const DEFAULT_FILE: &str = "config/esmd.toml";

/// Loads the configuration: finds the file (`config_path`, else `$ESMD_CONFIG`, else
/// `<cwd>/config/esmd.toml`, else none), layers the built-in defaults, the file and the
/// `ESMD__SECTION__KEY` variables, and validates the result. Without a file the built-in demo
/// (queue `default`, function `log`, mapping `default`) is added to the defaults.
///
/// Relative `storage.path` values are resolved against `$STATE_DIRECTORY` when it is set, else
/// against the working directory.
///
/// # Errors
///
/// [`ConfigError::MissingFile`] when an explicitly named file does not exist (never a silent
/// fall-back), [`ConfigError::Read`] and [`ConfigError::Parse`] for unreadable or malformed
/// files, and [`ConfigError::Invalid`] listing every problem, each naming its full key.
pub fn load(opts: &LoadOptions) -> Result<Loaded, ConfigError> {
    let mut problems = Vec::new();
    let env = Env::capture(opts.env.as_ref(), &mut problems);
    let cwd = match &opts.cwd {
        Some(cwd) => cwd.clone(),
        None => std::env::current_dir().map_err(|source| ConfigError::Read {
            path: PathBuf::from("."),
            source,
        })?,
    };
    let source = find_file(opts.config_path.as_deref(), &env, &cwd);
    let text = match &source {
        Some(path) => Some(read(path)?),
        None => None,
    };
    let tree = layer(source.as_deref(), text.as_deref(), &env, &mut problems)?;
    let (raw, skipped) = read::read(tree, &mut problems);
    let mut config = validate::validate(raw, &skipped, &storage_base(&env, &cwd), &mut problems);
    if problems.is_empty() {
        read_token_file(&mut config, &cwd, &mut problems);
        super::postgres::read_password(&mut config, &cwd, &env, &mut problems);
    }
    if problems.is_empty() {
        Ok(Loaded { config, source })
    } else {
        // Sorted, so that the problems of one key or entry stand together.
        problems.sort();
        Err(ConfigError::Invalid { problems })
    }
}

/// The lookup order of docs/interface.md §1. An explicit path is returned whether or not it exists,
/// so that reading it reports it missing.
fn find_file(explicit: Option<&Path>, env: &Env, cwd: &Path) -> Option<PathBuf> {
    if let Some(path) = explicit {
        return Some(cwd.join(path));
    }
    if let Some(path) = env.get("ESMD_CONFIG") {
        return Some(cwd.join(path));
    }
    let default = cwd.join(DEFAULT_FILE);
    default.exists().then_some(default)
}

fn read(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|source| match source.kind() {
        io::ErrorKind::NotFound => ConfigError::MissingFile {
            path: path.to_owned(),
        },
        _ => ConfigError::Read {
            path: path.to_owned(),
            source,
        },
    })
}

/// Merges the layers into one tree of sections. Defaults proper are serde's (see `raw`); the
/// bottom layer here is the demo, present only when there is no file.
fn layer(
    path: Option<&Path>,
    text: Option<&str>,
    env: &Env,
    problems: &mut Vec<String>,
) -> Result<BTreeMap<String, config::Value>, ConfigError> {
    let origin = match path {
        Some(path) => path.display().to_string(),
        None => "the built-in defaults".to_owned(),
    };
    let base = File::from_str(text.unwrap_or(raw::default::DEMO), FileFormat::Toml);
    let secret_in_file = text.is_some_and(|t| t.contains("auth_token"));
    let parse_error = |e: config::ConfigError| ConfigError::Parse {
        origin: origin.clone(),
        message: if secret_in_file {
            without_source_lines(&e.to_string())
        } else {
            e.to_string()
        },
    };
    config::Config::builder()
        .add_source(base)
        .add_source(env.overrides(problems))
        .build()
        .map_err(parse_error)?
        .try_deserialize()
        .map_err(parse_error)
}

/// A TOML parse error without the quoted source line: the line may hold `server.auth_token`,
/// and parse errors end up in logs (a refused SIGHUP reload). Line and column stay.
fn without_source_lines(message: &str) -> String {
    let gutter = |line: &str| {
        let rest = line
            .trim_start()
            .trim_start_matches(|c: char| c.is_ascii_digit());
        rest.trim_start().starts_with('|')
    };
    let kept: Vec<&str> = message.lines().filter(|l| !gutter(l)).collect();
    format!(
        "{} (the source line is not shown: the file sets server.auth_token)",
        kept.join("\n")
    )
}

/// Reads `server.auth_token_file` (resolved against `cwd`) into `server.auth_token`, trimmed of
/// surrounding whitespace (a trailing newline); an unreadable or blank file is a problem naming
/// the key and the path, never the contents.
fn read_token_file(config: &mut Config, cwd: &Path, problems: &mut Vec<String>) {
    let Some(file) = &config.server.auth_token_file else {
        return;
    };
    let path = cwd.join(file);
    match std::fs::read_to_string(&path) {
        Ok(text) if text.trim().is_empty() => problems.push(format!(
            "server.auth_token_file: {} is empty",
            path.display()
        )),
        Ok(text) => {
            config.server.auth_token = Some(text.trim().to_owned());
            config.server.auth_token_file = Some(path);
        }
        Err(e) => problems.push(format!(
            "server.auth_token_file: cannot read {}: {e}",
            path.display()
        )),
    }
}

/// Where relative storage paths start: the first entry of `$STATE_DIRECTORY` (systemd sets it
/// from `StateDirectory=`, colon-separated when there are several), else the working directory.
fn storage_base(env: &Env, cwd: &Path) -> PathBuf {
    match env
        .get("STATE_DIRECTORY")
        .and_then(|dirs| dirs.split(':').find(|d| !d.is_empty()))
    {
        Some(dir) => cwd.join(dir),
        None => cwd.to_owned(),
    }
}
