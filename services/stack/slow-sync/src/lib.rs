//! A slow disk for the fault tests, without a device mapper: preloaded into a tsd
//! (`LD_PRELOAD`), this library delays every `fsync` and `fdatasync` the process makes (SQLite
//! flushes its log with them) by the milliseconds written in the file that
//! `TINYSNS_SLOW_SYNC_FILE` names, then makes the real call. No file (or no number in it), no
//! delay: a test slows one server's disk down and heals it while the server runs.

use std::ffi::{CStr, c_int, c_void};
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

/// The environment variable naming the control file.
pub const CONTROL_FILE_VAR: &str = "TINYSNS_SLOW_SYNC_FILE";

type SyncFn = unsafe extern "C" fn(c_int) -> c_int;

/// The delay the control file asks for now.
fn delay() -> Option<Duration> {
    static FILE: OnceLock<Option<PathBuf>> = OnceLock::new();
    let path = FILE
        .get_or_init(|| std::env::var_os(CONTROL_FILE_VAR).map(PathBuf::from))
        .as_ref()?;
    let text = std::fs::read_to_string(path).ok()?;
    text.trim().parse::<u64>().ok().map(Duration::from_millis)
}

/// The next definition of `name` after this library's (the C library's).
fn next(name: &CStr) -> Option<SyncFn> {
    // SAFETY: dlsym with RTLD_NEXT and a NUL-terminated name; a non-null result is the
    // address of a function with the C signature of fsync/fdatasync.
    unsafe {
        let found: *mut c_void = libc::dlsym(libc::RTLD_NEXT, name.as_ptr());
        (!found.is_null()).then(|| std::mem::transmute::<*mut c_void, SyncFn>(found))
    }
}

fn slow(real: &OnceLock<Option<SyncFn>>, name: &CStr, fd: c_int) -> c_int {
    if let Some(delay) = delay() {
        std::thread::sleep(delay);
    }
    match real.get_or_init(|| next(name)) {
        // SAFETY: the C library's own function, called with the caller's argument.
        Some(f) => unsafe { f(fd) },
        None => {
            // SAFETY: sets errno for the calling thread, as a failing call would.
            unsafe { *libc::__errno_location() = libc::ENOSYS };
            -1
        }
    }
}

/// # Safety
/// As the C library's `fsync`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn fsync(fd: c_int) -> c_int {
    static REAL: OnceLock<Option<SyncFn>> = OnceLock::new();
    slow(&REAL, c"fsync", fd)
}

/// # Safety
/// As the C library's `fdatasync`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn fdatasync(fd: c_int) -> c_int {
    static REAL: OnceLock<Option<SyncFn>> = OnceLock::new();
    slow(&REAL, c"fdatasync", fd)
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    /// In this test process the library's `fsync` is the one every caller gets.
    #[test]
    fn syncs_wait_while_the_control_file_says_so() {
        let dir = std::env::temp_dir().join(format!("slow-sync-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let control = dir.join("delay");
        // SAFETY: set before any sync reads it, in the only test of this crate.
        unsafe { std::env::set_var(super::CONTROL_FILE_VAR, &control) };
        let file = std::fs::File::create(dir.join("data")).unwrap();
        let timed = |f: &dyn Fn() -> std::io::Result<()>| {
            let started = Instant::now();
            f().unwrap();
            started.elapsed()
        };
        std::fs::write(&control, "300").unwrap();
        assert!(timed(&|| file.sync_all()) >= Duration::from_millis(300));
        assert!(timed(&|| file.sync_data()) >= Duration::from_millis(300));
        // Healed: the control file is gone (a real sync on a tmp file is far below that).
        std::fs::remove_file(&control).unwrap();
        assert!(timed(&|| file.sync_all()) < Duration::from_millis(300));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
