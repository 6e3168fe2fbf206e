//! Models of the kernel functions, one file per concern. Each names the kernel function and
//! version it follows.

pub mod offline;
pub mod pageinfo;
pub mod profile;
pub mod removable;
#[cfg(test)]
pub(crate) mod testutil;
pub mod unmovable;
