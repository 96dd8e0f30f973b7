//! A command the client runs in steps, each sent to the daemon as a command
//! of its own (`secret edit`: a `secret cat`, then a `secret write`).

use pkfs::daemon::client;
use pkfs::daemon::protocol::{CommandRequest, Request, Response};
use pkfs::Error;
use zeroize::Zeroizing;

use crate::cli::config::Config;
use crate::cli::remote::{append, test_env};

/// What the daemon answered to one command.
pub(crate) struct Answer {
    pub code: i32,
    pub stdout: Zeroizing<Vec<u8>>,
    pub stderr: Vec<u8>,
}

/// Have the daemon run `pkfs ARGS...` with `input` as its standard input, for
/// a command the client runs in steps (`secret edit`). `None`: no daemon runs
/// for this home.
pub(crate) fn daemon_call(
    cfg: &Config,
    args: &[&str],
    input: Option<&[u8]>,
) -> Result<Option<Answer>, Error> {
    let Some(stream) = client::connect(&cfg.home) else {
        return Ok(None);
    };
    let cwd = std::env::current_dir().map_err(|e| Error::io(".", e))?;
    let mut argv = vec!["pkfs".to_string()];
    argv.extend(args.iter().map(|a| a.to_string()));
    let mut req = CommandRequest::new(argv, cwd);
    req.input_follows = input.is_some();
    req.test_env = test_env();
    let mut out = Zeroizing::new(Vec::new());
    let resp = client::call_streaming(&stream, &Request::Command(req), input, &mut |p| {
        append(&mut out, p);
        Ok(())
    })?;
    match &resp {
        Response::Command {
            code,
            stdout,
            stderr,
        } => {
            append(&mut out, stdout);
            Ok(Some(Answer {
                code: *code,
                stdout: out,
                stderr: stderr.clone(),
            }))
        }
        Response::Error { code, message } => Ok(Some(Answer {
            code: *code,
            stdout: out,
            stderr: format!("pkfs: {message}\n").into_bytes(),
        })),
        other => Err(Error::Usage(format!(
            "unexpected answer from the pkfs daemon: {other:?}"
        ))),
    }
}
