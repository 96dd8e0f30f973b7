//! A mounted node for the FUSE suites (`mount_*.rs`): `pkfs mount` on a scratch
//! directory, unmounted (and the daemon gone) when the fixture drops.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::Node;

/// Is `dir` a mountpoint right now (per /proc/self/mounts)?
pub fn is_mounted(dir: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap();
    let want = dir.as_os_str().as_bytes();
    mounts
        .lines()
        .any(|l| l.split(' ').nth(1).is_some_and(|m| m.as_bytes() == want))
}

pub struct Mounted {
    pub node: Node,
    pub mnt: PathBuf,
    mounted: bool,
}

impl Mounted {
    /// A node with vault `v`, mounted with a short commit delay.
    pub fn new() -> Mounted {
        Self::with_args(&["--commit-delay", "200ms"])
    }

    /// A node with vault `v`, mounted with extra `pkfs mount` arguments.
    pub fn with_args(args: &[&str]) -> Mounted {
        let node = Node::with_vault();
        let mnt = node.scratch().join("mnt");
        std::fs::create_dir_all(&mnt).unwrap();
        let mut m = Mounted {
            node,
            mnt,
            mounted: false,
        };
        m.mount(args);
        m
    }

    /// A fixture around an existing node, not mounted yet (see [`Mounted::mount`]).
    pub fn unmounted(node: Node) -> Mounted {
        let mnt = node.scratch().join("mnt");
        std::fs::create_dir_all(&mnt).unwrap();
        Mounted {
            node,
            mnt,
            mounted: false,
        }
    }

    /// Mount again (after [`Mounted::umount`]).
    pub fn mount(&mut self, args: &[&str]) {
        let mut a = vec!["mount".to_string(), self.mnt.display().to_string()];
        a.extend(args.iter().map(|s| s.to_string()));
        self.node.ok(a);
        self.mounted = true;
    }

    /// The mounted directory of vault `v`.
    pub fn v(&self) -> PathBuf {
        self.mnt.join("v")
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.v().join(rel)
    }

    /// `pkfs umount`: write back, commit, unmount; the daemon is gone after.
    pub fn umount(&mut self) {
        if self.mounted {
            self.node.ok(["umount", &self.mnt.display().to_string()]);
            self.mounted = false;
        }
    }

    pub fn status(&self) -> Value {
        self.node.ok(["--json", "status"]).json()
    }

    /// Wait until every vault has committed what the mount changed.
    pub fn wait_committed(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let s = self.status();
            let pending: u64 = s["vaults"]
                .as_array()
                .map(|v| {
                    v.iter()
                        .map(|x| x["pending_changes"].as_u64().unwrap_or(0))
                        .sum()
                })
                .unwrap_or(0);
            if pending == 0 {
                return;
            }
            assert!(Instant::now() < deadline, "changes not committed: {s}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The daemon's log file.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.node.home.join("pkfs.log")).unwrap_or_default()
    }

    pub fn mountpoint(&self) -> &Path {
        &self.mnt
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        if self.mounted {
            let o = self.node.run(["umount", &self.mnt.display().to_string()]);
            if o.code != 0 {
                let _ = std::process::Command::new("umount")
                    .arg("-l")
                    .arg(&self.mnt)
                    .stderr(std::process::Stdio::null())
                    .status();
            }
        }
    }
}
