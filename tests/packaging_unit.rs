//! packaging/systemd/pkfs@.service works in both of its documented modes: with
//! the passphrase file it passes `--passfile`, without it it asks through
//! `systemd-ask-password`, and nothing (no `ConditionPathExists`) skips the
//! unit silently. The unit's start script is run by `sh` as systemd would run
//! it (`$$` unescaped), with a stand-in for `/usr/bin/pkfs` that records its
//! arguments.

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

const UNIT: &str = include_str!("../packaging/systemd/pkfs@.service");

/// The script of `ExecStart=/bin/sh -c '...'`, as `sh` receives it.
fn start_script() -> String {
    let line = UNIT
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .expect("an ExecStart line");
    let script = line
        .strip_prefix("/bin/sh -c '")
        .and_then(|s| s.strip_suffix('\''))
        .expect("ExecStart runs /bin/sh -c '...'");
    assert!(!script.contains('\''), "no nested single quotes: {script}");
    script.replace("$$", "$")
}

#[test]
fn no_condition_skips_the_unit() {
    for l in UNIT.lines().filter(|l| !l.starts_with('#')) {
        assert!(!l.starts_with("Condition"), "{l}");
    }
}

#[test]
fn the_start_script_chooses_the_passphrase_source() {
    let tmp = tempfile::tempdir().unwrap();
    let stub = tmp.path().join("pkfs");
    let record = tmp.path().join("args");
    std::fs::write(
        &stub,
        format!(
            "#!/bin/sh\nfor a in \"$@\"; do printf '%s\\n' \"$a\"; done > '{}'\n",
            record.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&stub, std::fs::Permissions::from_mode(0o755)).unwrap();
    let script = start_script().replace("/usr/bin/pkfs", stub.to_str().unwrap());
    let passfile = tmp.path().join("passphrase");
    let run = || {
        let st = Command::new("/bin/sh")
            .args(["-c", &script])
            .env("PASSFILE", &passfile)
            .env("MOUNTPOINT", "/home/u/my secrets")
            .env(
                "ASK_PASSPHRASE",
                "systemd-ask-password --user 'pkfs passphrase:'",
            )
            .status()
            .unwrap();
        assert!(st.success());
        std::fs::read_to_string(&record).unwrap()
    };
    // No passphrase file: ask.
    let args = run();
    assert_eq!(
        args,
        "mount\n--foreground\n--extpass\nsystemd-ask-password --user 'pkfs passphrase:'\n\
         /home/u/my secrets\n"
    );
    // With one: read it.
    std::fs::write(&passfile, "pw\n").unwrap();
    let args = run();
    assert_eq!(
        args,
        format!(
            "mount\n--foreground\n--passfile\n{}\n/home/u/my secrets\n",
            passfile.display()
        )
    );
    // The variables the script uses are the ones the unit sets.
    for var in [
        "PASSFILE=",
        "MOUNTPOINT=",
        "ASK_PASSPHRASE=systemd-ask-password",
    ] {
        assert!(UNIT.contains(&format!("\"{var}")), "{var}");
    }
}
