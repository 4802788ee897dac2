//! The desktop app. Draws plain values sent by the trainer thread; never imports tch.

use std::path::PathBuf;

/// Opens the app window on `data_dir`, starting training at once when `start` is set.
pub fn run_app(data_dir: PathBuf, start: bool) -> anyhow::Result<()> {
    let _ = (data_dir, start);
    anyhow::bail!("the app is not built yet")
}
