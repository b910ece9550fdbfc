//! Running code inside a named network namespace: a dedicated thread enters the namespace
//! (`setns`), runs the closure and ends, so the caller's namespace never changes. Sockets
//! created inside stay bound to that namespace after the thread is gone.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::path::PathBuf;

/// The file that names a namespace created by `ip netns add NAME`.
pub fn netns_path(name: &str) -> PathBuf {
    PathBuf::from("/run/netns").join(name)
}

/// Runs `f` on a thread inside namespace `name` and returns its result.
pub fn run_in<T: Send + 'static>(name: &str, f: impl FnOnce() -> T + Send + 'static) -> io::Result<T> {
    let path = netns_path(name);
    let file = File::open(&path).map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
    std::thread::spawn(move || -> io::Result<T> {
        // SAFETY: setns on this thread only; the fd is valid for the duration of the call.
        let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(f())
    })
    .join()
    .map_err(|_| io::Error::other("thread inside the namespace panicked"))?
}
