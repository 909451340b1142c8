//! Waiting for something another process or task does, with a deadline instead of a sleep.

use std::time::{Duration, Instant};

/// Calls `check` until it answers `Some`, every 20 ms for at most `within`; panics naming
/// `what` when the deadline passes.
pub fn until<T>(what: &str, within: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + within;
    loop {
        if let Some(t) = check() {
            return t;
        }
        assert!(Instant::now() < deadline, "gave up waiting for {what} after {within:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}
