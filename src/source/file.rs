//! The file source: the same objects a cluster holds (Services, EndpointSlices, Secrets,
//! LoadBalancerPools), read from one multi-document YAML file, and read again when it changes.
//!
//! One read ([`Contents::read`], then [`Contents::parse`]) serves `weir serve`'s first load,
//! `weir check` ([`load`]) and every look [`watch`] takes.

mod parse;
mod watch;

pub use parse::parse;
pub use watch::watch;

use crate::store::Store;
use std::path::Path;

/// Why a file was refused. Says where: the file, the document, the object and the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}: {place}{message}")]
pub struct FileError {
    pub file: String,
    /// `document 3 (LoadBalancerPool shop/web): spec.backends[0].weight: ` or empty.
    pub place: String,
    pub message: String,
}

impl FileError {
    /// A problem with the file as a whole (not one of its documents).
    fn whole(path: &Path, message: String) -> FileError {
        FileError {
            file: path.display().to_string(),
            place: String::new(),
            message,
        }
    }
}

/// The file at one look. A missing file is its own state, not empty contents: an empty file
/// is a configuration (no pools) and is served; a missing one is an error, and the last good
/// store keeps serving.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Contents {
    /// Nothing at the path (deleted, or not yet written).
    Missing,
    /// Something at the path that cannot be read (permissions, a directory): the reason.
    Unreadable(String),
    Bytes(Vec<u8>),
}

impl Contents {
    /// Looks at the file once.
    pub fn read(path: &Path) -> Contents {
        match std::fs::read(path) {
            Ok(bytes) => Contents::Bytes(bytes),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Contents::Missing,
            Err(e) => Contents::Unreadable(e.to_string()),
        }
    }

    /// The store these contents hold, or why they hold none.
    pub fn parse(&self, path: &Path) -> Result<Store, FileError> {
        match self {
            Contents::Missing => Err(FileError::whole(
                path,
                "is missing (deleted, or not written yet)".into(),
            )),
            Contents::Unreadable(e) => Err(FileError::whole(path, format!("cannot read: {e}"))),
            Contents::Bytes(bytes) => match std::str::from_utf8(bytes) {
                Ok(text) => parse(&path.display().to_string(), text),
                Err(e) => Err(FileError::whole(path, format!("not UTF-8 text: {e}"))),
            },
        }
    }
}

/// Reads and parses the file.
pub fn load(path: &Path) -> Result<Store, FileError> {
    Contents::read(path).parse(path)
}

#[cfg(test)]
mod tests;
