//! `pkfs unseal` and `pkfs seal`: clients of the mount daemon's unseal
//! service (the protocol is in docs/UNSEAL.md).
//!
//! `unseal` checks the share itself first (its checksum, its form), asks the
//! daemon which node it serves, and sends the share only to a daemon of the
//! node the share names: a process that took the socket name of another
//! node's daemon never sees a share.

use pkfs::daemon::unseal::{self, UnsealRequest, UnsealResponse};
use pkfs::vault::slots::share::{node_prefix, Share};
use pkfs::{Error, ExitCode};
use serde_json::json;

use std::path::Path;
use std::sync::{mpsc, Arc};
use std::time::Duration;

use pkfs::daemon::mount::{self, Ctl, MountPlan};
use pkfs::fs::gate::Gate;

use super::config::Config;
use super::{pass, Out};

fn connect(cfg: &Config) -> Result<std::os::unix::net::UnixStream, Error> {
    unseal::connect(&cfg.home).map_err(|e| {
        Error::Mount(format!(
            "no mount of {} answers on its unseal socket ({e})",
            cfg.home.display()
        ))
    })
}

fn call(s: &std::os::unix::net::UnixStream, req: &UnsealRequest) -> Result<UnsealResponse, Error> {
    unseal::call(s, req).map_err(|e| Error::Mount(format!("unseal socket: {e}")))
}

/// A failed response as the error of its exit code.
fn failure(r: &UnsealResponse) -> Error {
    let msg = r.message.clone().unwrap_or_else(|| "refused".into());
    match r.code {
        Some(c) if c == ExitCode::BadShare as i32 => Error::BadShare(msg),
        Some(c) if c == ExitCode::WrongPassphrase as i32 => Error::WrongKey(msg),
        Some(c) if c == ExitCode::Sealed as i32 => Error::Sealed(msg),
        Some(c) if c == ExitCode::Usage as i32 => Error::Usage(msg),
        _ => Error::Mount(msg),
    }
}

pub fn unseal(cfg: &Config) -> anyhow::Result<()> {
    let out = Out::new(cfg);
    let line = match cfg.share_files.as_slice() {
        [] => pass::first_line_of_stdin()?,
        [f] => pass::from_file(&cfg.local_path(f))?,
        _ => {
            return Err(Error::Usage(
                "`pkfs unseal` takes one share (one --share-file, or standard input)".into(),
            )
            .into())
        }
    };
    let text = std::str::from_utf8(&line).map_err(|_| Error::BadShare("not a share".into()))?;
    let share = Share::parse(text)?;
    let s = connect(cfg)?;
    let hello = call(&s, &UnsealRequest::Status)?;
    if !hello.ok {
        return Err(failure(&hello).into());
    }
    if node_prefix(&hello.node_id) != share.node {
        return Err(Error::BadShare(format!(
            "this share is for node {}, but the mount of {} serves node {}; nothing was sent",
            share.node,
            cfg.home.display(),
            node_prefix(&hello.node_id)
        ))
        .into());
    }
    drop(share);
    let r = call(
        &s,
        &UnsealRequest::Share {
            share: text.trim().to_string(),
        },
    )?;
    if out.json() {
        out.emit(
            &json!({"ok": r.ok, "sealed": r.sealed, "have": r.have, "need": r.need,
            "duplicate": r.duplicate, "message": r.message}),
        )?;
    }
    if !r.ok {
        return Err(failure(&r).into());
    }
    if !out.json() {
        if r.duplicate && !cfg.quiet {
            super::remote::write_err(
                b"pkfs: this share was already given; it is not counted twice\n",
            );
        }
        if r.sealed {
            out.data(format!("{}/{} shares", r.have, r.need));
        } else {
            out.data("unsealed");
        }
    }
    Ok(())
}

pub fn seal(cfg: &Config) -> anyhow::Result<()> {
    let s = connect(cfg)?;
    let r = call(&s, &UnsealRequest::Seal)?;
    if !r.ok {
        return Err(failure(&r).into());
    }
    Out::new(cfg).say("Sealed: every vault committed, every key dropped.");
    Ok(())
}

/// The sealing options of a mount.
pub(super) struct SealOpts {
    pub idle: Option<Duration>,
    pub group: Option<u32>,
}

/// The unseal service of the mount behind `gate`.
pub(super) fn unsealer(
    cfg: &Config,
    plan: &MountPlan,
    gate: Arc<Gate>,
    tx: mpsc::Sender<Ctl>,
    group: Option<u32>,
) -> anyhow::Result<Arc<unseal::Unsealer>> {
    let home = cfg.home.clone();
    let fs = plan.fs.clone();
    let (g1, g2) = (gate.clone(), gate);
    let tx = parking_lot::Mutex::new(tx);
    let hooks = unseal::Hooks {
        open: Box::new(move |keyed| {
            let node = pkfs::vault::Node::unlock(&home, Box::new(keyed))?;
            let core = mount::open_core(node, &fs)?;
            g1.open(core);
            Ok(())
        }),
        sealed: Box::new(move || g2.is_sealed()),
        seal: Box::new(move || {
            let (rtx, rrx) = mpsc::channel();
            tx.lock()
                .send(Ctl::Seal(rtx))
                .map_err(|_| "the daemon is shutting down".to_string())?;
            rrx.recv()
                .map_err(|_| "the daemon is shutting down".to_string())?
        }),
    };
    let node_id = super::cmd_key::node_id_of(&cfg.home)?;
    Ok(unseal::Unsealer::new(&cfg.home, node_id, group, hooks))
}

/// The status of a sealed mount.
pub(super) fn sealed_json(mountpoint: &Path, (have, need): (usize, usize)) -> serde_json::Value {
    json!({
        "mounted": true,
        "sealed": true,
        "mountpoint": mountpoint,
        "pid": std::process::id(),
        "shares_given": have,
        "shares_needed": need,
        "state": format!("sealed, {have}/{need} shares"),
    })
}
