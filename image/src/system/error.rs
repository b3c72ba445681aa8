//! `SystemError`: a message about the description and where in the file it is. Positions come
//! from the TOML parser as byte offsets; this module turns them into 1-based line numbers.

use std::fmt;
use std::ops::Range;

/// A rejected description. Displays as `file:line: message`, or `file: message` when no line
/// applies (the file could not be read).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SystemError {
    file: String,
    line: Option<usize>,
    message: String,
}

impl SystemError {
    pub(super) fn without_line(file: &str, message: String) -> Self {
        SystemError {
            file: file.to_string(),
            line: None,
            message,
        }
    }

    /// An error at byte `span.start` of `text`.
    pub(super) fn at(file: &str, text: &str, span: Range<usize>, message: String) -> Self {
        SystemError {
            file: file.to_string(),
            line: Some(line_of(text, span.start)),
            message,
        }
    }

    pub fn file(&self) -> &str {
        &self.file
    }

    /// 1-based line, when the error has a position.
    pub fn line(&self) -> Option<usize> {
        self.line
    }

    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for SystemError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{}: {}", self.file, line, self.message),
            None => write!(f, "{}: {}", self.file, self.message),
        }
    }
}

impl std::error::Error for SystemError {}

/// The 1-based line holding byte `offset` (offsets past the end count as the last line).
pub(super) fn line_of(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    1 + text.as_bytes()[..end]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
}

#[cfg(test)]
mod tests {
    use super::line_of;

    #[test]
    fn lines_are_one_based_and_newlines_end_their_line() {
        let text = "a\nbc\n\nd";
        assert_eq!(line_of(text, 0), 1);
        assert_eq!(line_of(text, 1), 1);
        assert_eq!(line_of(text, 2), 2);
        assert_eq!(line_of(text, 5), 3);
        assert_eq!(line_of(text, 6), 4);
        assert_eq!(line_of(text, 99), 4);
    }
}
