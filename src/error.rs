//! One error enum for the Rust core; the binding layer maps each variant to a Python exception.

use thiserror::Error;

/// Everything the core can refuse.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum Error {
    /// A geometry that no kernel could have (block size not a power of two, ...).
    #[error("invalid geometry: {0}")]
    Geometry(String),
    /// A layout that contradicts itself (overlapping ranges, a zone outside its node, ...).
    #[error("invalid layout: {0}")]
    Layout(String),
    /// A memory block id that is out of range or has no block directory.
    #[error("memory block {block} does not exist ({why})")]
    NoSuchBlock { block: u64, why: String },
    /// A pfn range outside the modeled machine.
    #[error("pfn range {start:#x}+{count:#x} is outside the machine (max_pfn {max_pfn:#x})")]
    PfnRange {
        start: u64,
        count: u64,
        max_pfn: u64,
    },
    /// A bad argument to a model call.
    #[error("invalid argument: {0}")]
    Argument(String),
    /// An allocation the model needs cannot be made, or would exceed the machine's memory
    /// (the message names the size); raised before allocating where it can be known.
    #[error("not enough memory: {0}")]
    Memory(String),
    /// The scan was interrupted (Ctrl-C in Python).
    #[error("interrupted")]
    Interrupted,
}

pub type Result<T> = std::result::Result<T, Error>;
