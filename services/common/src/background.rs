//! Bulk work (taking or installing a snapshot of a whole store) on a thread of its own at
//! the lowest CPU priority, so that the threads serving writes win whenever both can run.

/// Why bulk work did not deliver its result.
#[derive(Debug, thiserror::Error)]
pub enum BackgroundError {
    #[error("cannot start the {0} thread: {1}")]
    Spawn(String, std::io::Error),
    #[error("the {0} thread panicked")]
    Panicked(String),
}

/// Runs `f` on a new thread named `name` at the lowest priority, and waits for it.
pub fn run_low_priority_blocking<T: Send + 'static>(
    name: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, BackgroundError> {
    spawn(name, f)?
        .join()
        .map_err(|_| BackgroundError::Panicked(name.to_string()))
}

/// Runs `f` on a new thread named `name` at the lowest priority; waits for it without
/// holding up the async runtime.
pub async fn run_low_priority<T: Send + 'static>(
    name: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, BackgroundError> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    spawn(name, move || {
        let _ = tx.send(f());
    })?;
    rx.await.map_err(|_| BackgroundError::Panicked(name.to_string()))
}

fn spawn<T: Send + 'static>(
    name: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<std::thread::JoinHandle<T>, BackgroundError> {
    std::thread::Builder::new()
        .name(name.to_string())
        .spawn(move || {
            lower_this_threads_priority();
            f()
        })
        .map_err(|e| BackgroundError::Spawn(name.to_string(), e))
}

/// Nice 19 for the calling thread (on Linux a thread has its own nice value). A thread can
/// always lower its own priority; failing to is only logged.
fn lower_this_threads_priority() {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: plain system calls on the calling thread, with no pointers involved.
        let result = unsafe {
            let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
            libc::setpriority(libc::PRIO_PROCESS as _, tid, 19)
        };
        if result != 0 {
            tracing::warn!(error = %std::io::Error::last_os_error(), "cannot lower a bulk thread's priority");
        }
    }
}

/// The nice value of the calling thread (for tests).
#[cfg(all(test, target_os = "linux"))]
fn this_threads_nice() -> i32 {
    // SAFETY: as above.
    unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        libc::getpriority(libc::PRIO_PROCESS as _, tid)
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn bulk_work_runs_at_the_lowest_priority_and_the_caller_keeps_its_own() {
        let before = this_threads_nice();
        assert_eq!(run_low_priority_blocking("bulk", this_threads_nice).unwrap(), 19);
        assert_eq!(this_threads_nice(), before);
    }

    #[tokio::test]
    async fn a_panic_is_reported_not_propagated() {
        let failed = run_low_priority("bulk", || -> u32 { panic!("bulk work failed") }).await;
        assert!(matches!(failed, Err(BackgroundError::Panicked(name)) if name == "bulk"));
        assert_eq!(run_low_priority("bulk", this_threads_nice).await.unwrap(), 19);
    }
}
