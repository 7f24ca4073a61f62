//! Reads uploaded CSV files line by line, the way people's files really are:
//! a UTF-8 BOM (Excel's "CSV UTF-8"), Windows-1252 text (Excel's plain "CSV"
//! on a Spanish Windows), CRLF or LF line ends. Shared by the bulk import and
//! the DNCR upload.
//!
//! Memory stays bounded whatever the input: one line buffer, capped at
//! `max_line_bytes`; the rest of an over-long line is skipped, not stored.

use std::borrow::Cow;
use std::io::{self, BufRead, Read};

const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";

/// What the reader found on one line. `no` is 1-based, as an editor shows it.
pub(crate) enum RawLine<'a> {
    /// The line's text without its line end (and without the BOM on line 1).
    Text { no: u64, text: Cow<'a, str> },
    /// Longer than the limit; its bytes were skipped.
    TooLong { no: u64 },
    /// The file starts with a UTF-16 byte order mark; nothing more is read.
    Utf16 { no: u64 },
    /// The reader failed; nothing more is read.
    Io { no: u64, error: io::Error },
}

pub(crate) struct LineReader<R> {
    reader: R,
    buf: Vec<u8>,
    line_no: u64,
    max_line_bytes: usize,
    done: bool,
}

impl<R: BufRead> LineReader<R> {
    pub(crate) fn new(reader: R, max_line_bytes: usize) -> Self {
        LineReader {
            reader,
            buf: Vec::with_capacity(256),
            line_no: 0,
            max_line_bytes: max_line_bytes.max(1),
            done: false,
        }
    }

    /// The next line, or `None` at the end of the input. A final line end
    /// does not make an extra (empty) line; a second one does.
    pub(crate) fn next_line(&mut self) -> Option<RawLine<'_>> {
        if self.done {
            return None;
        }
        self.buf.clear();
        // +1 so that a line of exactly max_line_bytes plus its '\n' fits.
        let limit = self.max_line_bytes as u64 + 2;
        let n = match (&mut self.reader)
            .take(limit)
            .read_until(b'\n', &mut self.buf)
        {
            Ok(n) => n,
            Err(error) => {
                self.done = true;
                return Some(RawLine::Io {
                    no: self.line_no + 1,
                    error,
                });
            }
        };
        if n == 0 {
            self.done = true;
            return None;
        }
        self.line_no += 1;
        let no = self.line_no;
        let ended = self.buf.last() == Some(&b'\n');
        if ended {
            self.buf.pop();
            if self.buf.last() == Some(&b'\r') {
                self.buf.pop();
            }
        }
        if self.buf.len() > self.max_line_bytes {
            if !ended {
                // Skip the rest of the line in bounded chunks.
                loop {
                    self.buf.clear();
                    match (&mut self.reader)
                        .take(64 * 1024)
                        .read_until(b'\n', &mut self.buf)
                    {
                        Ok(0) => break,
                        Ok(_) if self.buf.last() == Some(&b'\n') => break,
                        Ok(_) => continue,
                        Err(error) => {
                            self.done = true;
                            return Some(RawLine::Io { no, error });
                        }
                    }
                }
            }
            return Some(RawLine::TooLong { no });
        }
        let mut bytes: &[u8] = &self.buf;
        if no == 1 {
            if bytes.starts_with(b"\xFF\xFE") || bytes.starts_with(b"\xFE\xFF") {
                self.done = true;
                return Some(RawLine::Utf16 { no });
            }
            bytes = bytes.strip_prefix(UTF8_BOM).unwrap_or(bytes);
        }
        Some(RawLine::Text {
            no,
            text: decode(bytes),
        })
    }
}

/// Valid UTF-8 stays as it is; anything else is read as Windows-1252, which
/// is what Excel writes on a Spanish or English Windows. Decided per line so
/// that one pasted line does not turn a whole file into mojibake. Every byte
/// sequence decodes (Windows-1252 maps all 256 bytes), so this never fails.
fn decode(bytes: &[u8]) -> Cow<'_, str> {
    match std::str::from_utf8(bytes) {
        Ok(s) => Cow::Borrowed(s),
        Err(_) => {
            let (text, _had_errors) = encoding_rs::WINDOWS_1252.decode_without_bom_handling(bytes);
            text
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(input: &[u8], max: usize) -> Vec<String> {
        let mut r = LineReader::new(input, max);
        let mut out = Vec::new();
        while let Some(l) = r.next_line() {
            out.push(match l {
                RawLine::Text { no, text } => format!("{no}:{text}"),
                RawLine::TooLong { no } => format!("{no}:TOO LONG"),
                RawLine::Utf16 { no } => format!("{no}:UTF16"),
                RawLine::Io { no, .. } => format!("{no}:IO"),
            });
        }
        out
    }

    #[test]
    fn final_newline_makes_no_extra_line_but_a_second_one_does() {
        assert_eq!(lines(b"a\nb\n", 100), ["1:a", "2:b"]);
        assert_eq!(lines(b"a\nb", 100), ["1:a", "2:b"]);
        assert_eq!(lines(b"a\nb\n\n", 100), ["1:a", "2:b", "3:"]);
        assert_eq!(lines(b"", 100), Vec::<String>::new());
    }

    #[test]
    fn crlf_bom_and_windows_1252() {
        assert_eq!(lines(b"\xEF\xBB\xBFa\r\nb\r\n", 100), ["1:a", "2:b"]);
        // The BOM only counts at the very start.
        assert_eq!(lines(b"a\n\xEF\xBB\xBFb", 100), ["1:a", "2:\u{feff}b"]);
        assert_eq!(
            lines(b"caf\xE9\r\nespa\xF1a\ncaf\xC3\xA9\n\x80", 100),
            ["1:café", "2:españa", "3:café", "4:€"]
        );
    }

    #[test]
    fn over_long_lines_are_skipped_and_reading_goes_on() {
        let mut input = vec![b'x'; 10_000];
        input.extend_from_slice(b"\nok\n");
        assert_eq!(lines(&input, 100), ["1:TOO LONG", "2:ok"]);
        // Exactly at the limit is fine, CRLF included.
        assert_eq!(lines(b"12345\r\n123456\n", 5), ["1:12345", "2:TOO LONG"]);
        assert_eq!(lines(&[b'y'; 300], 100), ["1:TOO LONG"]);
    }

    #[test]
    fn utf16_stops_at_once() {
        assert_eq!(lines(b"\xFF\xFEa\x00\n\x00b\x00", 100), ["1:UTF16"]);
    }
}
