//! Progress bars: drawn on a terminal, never into a pipe.

mod common;

use std::process::Command;

use common::{Node, BIN};

fn import_dir(node: &Node) -> std::path::PathBuf {
    for i in 0..40 {
        node.scratch_file(&format!("tree/f{i}"), format!("{i}").as_bytes());
    }
    node.scratch().join("tree")
}

#[test]
fn import_shows_a_bar_on_a_terminal_only() {
    let node = Node::with_vault();
    let dir = import_dir(&node);
    // Into a pipe: only the result line.
    let o = node.ok(["secret", "import", dir.to_str().unwrap(), "v:piped"]);
    assert!(!o.stderr.contains("import ["), "{}", o.stderr);
    assert!(o.out().contains("Imported 40 file(s)"));

    // On a pseudo-terminal (script(1) gives the command one): a bar.
    let cmd = format!(
        "'{BIN}' --home '{}' --passfile '{}' secret import '{}' v:tty",
        node.home.display(),
        node.passfile.display(),
        dir.display()
    );
    let (ok, text) = common::fixtures::on_a_terminal(&cmd);
    assert!(ok, "{text}");
    assert!(text.contains("import ["), "no bar on a terminal: {text:?}");
    assert!(text.contains("/40"), "{text:?}");
    assert_eq!(node.ls("v:tty").len(), 40);

    // -q: nothing, even on a terminal.
    let out = Command::new("script")
        .args(["-qec", &format!("{cmd}-quiet -q"), "/dev/null"])
        .env("PKFS_TEST_ONLY_FAST_KDF", "1")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(!text.contains("import ["), "{text:?}");
}
