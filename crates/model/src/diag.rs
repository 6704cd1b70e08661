//! Errors about the operator's input files, always with a place and a way forward.
//!
//! Everything bosun reads from disk (inventory, site, roles, templates) fails through
//! [`LoadError`]: `file:line:col: what is wrong`, then a hint. It is raised before any host
//! is contacted, so bad input never leaves hosts half-changed.

use std::fmt;
use std::path::{Path, PathBuf};

/// A position in an input file (1-based; 0 means unknown).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Place {
    pub file: PathBuf,
    pub line: u64,
    pub col: u64,
}

impl Place {
    pub fn new(file: &Path, line: u64, col: u64) -> Self {
        Place {
            file: file.to_path_buf(),
            line,
            col,
        }
    }

    pub fn file(file: &Path) -> Self {
        Place::new(file, 0, 0)
    }

    pub fn at(file: &Path, loc: &serde_saphyr::Location) -> Self {
        Place::new(file, loc.line(), loc.column())
    }
}

impl fmt::Display for Place {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let file = self.file.display();
        match (self.line, self.col) {
            (0, _) => write!(f, "{file}"),
            (l, 0) => write!(f, "{file}:{l}"),
            (l, c) => write!(f, "{file}:{l}:{c}"),
        }
    }
}

/// Bad input: where, what, and what to do about it.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{place}: {message}")]
pub struct LoadError {
    pub place: Place,
    pub message: String,
    pub hint: Option<String>,
}

impl LoadError {
    pub fn new(place: Place, message: impl Into<String>) -> Self {
        LoadError {
            place,
            message: message.into(),
            hint: None,
        }
    }

    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// The full text shown to the operator, hint included.
    pub fn render(&self) -> String {
        match &self.hint {
            Some(h) => format!("{self}\n  hint: {h}"),
            None => self.to_string(),
        }
    }
}

/// Several load errors at once (all bad tasks of a site are reported, not just the first).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{}", .0.iter().map(LoadError::render).collect::<Vec<_>>().join("\n"))]
pub struct LoadErrors(pub Vec<LoadError>);

impl From<LoadError> for LoadErrors {
    fn from(e: LoadError) -> Self {
        LoadErrors(vec![e])
    }
}
