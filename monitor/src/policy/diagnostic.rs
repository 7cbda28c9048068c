//! Errors in rule files, each pointing at the offending text and saying what to change.
use std::{
    fmt,
    path::{Path, PathBuf},
};

use serde_saphyr::Location;

/// One problem found while loading rule files.
///
/// Displayed as `file:line:col: error: message` followed by `  hint: ...`, the
/// shape editors and CI logs recognise. `line` and `col` are 1-based; both are
/// 0 when the problem concerns the file as a whole (it cannot be read, say),
/// and the position is then left out of the display.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    /// The rule file (or directory) the problem is in.
    pub file: PathBuf,
    /// 1-based line, 0 when unknown.
    pub line: u32,
    /// 1-based column (in characters), 0 when unknown.
    pub col: u32,
    /// What is wrong.
    pub message: String,
    /// What to change.
    pub hint: String,
}

impl Diagnostic {
    /// A problem at a position in `file`.
    pub fn new(
        file: impl Into<PathBuf>,
        line: u32,
        col: u32,
        message: impl Into<String>,
        hint: impl Into<String>,
    ) -> Self {
        Diagnostic {
            file: file.into(),
            line,
            col,
            message: message.into(),
            hint: hint.into(),
        }
    }

    /// A problem at a parser location in `file`.
    pub(crate) fn at(
        file: &Path,
        loc: Location,
        message: impl Into<String>,
        hint: impl Into<String>,
    ) -> Self {
        let n = |v: u64| u32::try_from(v).unwrap_or(u32::MAX);
        Self::new(file, n(loc.line()), n(loc.column()), message, hint)
    }

    /// A problem with a whole file or directory (no position).
    pub(crate) fn whole(file: &Path, message: impl Into<String>, hint: impl Into<String>) -> Self {
        Self::new(file, 0, 0, message, hint)
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: error: {}", self.file.display(), self.message)?;
        } else {
            write!(
                f,
                "{}:{}:{}: error: {}",
                self.file.display(),
                self.line,
                self.col,
                self.message
            )?;
        }
        write!(f, "\n  hint: {}", self.hint)
    }
}

impl std::error::Error for Diagnostic {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_has_position_and_hint() {
        let d = Diagnostic::new("rules/a.yaml", 3, 7, "bad glob `[`", "close the bracket");
        assert_eq!(
            d.to_string(),
            "rules/a.yaml:3:7: error: bad glob `[`\n  hint: close the bracket"
        );
    }

    #[test]
    fn display_without_position() {
        let d = Diagnostic::new("rules", 0, 0, "cannot read", "check the path");
        assert_eq!(
            d.to_string(),
            "rules: error: cannot read\n  hint: check the path"
        );
    }
}
