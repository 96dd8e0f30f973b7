//! Running the `pkfs` binary: the [`Cmd`] builder, the captured [`Output`] of a
//! run and its assertions, and the environment scrubbing shared with git runs.

use std::ffi::{OsStr, OsString};
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use serde_json::Value;

use super::{root_key, ExitCode, BIN};

/// What one run of the binary produced.
#[derive(Debug, Clone)]
pub struct Output {
    pub args: Vec<String>,
    pub code: i32,
    pub stdout: Vec<u8>,
    pub stderr: String,
}

impl Output {
    pub fn out(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.stdout).unwrap_or_else(|e| {
            panic!("{:?}: stdout is not JSON ({e}):\n{}", self.args, self.out())
        })
    }

    fn describe(&self) -> String {
        format!(
            "pkfs {:?}\n  exit code: {}\n  stdout: {:?}\n  stderr: {:?}",
            self.args,
            self.code,
            truncate(&self.out(), 2000),
            self.stderr
        )
    }

    /// Assert success.
    pub fn success(self) -> Self {
        assert_eq!(self.code, 0, "expected success\n{}", self.describe());
        self
    }

    /// Assert failure with exactly `code`, and one error line `pkfs: ...` on stderr.
    pub fn failure(self, code: ExitCode) -> Self {
        assert_eq!(
            self.code,
            code as i32,
            "expected exit code {} ({code:?})\n{}",
            code as i32,
            self.describe()
        );
        assert_one_error_line(&self);
        self
    }

    /// Assert that stderr (lowercased) mentions `needle` (lowercased).
    pub fn stderr_has(self, needle: &str) -> Self {
        assert!(
            self.stderr.to_lowercase().contains(&needle.to_lowercase()),
            "stderr should mention {needle:?}\n{}",
            self.describe()
        );
        self
    }

    pub fn stdout_empty(self) -> Self {
        assert!(
            self.stdout.is_empty(),
            "stdout must be empty\n{}",
            self.describe()
        );
        self
    }
}

fn truncate(s: &str, n: usize) -> String {
    if s.len() <= n {
        s.to_string()
    } else {
        let mut end = n;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}... ({} bytes)", &s[..end], s.len())
    }
}

/// An error is exactly one line on stderr, starting with `pkfs: `.
pub fn assert_one_error_line(o: &Output) {
    let lines: Vec<&str> = o.stderr.lines().collect();
    assert!(
        lines.len() == 1 && o.stderr.ends_with('\n') && lines[0].starts_with("pkfs: "),
        "stderr must be exactly one line starting with 'pkfs: '\n{}",
        o.describe()
    );
    assert!(
        lines[0].len() > "pkfs: ".len() + 5,
        "the error line says nothing\n{}",
        o.describe()
    );
}

/// A command line being built.
pub struct Cmd {
    pub(super) args: Vec<OsString>,
    pub(super) home: Option<PathBuf>,
    pub(super) passfile: Option<PathBuf>,
    pub(super) stdin: Option<Vec<u8>>,
    pub(super) env: Vec<(OsString, Option<OsString>)>,
    pub(super) scratch: PathBuf,
}

impl Cmd {
    pub fn arg(mut self, a: impl AsRef<OsStr>) -> Self {
        self.args.push(a.as_ref().to_owned());
        self
    }

    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.args
            .extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }

    /// Do not pass `--home` (the test supplies it another way).
    pub fn no_home(mut self) -> Self {
        self.home = None;
        self
    }

    /// Do not pass `--passfile` (the test supplies the passphrase another way).
    pub fn no_passfile(mut self) -> Self {
        self.passfile = None;
        self
    }

    pub fn passfile(mut self, p: impl Into<PathBuf>) -> Self {
        self.passfile = Some(p.into());
        self
    }

    pub fn stdin(mut self, data: impl Into<Vec<u8>>) -> Self {
        self.stdin = Some(data.into());
        self
    }

    pub fn env(mut self, k: impl AsRef<OsStr>, v: impl AsRef<OsStr>) -> Self {
        self.env
            .push((k.as_ref().to_owned(), Some(v.as_ref().to_owned())));
        self
    }

    pub fn env_remove(mut self, k: impl AsRef<OsStr>) -> Self {
        self.env.push((k.as_ref().to_owned(), None));
        self
    }

    pub fn run(self) -> Output {
        let mut argv: Vec<OsString> = Vec::new();
        if let Some(h) = &self.home {
            argv.push("--home".into());
            argv.push(h.into());
        }
        if let Some(p) = &self.passfile {
            argv.push("--passfile".into());
            argv.push(p.into());
        }
        argv.extend(self.args.iter().cloned());
        let mut c = Command::new(BIN);
        c.args(&argv);
        clean_env(&mut c);
        c.env("PKFS_TEST_ONLY_FAST_KDF", "1")
            .env("PKFS_TEST_ONLY_ROOT_KEY", root_key(0))
            // Whatever a test forgets to pass, it never reaches a real home.
            .env("XDG_DATA_HOME", self.scratch.join("xdg"))
            // A held home lock fails at once, as the suites expect (a test of
            // the wait sets its own limit).
            .env("PKFS_LOCK_TIMEOUT", "0")
            .current_dir(&self.scratch);
        for (k, v) in &self.env {
            match v {
                Some(v) => c.env(k, v),
                None => c.env_remove(k),
            };
        }
        c.stdout(Stdio::piped()).stderr(Stdio::piped());
        c.stdin(if self.stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        });
        let mut child = c.spawn().expect("spawning pkfs");
        let writer = self.stdin.map(|data| {
            let mut w = child.stdin.take().unwrap();
            std::thread::spawn(move || {
                // The command may exit before reading everything (an error case).
                let _ = w.write_all(&data);
            })
        });
        let out = child.wait_with_output().expect("waiting for pkfs");
        if let Some(w) = writer {
            w.join().unwrap();
        }
        let code = match out.status.code() {
            Some(c) => c,
            None => panic!("pkfs {argv:?} died by a signal: {:?}", out.status),
        };
        Output {
            args: argv
                .iter()
                .map(|a| a.to_string_lossy().into_owned())
                .collect(),
            code,
            stdout: out.stdout,
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

/// Remove every inherited `PKFS_*` (and `GIT_*`) variable.
pub fn clean_env(c: &mut Command) {
    for (k, _) in std::env::vars_os() {
        let s = k.to_string_lossy();
        if s.starts_with("PKFS_") || s.starts_with("GIT_") {
            c.env_remove(&k);
        }
    }
}
