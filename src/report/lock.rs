//! One run at a time per state directory: `<state-dir>/lock`, held (flock) for the whole run
//! and released by the kernel when the process ends, so a crashed run never leaves it stale.
//! The file names its holder (pid, start time, subcommand) so a second run can say which
//! run holds it.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(
        "state directory {dir} is in use by another promfleet run ({holder}); wait for it to finish, or give this run its own --state-dir"
    )]
    Busy { dir: PathBuf, holder: String },
    #[error("cannot lock state directory {dir}: {source}")]
    Io {
        dir: PathBuf,
        source: std::io::Error,
    },
}

/// The held lock of a state directory; dropping it releases the lock.
#[derive(Debug)]
pub struct StateLock {
    _file: File,
}

impl StateLock {
    pub fn path(dir: &Path) -> PathBuf {
        dir.join("lock")
    }

    /// Take the directory's lock without waiting, recording this process as its holder.
    pub fn acquire(dir: &Path) -> Result<StateLock, LockError> {
        let io = |source| LockError::Io {
            dir: dir.to_path_buf(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(io)?;
        // Not truncated on open: the holder's record must survive a failed attempt.
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(Self::path(dir))
            .map_err(io)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = holder.trim();
                return Err(LockError::Busy {
                    dir: dir.to_path_buf(),
                    holder: if holder.is_empty() {
                        "holder unknown".into()
                    } else {
                        holder.replace('\n', ", ")
                    },
                });
            }
            Err(TryLockError::Error(e)) => return Err(io(e)),
        }
        // The subcommand only: the rest of a command line may hold secrets (`-e k=v`).
        let command: Vec<String> = std::env::args().take(2).collect();
        let record = format!(
            "pid {}\nstarted {}\ncommand {}\n",
            std::process::id(),
            crate::base::clock::now_rfc3339(),
            command.join(" ")
        );
        file.set_len(0).map_err(io)?;
        file.rewind().map_err(io)?;
        file.write_all(record.as_bytes()).map_err(io)?;
        file.sync_all().map_err(io)?;
        Ok(StateLock { _file: file })
    }
}
