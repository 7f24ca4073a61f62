//! Config diagnostics: every problem found in a file, each with its place.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// One problem in a config file, located by byte span so it can be shown as
/// `file:line:column`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub span: Option<Range<usize>>,
    pub message: String,
}

impl Problem {
    pub fn at(span: Range<usize>, message: impl Into<String>) -> Self {
        Self {
            span: Some(span),
            message: message.into(),
        }
    }

    pub fn whole_file(message: impl Into<String>) -> Self {
        Self {
            span: None,
            message: message.into(),
        }
    }
}

/// All problems of one file, ready to print.
#[derive(Debug, Clone)]
pub struct Diagnostics {
    pub path: PathBuf,
    pub problems: Vec<Located>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Located {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl Diagnostics {
    pub fn new(path: &Path, source: &str, mut problems: Vec<Problem>) -> Self {
        problems.sort_by_key(|p| p.span.as_ref().map_or(0, |s| s.start));
        let problems = problems
            .into_iter()
            .map(|p| {
                let (line, column) = p.span.map_or((1, 1), |s| line_column(source, s.start));
                Located {
                    line,
                    column,
                    message: p.message,
                }
            })
            .collect();
        Self {
            path: path.to_path_buf(),
            problems,
        }
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.problems.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(
                f,
                "{}:{}:{}: {}",
                self.path.display(),
                p.line,
                p.column,
                p.message
            )?;
        }
        Ok(())
    }
}

/// 1-based line and column (in characters) of a byte offset.
pub fn line_column(source: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(source.len());
    // A span may point inside a multi-byte character; step back to a boundary.
    let mut cut = offset;
    while !source.is_char_boundary(cut) {
        cut -= 1;
    }
    let before = &source[..cut];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

/// Rewrites serde's "unknown field `x`, expected one of ..." into a sentence
/// with the closest known key, which is what an admin needs at 2 a.m.
pub fn explain_serde_message(message: &str, section: &str) -> String {
    let message = message.trim();
    if let Some(rest) = message.strip_prefix("unknown field `") {
        if let Some((field, expected)) = rest.split_once('`') {
            let known: Vec<&str> = expected
                .split('`')
                .enumerate()
                .filter(|(i, _)| i % 2 == 1)
                .map(|(_, s)| s)
                .collect();
            let mut sentence = format!("unknown key `{field}` in {section}");
            if let Some(best) = closest(field, &known) {
                sentence.push_str(&format!("; did you mean `{best}`?"));
            } else if !known.is_empty() {
                sentence.push_str(&format!("; known keys: {}", known.join(", ")));
            }
            return sentence;
        }
    }
    if let Some(rest) = message.strip_prefix("missing field `") {
        if let Some((field, _)) = rest.split_once('`') {
            return format!("{section} needs the key `{field}`");
        }
    }
    if let Some(rest) = message.strip_prefix("invalid type: ") {
        let rest = rest
            .replace("expected i64", "expected an integer")
            .replace("expected u64", "expected a whole number of 0 or more")
            .replace("expected f64", "expected a number")
            .replace("expected a boolean", "expected true or false");
        return format!("wrong type in {section}: found {rest}");
    }
    if let Some(rest) = message.strip_prefix("invalid value: ") {
        return format!("wrong value in {section}: {rest}");
    }
    format!("{section}: {message}")
}

/// The known name closest to `word`, when it is close enough to be a typo.
pub fn closest<'a>(word: &str, known: &[&'a str]) -> Option<&'a str> {
    known
        .iter()
        .map(|k| (strsim::damerau_levenshtein(word, k), *k))
        .filter(|(d, k)| *d <= 2.max(k.len() / 3))
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_and_column_are_one_based_and_count_characters() {
        let src = "a = 1\nñb = 2\n";
        assert_eq!(line_column(src, 0), (1, 1));
        assert_eq!(line_column(src, 6), (2, 1));
        // 'b' comes after the two-byte 'ñ': column 2, not 3.
        assert_eq!(line_column(src, 8), (2, 2));
        assert_eq!(line_column(src, 7), (2, 1), "inside a character");
        assert_eq!(line_column(src, 999), (3, 1));
    }

    #[test]
    fn unknown_field_gets_a_suggestion() {
        let m = explain_serde_message(
            "unknown field `intervl_ms`, expected one of `name`, `provider`, `interval_ms`",
            "[[dialer]]",
        );
        assert_eq!(
            m,
            "unknown key `intervl_ms` in [[dialer]]; did you mean `interval_ms`?"
        );
        let m = explain_serde_message(
            "unknown field `zzzzzzzz`, expected `name` or `kind`",
            "[[gateway]]",
        );
        assert!(m.contains("known keys: name, kind"), "{m}");
    }
}
