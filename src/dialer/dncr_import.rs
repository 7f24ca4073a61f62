//! DNCR upload: the seed's "Subir registro no llamada DNCR".
//!
//! Each line is `phone;dialer;` (the seed's sample: `123578408;marcadortest;`).
//! An empty dialer column, or no second column at all, means the number is
//! blocked for every dialer (that is also how a national "No Llame" list, one
//! number per line, loads). Same file handling as the bulk import: UTF-8 BOM,
//! Windows-1252, CRLF, blank lines refused with their number.
//!
//! Each row carries the number's [`dncr_key`]: its E.164 form when it
//! normalises, else its bare digits, so that the entry matches the number in
//! any written form (and the seed's odd samples still load).

use std::io::BufRead;

use super::import::{ImportRules, LineError, Rule, check_common, line_text};
use super::lines::LineReader;
use smsgate_proto::sms::phone::dncr_key;

/// One accepted DNCR line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DncrRow {
    /// 1-based line number in the file.
    pub line: u64,
    /// The number as written, trimmed.
    pub phone: String,
    /// What the DNCR list stores and looks up: see [`dncr_key`]. Empty
    /// when the parser was told [`DncrImport::keys_later`].
    pub key: String,
    /// The dialer it applies to; `None` for every dialer.
    pub dialer: Option<String>,
}

/// A streaming DNCR-upload parser, like [`super::import::BulkImport`].
pub struct DncrImport<R, F> {
    lines: LineReader<R>,
    max_line_bytes: usize,
    default_country: String,
    dialer_exists: F,
    keys: bool,
}

/// Starts parsing `reader`. Numbers without a country code are read as
/// numbers of `default_country` (ISO code, "UY"). `dialer_exists` answers
/// whether a dialer of that name is configured. Only `rules.max_line_bytes`
/// applies: the forbidden characters are a rule for message files.
pub fn dncr_import<R: BufRead, F: FnMut(&str) -> bool>(
    reader: R,
    rules: &ImportRules,
    default_country: &str,
    dialer_exists: F,
) -> DncrImport<R, F> {
    DncrImport {
        lines: LineReader::new(reader, rules.max_line_bytes),
        max_line_bytes: rules.max_line_bytes,
        default_country: default_country.to_owned(),
        dialer_exists,
        keys: true,
    }
}

impl<R, F> DncrImport<R, F> {
    /// Rows come without their key, for the caller to compute with
    /// [`dncr_key`] on other threads: the number's parsing is most of an
    /// import's work, and this parser is one thread.
    pub fn keys_later(mut self) -> Self {
        self.keys = false;
        self
    }
}

fn dncr_row<F: FnMut(&str) -> bool>(
    no: u64,
    text: &str,
    country: Option<&str>,
    dialer_exists: &mut F,
) -> Result<DncrRow, LineError> {
    check_common(no, text)?;
    let mut fields = text.split(';');
    let phone = fields.next().unwrap_or("").trim();
    let dialer = fields.next().unwrap_or("").trim();
    if phone.is_empty() {
        return Err(LineError::new(
            no,
            Rule::EmptyDestination,
            "the phone number (first column) is empty",
        ));
    }
    // Refuse what cannot be a number rather than keep its digits: "12ab34"
    // as "1234" would block a number nobody asked to block.
    let bad = phone.char_indices().find(|&(i, c)| {
        !(c.is_ascii_digit()
            || (c == '+' && i == 0)
            || matches!(c, ' ' | '-' | '.' | '/' | '(' | ')'))
    });
    if let Some((_, c)) = bad {
        return Err(LineError::new(
            no,
            Rule::BadPhone,
            format!(
                "the phone number {phone:?} contains {c:?}; only digits, a leading '+', spaces, '-', '.', '/' and brackets are allowed"
            ),
        ));
    }
    // The key is the E.164 form or else the digits, so it is empty exactly
    // when the number has no digit (letters were refused above).
    if !phone.bytes().any(|b| b.is_ascii_digit()) {
        return Err(LineError::new(
            no,
            Rule::BadPhone,
            format!("the phone number {phone:?} has no digits"),
        ));
    }
    let dialer = if dialer.is_empty() {
        None
    } else if dialer_exists(dialer) {
        Some(dialer.to_owned())
    } else {
        return Err(LineError::new(
            no,
            Rule::UnknownDialer,
            format!(
                "there is no dialer named {dialer:?}; leave the column empty to block the number for every dialer"
            ),
        ));
    };
    Ok(DncrRow {
        line: no,
        phone: phone.to_owned(),
        key: country.map(|c| dncr_key(phone, c)).unwrap_or_default(),
        dialer,
    })
}

impl<R: BufRead, F: FnMut(&str) -> bool> Iterator for DncrImport<R, F> {
    type Item = Result<DncrRow, LineError>;

    fn next(&mut self) -> Option<Self::Item> {
        let raw = self.lines.next_line()?;
        Some(line_text(raw, self.max_line_bytes).and_then(|(no, text)| {
            let country = self.keys.then_some(self.default_country.as_str());
            dncr_row(no, &text, country, &mut self.dialer_exists)
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(input: &[u8]) -> Vec<Result<DncrRow, LineError>> {
        dncr_import(input, &ImportRules::default(), "UY", |d: &str| {
            d == "marcadortest"
        })
        .collect()
    }

    #[test]
    fn seed_sample_loads_with_its_dialer() {
        let rows = parse(b"123578408;marcadortest;\n223113758;marcadortest;\n");
        let rows: Vec<DncrRow> = rows.into_iter().map(Result::unwrap).collect();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].line, 1);
        assert_eq!(rows[0].key, "123578408");
        assert_eq!(rows[0].dialer.as_deref(), Some("marcadortest"));
        assert_eq!(rows[1].line, 2);
    }

    #[test]
    fn empty_or_missing_dialer_means_every_dialer() {
        let rows = parse(b"098344384;;\r\n098356484\r\n+598 98 378 984;\r\n");
        let rows: Vec<DncrRow> = rows.into_iter().map(Result::unwrap).collect();
        assert!(rows.iter().all(|r| r.dialer.is_none()));
        assert_eq!(rows[0].key, "+59898344384");
        assert_eq!(rows[1].key, "+59898356484");
        assert_eq!(rows[2].key, "+59898378984");
        assert_eq!(rows[2].phone, "+598 98 378 984");
    }

    #[test]
    fn refused_lines_carry_number_and_rule() {
        let got = parse(b"\xEF\xBB\xBF098344384;marcadortest;\n\n;marcadortest;\n09abc;;\n098344384;otro;\n---;;\n");
        let errs: Vec<(u64, Rule)> = got
            .iter()
            .filter_map(|r| r.as_ref().err())
            .map(|e| (e.line, e.rule))
            .collect();
        assert!(got[0].is_ok());
        assert_eq!(
            errs,
            vec![
                (2, Rule::BlankRecord),
                (3, Rule::EmptyDestination),
                (4, Rule::BadPhone),
                (5, Rule::UnknownDialer),
                (6, Rule::BadPhone),
            ]
        );
    }

    #[test]
    fn windows_1252_dialer_name_is_decoded() {
        let rows: Vec<_> = dncr_import(
            &b"098344384;campa\xF1a;\n"[..],
            &ImportRules::default(),
            "UY",
            |d: &str| d == "campaña",
        )
        .collect();
        assert_eq!(rows[0].as_ref().unwrap().dialer.as_deref(), Some("campaña"));
    }
}
