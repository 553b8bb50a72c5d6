//! The embedded server's data directory and the two files that coordinate the gateways
//! sharing it: the lock (held for as long as a server over this directory lives) and the
//! address file (the port that server listens on).

use std::fs::{File, TryLockError};
use std::net::TcpListener;
use std::path::{Path, PathBuf};

/// Locked (flock) by the process that starts a server, and then by that server itself.
const LOCK_FILE: &str = "flashgate-redis.lock";
/// The running (or last) server's URL, for gateways that join it and for `flashgate reconcile`.
const URL_FILE: &str = "flashgate-redis.url";
/// The server's own log.
const LOG_FILE: &str = "redis.log";

/// A data directory, by its canonical path (the one the server reports as its `dir`).
#[derive(Debug, Clone)]
pub struct DataDir {
    path: PathBuf,
}

impl DataDir {
    /// Creates `path` if needed.
    pub fn create(path: &Path) -> std::io::Result<Self> {
        std::fs::create_dir_all(path)?;
        Self::existing(path)
    }

    /// `path`, which must exist.
    pub fn existing(path: &Path) -> std::io::Result<Self> {
        Ok(Self {
            path: path.canonicalize()?,
        })
    }

    /// The canonical path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Where the server writes its log.
    pub fn log_path(&self) -> PathBuf {
        self.path.join(LOG_FILE)
    }

    /// Takes the lock if no server over this directory is alive (nor starting): `Some` is
    /// an open file holding the lock, until it and every copy of it are closed.
    pub fn try_lock(&self) -> std::io::Result<Option<File>> {
        let file = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(self.path.join(LOCK_FILE))?;
        match file.try_lock() {
            Ok(()) => Ok(Some(file)),
            Err(TryLockError::WouldBlock) => Ok(None),
            Err(TryLockError::Error(e)) => Err(e),
        }
    }

    /// The port in the address file, if any.
    pub fn recorded_port(&self) -> Option<u16> {
        let url = std::fs::read_to_string(self.path.join(URL_FILE)).ok()?;
        url.trim().rsplit_once(':')?.1.parse().ok()
    }

    /// The recorded port if nothing listens on it now (call with the lock held: then no
    /// server of ours does either), so gateways reconnect to the same address.
    pub fn reusable_port(&self) -> Option<u16> {
        self.recorded_port()
            .filter(|port| TcpListener::bind(("127.0.0.1", *port)).is_ok())
    }

    /// Records `port` in the address file (replaced whole, never seen half-written). Call
    /// with the lock held: only the lock holder writes it.
    pub fn record_port(&self, port: u16) -> std::io::Result<()> {
        let partial = self.path.join(format!("{URL_FILE}.partial"));
        std::fs::write(&partial, url_of(port))?;
        std::fs::rename(partial, self.path.join(URL_FILE))
    }
}

/// The URL of a server on the loopback `port`.
pub fn url_of(port: u16) -> String {
    format!("redis://127.0.0.1:{port}")
}

/// A free loopback port, as the kernel picks one.
pub fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_on_the_same_directory_is_refused_until_the_first_is_closed() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = DataDir::create(&tmp.path().join("redis")).unwrap();
        let held = dir.try_lock().unwrap().expect("free at first");
        assert!(dir.try_lock().unwrap().is_none());
        drop(held);
        assert!(dir.try_lock().unwrap().is_some());
    }

    #[test]
    fn the_recorded_port_is_read_back_from_the_address_file() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = DataDir::create(tmp.path()).unwrap();
        assert_eq!(dir.recorded_port(), None);
        dir.record_port(6390).unwrap();
        assert_eq!(dir.recorded_port(), Some(6390));
    }
}
