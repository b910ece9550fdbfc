//! SIGINT, SIGTERM and SIGHUP while `apply` runs: the handler only records the signal; the
//! apply stops before its next op and rolls back, `--confirm` takes it as "not confirmed".
//! Later signals are recorded too and change nothing: a rollback is never abandoned midway.

use std::sync::atomic::{AtomicI32, Ordering};

/// The first signal received (0: none).
pub static RECEIVED: AtomicI32 = AtomicI32::new(0);

extern "C" fn on_signal(sig: libc::c_int) {
    // Only an atomic store: async-signal-safe. The first signal is the one reported.
    let _ = RECEIVED.compare_exchange(0, sig, Ordering::SeqCst, Ordering::SeqCst);
}

/// Installs the handler for SIGINT, SIGTERM and SIGHUP (interrupted system calls restart).
pub fn install() {
    for sig in [libc::SIGHUP, libc::SIGINT, libc::SIGTERM] {
        // SAFETY: a zeroed sigaction with a handler that only stores to an atomic.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_signal as *const () as libc::sighandler_t;
            sa.sa_flags = libc::SA_RESTART;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(sig, &sa, std::ptr::null_mut());
        }
    }
}

/// The first signal received, if any.
pub fn received() -> Option<i32> {
    match RECEIVED.load(Ordering::SeqCst) {
        0 => None,
        s => Some(s),
    }
}
