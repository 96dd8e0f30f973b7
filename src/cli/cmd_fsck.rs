//! `pkfs fsck [VAULT...]` and `pkfs fsck --restore VAULT`.
//!
//! Human output: one line per finding, `VAULT:PATH: KIND: explanation`
//! (`VAULT: KIND: explanation` for the repository and the vault record), one
//! per `--restore` action (`VAULT:PATH: ACTION: explanation`), uncommitted
//! changes as `VAULT:PATH: uncommitted change`, and a summary per vault (not
//! with -q). With --json: one object `{vaults, findings, uncommitted,
//! actions}`. Exit code 12 when any finding is left.

use pkfs::store::fsck::{Action, Finding, Fsck, Report};
use pkfs::Error;
use serde::Serialize;
use serde_json::json;

use super::config::Config;
use super::{progress, shown_name, unlock, Out};

#[derive(Serialize)]
struct VaultFinding<'a> {
    vault: &'a str,
    #[serde(flatten)]
    finding: &'a Finding,
}

#[derive(Serialize)]
struct VaultAction<'a> {
    vault: &'a str,
    #[serde(flatten)]
    action: &'a Action,
}

/// One checked vault.
struct Checked {
    vault: String,
    report: Report,
    actions: Vec<Action>,
    /// History no key of the vault can read any more (dropped generations):
    /// how many commits, and which generations. Not a problem: reported.
    unreadable: Option<(usize, Vec<u32>)>,
}

fn where_(vault: &str, path: &str) -> String {
    if path.is_empty() {
        shown_name(vault.as_bytes())
    } else {
        format!(
            "{}:{}",
            shown_name(vault.as_bytes()),
            shown_name(path.as_bytes())
        )
    }
}

pub fn run(cfg: &Config, names: &[String], restore: bool) -> anyhow::Result<()> {
    let out = Out::new(cfg);
    if restore && names.len() != 1 {
        return Err(Error::Usage("`pkfs fsck --restore` takes exactly one vault".into()).into());
    }
    let node = unlock(cfg)?;
    let names = node.names_or_all(names);
    let mut checked = Vec::new();
    for name in names {
        let mut c = Checked {
            vault: name.clone(),
            report: Report::default(),
            actions: Vec::new(),
            unreadable: None,
        };
        // Opening unwraps every key of the record and finds its directory.
        let vault = match node.open_vault(&name) {
            Ok(v) => v,
            Err(e @ Error::VaultUndefined(_)) => return Err(e.into()),
            Err(e) => {
                let detail = format!("the vault cannot be opened: {e}");
                c.report
                    .findings
                    .push(Finding::new("", "bad-vault", detail));
                checked.push(c);
                continue;
            }
        };
        let fsck = Fsck::new(vault.tree(), vault.history(), vault.dir());
        let bar = progress::counter(cfg, &format!("Checking {name}"));
        let mut tick = || bar.inc(1);
        if restore {
            let (actions, report) = fsck.restore(&mut tick)?;
            c.actions = actions;
            c.report = report;
        } else {
            c.report = fsck.check(&mut tick)?;
        }
        bar.finish_and_clear();
        c.unreadable = pkfs::vault::keychain::unreadable_history(&vault);
        checked.push(c);
    }
    let total: usize = checked.iter().map(|c| c.report.findings.len()).sum();
    if out.json() {
        emit_json(&out, &checked)?;
    } else {
        for c in &checked {
            print_human(&out, c);
        }
    }
    if total > 0 {
        return Err(Error::FsckFindings(total).into());
    }
    Ok(())
}

fn print_human(out: &Out, c: &Checked) {
    let v = &c.vault;
    for a in &c.actions {
        out.data(format!(
            "{}: {}: {}",
            where_(v, &a.path),
            a.action,
            a.detail
        ));
    }
    for f in &c.report.findings {
        out.data(format!(
            "{}: {}: {}",
            where_(v, &f.path),
            f.kind_shown(),
            f.detail
        ));
    }
    for p in &c.report.uncommitted {
        out.say(format!("{}: uncommitted change", where_(v, p)));
    }
    for r in &c.report.repaired {
        out.say(format!(
            "{}: repaired at open: {r}",
            shown_name(v.as_bytes())
        ));
    }
    if let Some((n, gens)) = &c.unreadable {
        out.data(format!(
            "{}: history: {n} commit(s) hold files under dropped key generation(s) {}; \
             those versions can no longer be read (not a problem: `pkfs vault drop-key` \
             destroyed the key)",
            shown_name(v.as_bytes()),
            join(gens)
        ));
    }
    let r = &c.report;
    let seen = format!(
        "{} backing file(s), {} director(y/ies), {} commit(s), {} git object(s) checked",
        r.files, r.directories, r.commits, r.objects
    );
    match r.findings.len() {
        0 => out.say(format!("{}: clean; {seen}", shown_name(v.as_bytes()))),
        n => out.say(format!(
            "{}: {n} problem(s); {seen}",
            shown_name(v.as_bytes())
        )),
    }
}

fn emit_json(out: &Out, checked: &[Checked]) -> anyhow::Result<()> {
    let vaults: Vec<_> = checked
        .iter()
        .map(|c| {
            json!({
                "vault": c.vault,
                "clean": c.report.findings.is_empty(),
                "files": c.report.files,
                "directories": c.report.directories,
                "commits": c.report.commits,
                "objects": c.report.objects,
                "repaired": c.report.repaired,
                "unreadable_history": c.unreadable.as_ref().map(|(n, g)| {
                    json!({"commits": n, "generations": g})
                }),
            })
        })
        .collect();
    let mut findings = Vec::new();
    let mut uncommitted = Vec::new();
    let mut actions = Vec::new();
    for c in checked {
        let vault = c.vault.as_str();
        findings.extend(
            c.report
                .findings
                .iter()
                .map(|finding| VaultFinding { vault, finding }),
        );
        uncommitted.extend(
            c.report
                .uncommitted
                .iter()
                .map(|p| json!({"vault": vault, "path": p})),
        );
        actions.extend(c.actions.iter().map(|action| VaultAction { vault, action }));
    }
    out.emit(&json!({
        "vaults": vaults,
        "findings": findings,
        "uncommitted": uncommitted,
        "actions": actions,
    }))
}

fn join(gens: &[u32]) -> String {
    gens.iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}
