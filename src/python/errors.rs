//! Core errors and panics as memscan's Python exceptions, mapped by type: each core error
//! variant has one exception class of memscan.errors (imported once, lazily, by PyO3), so
//! no class is looked up by a name string at run time.

use std::panic::{catch_unwind, AssertUnwindSafe};

use pyo3::exceptions::PyKeyboardInterrupt;
use pyo3::prelude::*;

use crate::control::Control;
use crate::error::Error;

pyo3::import_exception!(memscan.errors, GeometryError);
pyo3::import_exception!(memscan.errors, LayoutError);
pyo3::import_exception!(memscan.errors, NoSuchBlockError);
pyo3::import_exception!(memscan.errors, PfnRangeError);
pyo3::import_exception!(memscan.errors, ArgumentError);
pyo3::import_exception!(memscan.errors, ModelMemoryError);
pyo3::import_exception!(memscan.errors, InternalError);

impl From<Error> for PyErr {
    fn from(e: Error) -> PyErr {
        let msg = e.to_string();
        match e {
            Error::Geometry(_) => GeometryError::new_err(msg),
            Error::Layout(_) => LayoutError::new_err(msg),
            Error::NoSuchBlock { .. } => NoSuchBlockError::new_err(msg),
            Error::PfnRange { .. } => PfnRangeError::new_err(msg),
            Error::Argument(_) => ArgumentError::new_err(msg),
            Error::Memory(_) => ModelMemoryError::new_err(msg),
            Error::Interrupted => PyKeyboardInterrupt::new_err(()),
        }
    }
}

/// A bad argument, as the binding refuses it before the core sees it.
pub(super) fn argument(msg: impl Into<String>) -> PyErr {
    Error::Argument(msg.into()).into()
}

/// Run `f`, turning a core error or a panic into a Python exception. Needs no GIL (the
/// exception is built lazily), so it also wraps work done inside `py.detach`.
pub(super) fn guard<T>(f: impl FnOnce() -> crate::Result<T>) -> PyResult<T> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => r.map_err(PyErr::from),
        Err(p) => {
            let msg = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| (*s).to_string()))
                .unwrap_or_else(|| "unknown panic".into());
            Err(InternalError::new_err(format!(
                "memscan internal error: {msg}"
            )))
        }
    }
}

/// `guard(f)` with the GIL released while `f` runs.
pub(super) fn detached<T: Send>(
    py: Python<'_>,
    f: impl FnOnce() -> crate::Result<T> + Send,
) -> PyResult<T> {
    py.detach(|| guard(f))
}

/// Run long core work `f` on a worker thread without the GIL while this (the calling)
/// thread looks for signals every 50 ms: Ctrl-C cancels the control block `f` checks between
/// its chunks, and `f` stops with `Error::Interrupted` (KeyboardInterrupt). Python only runs
/// signal handlers in the main thread, which is why the work is not done on it. On each tick
/// and at the end `progress(done, total)` is called, when given (a progress bar).
pub(super) fn interruptible<T: Send>(
    py: Python<'_>,
    progress: Option<&Bound<'_, PyAny>>,
    f: impl FnOnce(&Control) -> crate::Result<T> + Send,
) -> PyResult<T> {
    let ctl = Control::new();
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    // a Receiver is not Sync; the Mutex lets the GIL-free closure borrow it
    let done_rx = std::sync::Mutex::new(done_rx);
    let report = |ctl: &Control| -> PyResult<()> {
        match progress {
            Some(cb) => cb.call1(ctl.progress()).map(drop),
            None => Ok(()),
        }
    };
    let out = std::thread::scope(|s| {
        let ctl = &ctl;
        let worker = s.spawn(move || {
            let r = guard(|| f(ctl));
            let _ = done_tx.send(());
            r
        });
        let mut callback_error = None;
        loop {
            let finished = py.detach(|| {
                !matches!(
                    done_rx
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .recv_timeout(std::time::Duration::from_millis(50)),
                    Err(std::sync::mpsc::RecvTimeoutError::Timeout)
                )
            });
            if finished {
                break;
            }
            if py.check_signals().is_err() {
                ctl.cancel();
            }
            if callback_error.is_none() {
                if let Err(e) = report(ctl) {
                    // a failing progress callback stops the work and is raised
                    ctl.cancel();
                    callback_error = Some(e);
                }
            }
        }
        (worker.join(), callback_error)
    });
    match out {
        (_, Some(e)) => Err(e),
        (Ok(r), None) => {
            let v = r?;
            report(&ctl)?;
            Ok(v)
        }
        (Err(_), None) => Err(InternalError::new_err(
            "memscan internal error: worker thread died",
        )),
    }
}
