//! `pkfs unseal` and `pkfs seal`: the clients of the mount daemon's unseal
//! service (see docs/UNSEAL.md).

use super::config::Config;

pub fn unseal(_cfg: &Config) -> anyhow::Result<()> {
    Err(pkfs::Error::Usage("not yet".into()).into())
}

pub fn seal(_cfg: &Config) -> anyhow::Result<()> {
    Err(pkfs::Error::Usage("not yet".into()).into())
}
