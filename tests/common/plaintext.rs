//! The plaintext scan: looking for known secret bytes anywhere under a home,
//! raw or merely encoded, in file contents, in names and in git objects.

use std::path::Path;

use super::{contains, git_all_objects, git_workdirs, snapshot, Snap};

/// `marker` as it would appear if it were merely encoded rather than encrypted:
/// hex, and the alignment-independent middle of its base64 and base64url forms at
/// each of the three byte offsets.
pub fn encoded_forms(marker: &[u8]) -> Vec<Vec<u8>> {
    use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
    use base64::Engine;
    let mut out = vec![marker
        .iter()
        .flat_map(|b| format!("{b:02x}").into_bytes())
        .collect::<Vec<u8>>()];
    if marker.len() < 12 {
        return out;
    }
    for k in 0..3usize {
        let mut shifted = vec![0u8; k];
        shifted.extend_from_slice(marker);
        for enc in [STANDARD.encode(&shifted), URL_SAFE_NO_PAD.encode(&shifted)] {
            // Skip the characters touched by the prefix and the final group.
            let start = (k * 4).div_ceil(3) + 1;
            let end = enc.len().saturating_sub(4);
            if end > start + 8 {
                out.push(enc.as_bytes()[start..end].to_vec());
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

/// Where any of `markers` shows up under `home`: in a file's raw bytes, in a file
/// or directory name, or in a decompressed git object of any repository; as is,
/// or merely encoded (see [`encoded_forms`]).
pub fn find_plaintext(home: &Path, markers: &[&[u8]]) -> Vec<String> {
    let mut variants: Vec<Vec<u8>> = Vec::new();
    for m in markers {
        variants.push(m.to_vec());
        variants.extend(encoded_forms(m));
    }
    let markers: Vec<&[u8]> = variants.iter().map(|v| v.as_slice()).collect();
    let markers = &markers[..];
    let mut found = Vec::new();
    for (rel, snap) in snapshot(home) {
        let name = rel.as_os_str().as_encoded_bytes();
        for m in markers {
            if contains(name, m) {
                found.push(format!(
                    "name {} contains {:?}",
                    rel.display(),
                    String::from_utf8_lossy(m)
                ));
            }
            if let Snap::File(_, data) = &snap {
                if contains(data, m) {
                    found.push(format!(
                        "bytes of {} contain {:?}",
                        rel.display(),
                        String::from_utf8_lossy(m)
                    ));
                }
            }
        }
    }
    for repo in git_workdirs(home) {
        let objects = git_all_objects(&repo);
        for m in markers {
            if contains(&objects, m) {
                found.push(format!(
                    "a git object of {} contains {:?}",
                    repo.display(),
                    String::from_utf8_lossy(m)
                ));
            }
        }
    }
    found
}

pub fn assert_no_plaintext(home: &Path, markers: &[&[u8]]) {
    let found = find_plaintext(home, markers);
    assert!(
        found.is_empty(),
        "plaintext on disk:\n  {}",
        found.join("\n  ")
    );
}
