//! What to start for a `subprocess` agent: the program resolved to an absolute path when the
//! blueprint compiles, and the command every attempt (or keep-alive child) is started with.

use std::ffi::OsStr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use tokio::process::Command;

use super::SubprocessSpec;

/// A resolved program with its arguments, environment and working directory.
#[derive(Clone, Debug)]
pub struct Launch {
    /// Absolute, so starting a child never searches `PATH`.
    pub program: PathBuf,
    /// Its arguments.
    pub args: Vec<String>,
    /// Extra environment variables.
    pub env: Vec<(String, String)>,
    /// The working directory, resolved.
    pub cwd: Option<PathBuf>,
}

impl Launch {
    /// Resolves `spec.program`: a bare name is looked up on the `PATH` the child will get (the
    /// spec's `env.PATH`, else the host's); a path is taken relative to `base_dir` (the
    /// blueprint's directory) or, without one, to the current directory. So is `cwd`, which
    /// must exist already when it is absolute or the blueprint's directory is known: a missing
    /// one is then a compile error rather than a failure of every attempt.
    pub fn resolve(spec: &SubprocessSpec, base_dir: Option<&Path>) -> Result<Launch, String> {
        let path_var = match spec.env.iter().find(|(k, _)| k == "PATH") {
            Some((_, v)) => Some(OsStr::new(v).to_os_string()),
            None => std::env::var_os("PATH"),
        };
        let program = resolve_program(&spec.program, path_var.as_deref(), base_dir)?;
        let cwd = spec.cwd.as_ref().map(|c| relative_to(Path::new(c), base_dir));
        if let (Some(given), Some(dir)) = (&spec.cwd, &cwd)
            && (dir.is_absolute() || base_dir.is_some())
            && let Some(why) = missing_dir(dir)
        {
            return Err(format!("cwd '{given}' {why} ({})", absolute(dir).display()));
        }
        Ok(Launch { program, args: spec.args.clone(), env: spec.env.clone(), cwd })
    }

    /// Why starting the program failed, naming the working directory when that is what is
    /// missing (the OS reports a missing directory exactly like a missing program).
    pub fn start_error(&self, error: &std::io::Error) -> String {
        if let Some(dir) = &self.cwd
            && let Some(why) = missing_dir(dir)
        {
            return format!("cannot start {}: its working directory {} {why}", self.name(), absolute(dir).display());
        }
        format!("cannot start {}: {error}", self.name())
    }

    /// A command for the program in a process group of its own, stdout and stderr piped, stdin
    /// piped or null. [`GroupChild::spawn`](super::process::GroupChild::spawn) starts it.
    pub fn command(&self, stdin: bool) -> Command {
        let mut command = Command::new(&self.program);
        command
            .args(&self.args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .process_group(0)
            .stdin(if stdin { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(cwd) = &self.cwd {
            command.current_dir(cwd);
        }
        command
    }

    /// How error messages name the program.
    pub fn name(&self) -> std::path::Display<'_> {
        self.program.display()
    }
}

/// The absolute path of `program`, or why there is none.
pub fn resolve_program(program: &str, path_var: Option<&OsStr>, base_dir: Option<&Path>) -> Result<PathBuf, String> {
    if program.contains('/') {
        let path = relative_to(Path::new(program), base_dir);
        let path = absolute(&path);
        return match check_executable(&path) {
            Ok(()) => Ok(path),
            Err(why) => Err(format!("program '{program}' {why} ({})", path.display())),
        };
    }
    let dirs = path_var.map(|p| std::env::split_paths(p).collect::<Vec<_>>()).unwrap_or_default();
    for dir in dirs {
        // An empty PATH entry means the current directory, as in a shell.
        let dir = if dir.as_os_str().is_empty() { PathBuf::from(".") } else { dir };
        let candidate = absolute(&dir.join(program));
        if check_executable(&candidate).is_ok() {
            return Ok(candidate);
        }
    }
    Err(format!("program '{program}' was not found on PATH"))
}

fn relative_to(path: &Path, base_dir: Option<&Path>) -> PathBuf {
    match base_dir {
        Some(base) if path.is_relative() => base.join(path),
        _ => path.to_path_buf(),
    }
}

fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

/// Why `dir` cannot be a working directory, if it cannot.
fn missing_dir(dir: &Path) -> Option<&'static str> {
    match std::fs::metadata(dir) {
        Err(_) => Some("does not exist"),
        Ok(meta) if !meta.is_dir() => Some("is not a directory"),
        Ok(_) => None,
    }
}

fn check_executable(path: &Path) -> Result<(), &'static str> {
    let meta = std::fs::metadata(path).map_err(|_| "does not exist")?;
    if !meta.is_file() {
        return Err("is not a file");
    }
    if meta.permissions().mode() & 0o111 == 0 {
        return Err("is not executable");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bare_name_is_found_on_path() {
        let found = resolve_program("sh", Some(OsStr::new("/nonexistent:/bin:/usr/bin")), None).unwrap();
        assert!(found.is_absolute() && found.ends_with("sh"), "{}", found.display());
        let err = resolve_program("no-such-program-xyz", Some(OsStr::new("/bin:/usr/bin")), None).unwrap_err();
        assert_eq!(err, "program 'no-such-program-xyz' was not found on PATH");
        let err = resolve_program("sh", None, None).unwrap_err();
        assert!(err.contains("not found on PATH"), "{err}");
    }

    #[test]
    fn a_path_is_checked_and_taken_relative_to_the_blueprint() {
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("agent.sh");
        std::fs::write(&script, "#!/bin/sh\n").unwrap();
        let err = resolve_program("./agent.sh", None, Some(dir.path())).unwrap_err();
        assert!(err.starts_with("program './agent.sh' is not executable"), "{err}");
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        let found = resolve_program("./agent.sh", None, Some(dir.path())).unwrap();
        assert!(found.is_absolute() && found.ends_with("agent.sh"));
        let err = resolve_program("./missing.sh", None, Some(dir.path())).unwrap_err();
        assert!(err.starts_with("program './missing.sh' does not exist"), "{err}");
        let err = resolve_program("/tmp", None, None).unwrap_err();
        assert!(err.contains("is not a file"), "{err}");
    }

    fn spec(cwd: &str) -> SubprocessSpec {
        let json = serde_json::json!({"program": "sh", "cwd": cwd}).to_string();
        SubprocessSpec::parse(&crate::value::from_json(&json).unwrap()).unwrap()
    }

    #[test]
    fn a_missing_cwd_is_named_when_the_blueprint_compiles_or_the_child_starts() {
        let dir = tempfile::tempdir().unwrap();
        let err = Launch::resolve(&spec("work"), Some(dir.path())).unwrap_err();
        let expected = format!("cwd 'work' does not exist ({})", dir.path().join("work").display());
        assert_eq!(err, expected);
        let err = Launch::resolve(&spec("/no/such/dir"), None).unwrap_err();
        assert_eq!(err, "cwd '/no/such/dir' does not exist (/no/such/dir)");
        // Relative to a current directory that may change before the child starts: checked then.
        let launch = Launch::resolve(&spec("no-such-dir-here"), None).unwrap();
        let e = std::io::Error::from(std::io::ErrorKind::NotFound);
        let message = launch.start_error(&e);
        assert!(message.ends_with("/no-such-dir-here does not exist"), "{message}");
        assert!(message.starts_with("cannot start /") && message.contains("its working directory /"), "{message}");
    }
}
