//! Errors in the files people write (rule files and the configuration
//! file), each pointing at the offending text and saying what to change: one
//! rendering and one rewording of the YAML parser's messages for both.
use std::{
    fmt,
    path::{Path, PathBuf},
};

use serde_saphyr::{DefaultMessageFormatter, Location, MessageFormatter as _};

/// One problem found while loading a rule or configuration file.
///
/// Displayed as `file:line:col: error: message` followed by `  hint: ...`, the
/// shape editors and CI logs recognise. `line` and `col` are 1-based; both are
/// 0 when the problem concerns the file as a whole (it cannot be read, say),
/// and the position is then left out of the display.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    /// The file (or directory) the problem is in.
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

    /// A YAML or shape error from the parser, reworded for the person
    /// editing `file`; `doc` names where the file's keys are documented.
    pub(crate) fn from_yaml(file: &Path, e: &serde_saphyr::Error, doc: &str) -> Self {
        let loc = e.location().unwrap_or(Location::UNKNOWN);
        let raw = DefaultMessageFormatter
            .format_message(e.without_snippet())
            .into_owned();
        let (message, hint) = explain_yaml(&raw, doc);
        Self::at(file, loc, message, hint)
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

/// The parser's message (written for developers) as a message and a hint.
fn explain_yaml(raw: &str, doc: &str) -> (String, String) {
    let quoted = |s: &str| s.split('`').nth(1).map(str::to_owned).unwrap_or_default();
    if raw.starts_with("unknown field") {
        let key = quoted(raw);
        let allowed = raw
            .split_once("expected one of ")
            .or_else(|| raw.split_once("expected "))
            .map_or(String::new(), |(_, a)| a.to_owned());
        let hint = if allowed.is_empty() {
            format!("remove `{key}`; this section takes no keys")
        } else {
            format!("remove `{key}` or correct its spelling; allowed here: {allowed}")
        };
        return (format!("unknown key `{key}`"), hint);
    }
    if let Some(rest) = raw.strip_prefix("duplicate mapping key: ") {
        let key = rest.split(',').next().unwrap_or(rest).trim();
        return (
            format!("duplicate key `{key}`"),
            format!("give `{key}` once in this mapping; remove or merge the repeated entry"),
        );
    }
    if raw.starts_with("missing field") {
        let key = quoted(raw);
        return (
            format!("missing key `{key}`"),
            format!("add `{key}:` here; see {doc} for the required keys"),
        );
    }
    let hint = if raw.contains("expected sequence") {
        "write a list here: `[a, b]`, or one `- item` per line".to_owned()
    } else if raw.contains("expected mapping") || raw.contains("expected struct") {
        "write a mapping here: `key: value` pairs, one per line".to_owned()
    } else if raw.contains("boolean") {
        "write `true` or `false`".to_owned()
    } else if raw.contains("`file` and `env`") || raw.contains("{file: PATH}") {
        "write the value inline, or `{file: /etc/monitor/secrets/NAME}`, or `{env: VARIABLE}`"
            .to_owned()
    } else if raw.contains("expected string") {
        "write a single value here (quote it if it contains `: `, `#`, `{` or `[`)".to_owned()
    } else if raw.starts_with("invalid") {
        format!("check the value's type against {doc} (a string, number, boolean, list or mapping)")
    } else {
        "fix the YAML at this position: indentation, a missing `:`, or an unclosed quote or bracket"
            .to_owned()
    };
    (raw.to_owned(), hint)
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
