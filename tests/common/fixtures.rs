//! Small fixtures several suites share.

use std::process::Command;

use super::{pseudo_random, root_key, Node};

/// A second vault `w`, and three secrets across `v` and `w`: (target, bytes).
pub fn secrets_in_two_vaults(n: &Node) -> Vec<(String, Vec<u8>)> {
    n.ok(["vault", "create", "w"]);
    let secrets = vec![
        ("v:top".to_string(), b"top secret".to_vec()),
        ("v:dir/nested/deep.bin".to_string(), pseudo_random(9000, 1)),
        ("w:other".to_string(), b"in the second vault".to_vec()),
    ];
    for (t, d) in &secrets {
        n.write(t, d);
    }
    secrets
}

/// Run the shell command line `cmd` on a pseudo-terminal (script(1)), with the
/// test-only settings; returns whether it succeeded and what the terminal showed.
pub fn on_a_terminal(cmd: &str) -> (bool, String) {
    let out = Command::new("script")
        .args(["-qec", cmd, "/dev/null"])
        .env("PKFS_TEST_ONLY_FAST_KDF", "1")
        .env("PKFS_TEST_ONLY_ROOT_KEY", root_key(0))
        .output()
        .expect("script(1) from util-linux");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}
