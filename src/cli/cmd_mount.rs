//! `pkfs mount`, `umount`, `status`.

use std::path::Path;

use pkfs::args::MountArgs;

use super::config::Config;

pub fn mount(_cfg: &Config, _args: MountArgs) -> anyhow::Result<()> {
    anyhow::bail!("mount: under construction")
}

pub fn umount(_cfg: &Config, _dir: Option<&Path>) -> anyhow::Result<()> {
    anyhow::bail!("umount: under construction")
}

pub fn status(_cfg: &Config) -> anyhow::Result<()> {
    anyhow::bail!("status: under construction")
}
