//! The mount helper form: `pkfs HOME MOUNTPOINT [-o opt,...]`, which is how
//! mount(8) runs a FUSE file system (`mount -t fuse.pkfs HOME DIR -o ...`, or an
//! fstab line), rewritten into `pkfs --home HOME ... mount MOUNTPOINT ...`.
//!
//! `-o` options: `passfile=FILE` becomes `--passfile FILE`; `allow_other`,
//! `ro`/`rw` and the kernel flags pkfs knows pass on to `mount`; the generic
//! options mount(8) adds (`dev`, `suid`, `exec`, `auto`, `_netdev`, ...) and
//! `fsname=`/`subtype=` are ignored there.

use std::ffi::{OsStr, OsString};

use clap::CommandFactory;

use super::Cli;

/// Is `word` a subcommand (or alias) of pkfs?
fn is_subcommand(word: &OsStr) -> bool {
    let Some(w) = word.to_str() else {
        return false;
    };
    w == "help"
        || Cli::command()
            .get_subcommands()
            .any(|c| c.get_name() == w || c.get_all_aliases().any(|a| a == w))
}

/// The argv to parse: the helper form rewritten, anything else unchanged.
pub fn rewrite(argv: Vec<OsString>) -> Vec<OsString> {
    let helper_form = argv.len() >= 3
        && !argv[1].as_encoded_bytes().starts_with(b"-")
        && !is_subcommand(&argv[1])
        && !argv[2].as_encoded_bytes().starts_with(b"-");
    if !helper_form {
        return argv;
    }
    let mut out: Vec<OsString> = vec![argv[0].clone(), "--home".into(), argv[1].clone()];
    let mut mount_args: Vec<OsString> = vec!["mount".into(), argv[2].clone()];
    let mut opts: Vec<String> = Vec::new();
    let mut rest = argv[3..].iter();
    while let Some(a) = rest.next() {
        if a == "-o" {
            if let Some(list) = rest.next() {
                opts.extend(list.to_string_lossy().split(',').map(str::to_string));
            }
        } else if let Some(list) = a.to_str().and_then(|s| s.strip_prefix("-o")) {
            opts.extend(list.split(',').map(str::to_string));
        } else {
            // -f, -v and the like go to `mount` as they are.
            mount_args.push(a.clone());
        }
    }
    let mut kept = Vec::new();
    for o in opts {
        if let Some(f) = o.strip_prefix("passfile=") {
            out.push("--passfile".into());
            out.push(f.into());
        } else if o.starts_with("fsname=") || o.starts_with("subtype=") {
        } else if !o.is_empty() {
            kept.push(o);
        }
    }
    if !kept.is_empty() {
        mount_args.push("-o".into());
        mount_args.push(kept.join(",").into());
    }
    out.extend(mount_args);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(args: &[&str]) -> Vec<OsString> {
        args.iter().map(OsString::from).collect()
    }

    #[test]
    fn the_helper_form_becomes_a_mount() {
        assert_eq!(
            rewrite(v(&[
                "pkfs",
                "/home/a/.pkfs",
                "/mnt/s",
                "-o",
                "rw,passfile=/etc/p,allow_other,dev,suid,fsname=x"
            ])),
            v(&[
                "pkfs",
                "--home",
                "/home/a/.pkfs",
                "--passfile",
                "/etc/p",
                "mount",
                "/mnt/s",
                "-o",
                "rw,allow_other,dev,suid"
            ])
        );
        assert_eq!(
            rewrite(v(&["pkfs", "h", "m"])),
            v(&["pkfs", "--home", "h", "mount", "m"])
        );
    }

    #[test]
    fn ordinary_command_lines_are_untouched() {
        for args in [
            &["pkfs", "vault", "list"][..],
            &["pkfs", "secrets", "cat", "v:a"],
            &["pkfs", "--home", "h", "status"],
            &["pkfs", "help", "mount"],
            &["pkfs", "mount", "/mnt"],
        ] {
            assert_eq!(rewrite(v(args)), v(args));
        }
    }
}
