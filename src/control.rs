//! A long core operation's control block: a cancel flag the caller sets (Ctrl-C) and a
//! done/total count the operation advances, which the caller reads for a progress bar. The
//! operation checks `cancelled()` between its chunks and stops with `Error::Interrupted`.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

#[derive(Debug, Default)]
pub struct Control {
    cancel: AtomicBool,
    done: AtomicU64,
    total: AtomicU64,
}

impl Control {
    pub fn new() -> Control {
        Control::default()
    }
    /// Ask the operation to stop.
    pub fn cancel(&self) {
        self.cancel.store(true, Ordering::Relaxed);
    }
    pub fn cancelled(&self) -> bool {
        self.cancel.load(Ordering::Relaxed)
    }
    /// The units of work the operation will do (blocks, ...), set once it knows.
    pub fn set_total(&self, total: u64) {
        self.total.store(total, Ordering::Relaxed);
    }
    pub fn advance(&self, n: u64) {
        self.done.fetch_add(n, Ordering::Relaxed);
    }
    /// (done, total) so far.
    pub fn progress(&self) -> (u64, u64) {
        (
            self.done.load(Ordering::Relaxed),
            self.total.load(Ordering::Relaxed),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_cancels() {
        let c = Control::new();
        c.set_total(10);
        c.advance(3);
        c.advance(4);
        assert_eq!(c.progress(), (7, 10));
        assert!(!c.cancelled());
        c.cancel();
        assert!(c.cancelled());
    }
}
