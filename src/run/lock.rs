//! One writer per run folder. A process that trains into a folder holds `.run.lock` in it: an
//! advisory lock of the operating system on the open file, which goes with its process, also
//! one killed with SIGKILL, so a folder whose owner is gone is taken over without a word. The
//! pid and host written in the file are only for the sentence that refuses a second writer.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

/// The lock file's name inside a run folder.
pub const LOCK_FILE: &str = ".run.lock";

/// The folder is this process's to write while this lives; dropping it lets the folder go
/// (and removes the folder again when taking it created it and nothing was written since).
#[derive(Debug)]
pub struct RunLock {
    file: Option<File>,
    dir: PathBuf,
    created_dir: bool,
}

impl RunLock {
    /// Takes `dir` (created when missing) for this process, or refuses in one sentence that
    /// names the process holding it.
    pub fn take(dir: &Path) -> anyhow::Result<Self> {
        let created_dir = !dir.exists();
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let path = dir.join(LOCK_FILE);
        // A file removed by its last owner between our open and our lock is a file nobody
        // else will look at: take the one now at that path instead.
        for _ in 0..8 {
            let mut file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&path)
                .with_context(|| format!("cannot write {}", path.display()))?;
            match file.try_lock() {
                Ok(()) => {}
                Err(TryLockError::WouldBlock) => {
                    let mut owner = String::new();
                    let _ = file.read_to_string(&mut owner);
                    bail!(
                        "{} is being written by another ohem-studio ({}): wait until it ends, or choose another folder",
                        dir.display(),
                        describe_owner(&owner)
                    );
                }
                Err(TryLockError::Error(error)) => {
                    return Err(error).with_context(|| format!("cannot lock {}", path.display()))
                }
            }
            if !same_file(&file, &path) {
                continue;
            }
            file.set_len(0)
                .and_then(|_| file.rewind())
                .and_then(|_| writeln!(file, "pid {}\nhost {}", std::process::id(), host_name()))
                .and_then(|_| file.flush())
                .with_context(|| format!("cannot write {}", path.display()))?;
            return Ok(Self {
                file: Some(file),
                dir: dir.to_path_buf(),
                created_dir,
            });
        }
        bail!("cannot lock {}: it keeps being replaced", path.display())
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for RunLock {
    fn drop(&mut self) {
        // Removed while still held, so that nobody locks a file that is about to go.
        let _ = std::fs::remove_file(self.dir.join(LOCK_FILE));
        drop(self.file.take());
        if self.created_dir {
            // Only succeeds on an empty folder: one the run never wrote into.
            let _ = std::fs::remove_dir(&self.dir);
        }
    }
}

/// Whether the open `file` is still the one at `path`.
fn same_file(file: &File, path: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        match (file.metadata(), std::fs::metadata(path)) {
            (Ok(open), Ok(named)) => open.dev() == named.dev() && open.ino() == named.ino(),
            _ => false,
        }
    }
    #[cfg(not(unix))]
    {
        let _ = (file, path);
        true
    }
}

/// "pid 123 on host h" from what an owner wrote in the lock file.
fn describe_owner(text: &str) -> String {
    let field = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key))
            .map(str::trim)
            .filter(|v| !v.is_empty())
    };
    match (field("pid "), field("host ")) {
        (Some(pid), Some(host)) => format!("pid {pid} on {host}"),
        (Some(pid), None) => format!("pid {pid}"),
        _ => "a process that is starting".to_string(),
    }
}

fn host_name() -> String {
    #[cfg(unix)]
    {
        let mut buffer = [0u8; 256];
        // SAFETY: the buffer is valid for its length; gethostname writes at most that much.
        let ok = unsafe { libc::gethostname(buffer.as_mut_ptr().cast(), buffer.len()) } == 0;
        let end = buffer.iter().position(|&b| b == 0).unwrap_or(buffer.len());
        if ok && end > 0 {
            return String::from_utf8_lossy(&buffer[..end]).into_owned();
        }
    }
    std::env::var("COMPUTERNAME").unwrap_or_else(|_| "this machine".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_writer_is_refused_until_the_first_lets_go() {
        let dir = tempfile::tempdir().expect("temp dir");
        let run = dir.path().join("run");
        let first = RunLock::take(&run).expect("first");
        let refused = RunLock::take(&run).expect_err("second");
        let message = format!("{refused:#}");
        assert!(
            message.contains(&format!("pid {}", std::process::id())),
            "{message}"
        );
        assert!(message.contains("another ohem-studio"), "{message}");
        drop(first);
        // It created the folder and nothing was written: the folder went with it.
        assert!(!run.exists());
        std::fs::create_dir_all(&run).expect("folder");
        std::fs::write(run.join("metrics.csv"), "step\n").expect("file");
        drop(RunLock::take(&run).expect("taken again"));
        assert!(run.join("metrics.csv").is_file());
        assert!(!run.join(LOCK_FILE).exists());
    }

    #[test]
    fn a_lock_file_left_by_a_dead_process_is_taken_over() {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join(LOCK_FILE), "pid 999999\nhost gone\n").expect("file");
        let lock = RunLock::take(dir.path()).expect("taken over");
        let text = std::fs::read_to_string(dir.path().join(LOCK_FILE)).expect("lock");
        assert!(
            text.contains(&format!("pid {}", std::process::id())),
            "{text}"
        );
        drop(lock);
    }
}
