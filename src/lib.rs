//! memscan: a model of Linux memory hot-unplug. Pure Rust core; the PyO3 binding layer lives
//! in `python/` behind the `python` feature.

pub mod control;
pub mod cost;
pub mod error;
pub mod geometry;
pub mod kernel;
pub mod kpageflags;
pub mod memmap;
pub mod page;
pub mod sections;
pub mod sysfs;
pub mod topology;
pub mod watermark;
pub mod workload;

#[cfg(feature = "python")]
mod python;

pub use error::{Error, Result};
