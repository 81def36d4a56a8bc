//! Sources fill the object store. They know nothing of routing.

pub mod file;
pub mod kube;
