//! Bulk message import: the seed's "Envío de mensajes masivos".
//!
//! Each line is `dialer;destination;message;priority`, with an optional
//! trailing `;` (the seed calls the first column "campaña": it names the
//! dialer). The seed's rules, and ours:
//! - the file name has no spaces or odd characters and at most 64
//!   characters ([`check_file_name`]);
//! - the dialer must exist, else the whole file is refused (every line with
//!   an unknown dialer is reported; the import is all or nothing anyway);
//! - at least four columns; columns after the fourth are ignored, unless
//!   the fifth starts with `template:` (ours, for WhatsApp): then it names a
//!   provider's template, `template:NAME` or `template:NAME:LANGUAGE`
//!   (`template:order_update:es`, or a Twilio ContentSid), and the columns
//!   after it are the template's variables in order; the message column is
//!   what the conversation shows;
//! - no blank records, including blank lines after the last line ("No deben
//!   de existir espacios en blanco después de la última línea"). The line end
//!   of the last line is not a blank record: editors and Excel write one;
//! - no forbidden characters (by default the seed's ' " @), anywhere on the
//!   line;
//! - the priority is a whole number from 1 (urgent, sent first) to 9999
//!   (routine bulk); equal priorities go in file order;
//! - destination and message are not empty.
//!
//! Whether the destination is a possible phone number is NOT a reason to
//! refuse the line: such messages are stored as INVALID and counted as
//! "others" on the dashboard, as the seed's dashboard describes. The caller
//! runs [`smsgate_proto::sms::phone::normalise`] on each row.
//!
//! Why a hand-written splitter and not the `csv` crate: the format has no
//! quoting (the seed forbids '"', so a field can never hold a ';' or a line
//! end), every rule is per line with its line number, and we need to decode
//! Windows-1252 per line and keep memory bounded on a file without line
//! ends. Splitting on ';' does all that in a few lines; csv's quote handling
//! would only turn a stray '"' into a record spanning many lines, hiding the
//! line number the user needs.

use std::io::BufRead;

use super::lines::{LineReader, RawLine};

/// The longest file name accepted (the seed: "ni nombres muy largos").
pub const MAX_FILE_NAME_CHARS: usize = 64;
/// The accepted priority range; lower is sent first.
pub const PRIORITY_MIN: u16 = 1;
pub const PRIORITY_MAX: u16 = 9999;
/// Default cap on one line's bytes: far above any real SMS line (a 10-part
/// UCS-2 message is 670 characters), small enough to bound memory.
pub const DEFAULT_MAX_LINE_BYTES: usize = 8 * 1024;

/// The file-level checks that come before reading any line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImportError {
    #[error("the file name is empty")]
    EmptyFileName,
    #[error(
        "the file name {name:?} has {chars} characters; at most {MAX_FILE_NAME_CHARS} are allowed"
    )]
    FileNameTooLong { name: String, chars: usize },
    #[error(
        "the file name {name:?} contains {bad:?}; use only letters A-Z, digits, '.', '-' and '_', as in DISCTEST29042014.csv"
    )]
    FileNameCharacter { name: String, bad: char },
    #[error("the file name {name:?} starts with '.'; give the file a name before its extension")]
    FileNameStartsWithDot { name: String },
}

/// A refused file name as the error shows it: whole up to the limit, cut
/// beyond it, so an error body never grows with what a client sent.
fn shown(name: &str) -> String {
    match name.char_indices().nth(MAX_FILE_NAME_CHARS) {
        Some((cut, _)) => format!("{}…", &name[..cut]),
        None => name.to_owned(),
    }
}

/// Checks an uploaded file's name: ASCII letters, digits, '.', '-', '_',
/// 1 to 64 characters, not starting with '.' (which also rules out "..").
pub fn check_file_name(name: &str) -> Result<(), ImportError> {
    if name.is_empty() {
        return Err(ImportError::EmptyFileName);
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_')))
    {
        return Err(ImportError::FileNameCharacter {
            name: shown(name),
            bad,
        });
    }
    if name.len() > MAX_FILE_NAME_CHARS {
        return Err(ImportError::FileNameTooLong {
            name: shown(name),
            chars: name.chars().count(),
        });
    }
    if name.starts_with('.') {
        return Err(ImportError::FileNameStartsWithDot { name: shown(name) });
    }
    Ok(())
}

/// The rule a refused line broke. [`Rule::code`] is stable: the API and the
/// portal may branch on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Rule {
    BlankRecord,
    TooFewColumns,
    ForbiddenCharacter,
    ControlCharacter,
    UnknownDialer,
    EmptyDestination,
    EmptyMessage,
    BadPriority,
    BadPhone,
    BadTemplate,
    TextTooLong,
    LineTooLong,
    UnsupportedEncoding,
    ReadError,
}

impl Rule {
    pub fn code(self) -> &'static str {
        match self {
            Rule::BlankRecord => "blank_record",
            Rule::TooFewColumns => "too_few_columns",
            Rule::ForbiddenCharacter => "forbidden_character",
            Rule::ControlCharacter => "control_character",
            Rule::UnknownDialer => "unknown_dialer",
            Rule::EmptyDestination => "empty_destination",
            Rule::EmptyMessage => "empty_message",
            Rule::BadPriority => "bad_priority",
            Rule::BadPhone => "bad_phone",
            Rule::BadTemplate => "bad_template",
            Rule::TextTooLong => "text_too_long",
            Rule::LineTooLong => "line_too_long",
            Rule::UnsupportedEncoding => "unsupported_encoding",
            Rule::ReadError => "read_error",
        }
    }
}

impl std::fmt::Display for Rule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.code())
    }
}

/// One refused line: its 1-based number, the rule, and a sentence for the
/// person who made the file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct LineError {
    pub line: u64,
    pub rule: Rule,
    pub message: String,
}

impl LineError {
    pub(crate) fn new(line: u64, rule: Rule, message: impl Into<String>) -> Self {
        LineError {
            line,
            rule,
            message: message.into(),
        }
    }
}

/// What the config lets an import accept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportRules {
    /// Characters refused anywhere on a line (the seed's ' " @ by default).
    pub forbidden: Vec<char>,
    /// Longest line, in bytes, before its line end.
    pub max_line_bytes: usize,
    /// Dialers whose gateway caps a text's length, in UTF-16 units, with
    /// that gateway's name (see `dialer::limits::text_limit`).
    pub text_limits: std::collections::BTreeMap<String, (usize, String)>,
}

impl Default for ImportRules {
    fn default() -> Self {
        ImportRules {
            forbidden: vec!['\'', '"', '@'],
            max_line_bytes: DEFAULT_MAX_LINE_BYTES,
            text_limits: Default::default(),
        }
    }
}

/// The ten-part limit can only be passed by texts longer than this many
/// UTF-16 units (ten UCS-2 parts); only those are planned while parsing.
const SURELY_SHORT_ENOUGH: usize = 670;

/// Refuses a message text no gateway of `dialer` could send.
fn check_text_length(
    no: u64,
    dialer: &str,
    message: &str,
    rules: &ImportRules,
) -> Result<(), LineError> {
    let units = message.encode_utf16().count();
    if let Some((max, gateway)) = rules.text_limits.get(dialer) {
        if units > *max {
            return Err(LineError::new(
                no,
                Rule::TextTooLong,
                format!(
                    "the message is {units} characters long; dialer {dialer:?} sends through the Dinstar gateway {gateway:?}, which takes at most {max}"
                ),
            ));
        }
    }
    if units > SURELY_SHORT_ENOUGH {
        let plan = smsgate_proto::sms::plan(message);
        if plan.segments > smsgate_proto::sms::MAX_SEGMENTS {
            return Err(LineError::new(
                no,
                Rule::TextTooLong,
                format!(
                    "the message needs {} SMS parts ({}); at most {} are sent (1530 GSM-7 or 670 UCS-2 characters)",
                    plan.segments,
                    plan.encoding.as_str(),
                    smsgate_proto::sms::MAX_SEGMENTS
                ),
            ));
        }
    }
    Ok(())
}

/// One accepted line of a bulk import.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportRow {
    /// 1-based line number in the file.
    pub line: u64,
    /// The dialer's name (the seed's "campaña" column), trimmed.
    pub dialer: String,
    /// The destination as written, trimmed; not yet normalised.
    pub destination: String,
    /// The message text, exactly as written (inner and outer spaces kept).
    pub message: String,
    /// 1 (urgent) ..= 9999 (routine); lower is sent first.
    pub priority: u16,
    /// A provider's template (a fifth column `template:...`).
    pub template: Option<smsgate_proto::whatsapp_rules::MessageTemplate>,
}

/// A streaming bulk-import parser: an iterator over the lines of a
/// [`BufRead`], yielding each row or the reason it is refused. It holds one
/// line at a time. After a read error or a UTF-16 file it yields that error
/// and ends.
pub struct BulkImport<R, F> {
    lines: LineReader<R>,
    rules: ImportRules,
    dialer_exists: F,
    /// The last dialer name the closure accepted: files name one dialer on
    /// every line, so this saves a lookup per line.
    known_dialer: String,
}

/// Starts parsing `reader`. `dialer_exists` answers whether a dialer of that
/// name is configured.
pub fn bulk_import<R: BufRead, F: FnMut(&str) -> bool>(
    reader: R,
    rules: &ImportRules,
    dialer_exists: F,
) -> BulkImport<R, F> {
    BulkImport {
        lines: LineReader::new(reader, rules.max_line_bytes),
        rules: rules.clone(),
        dialer_exists,
        known_dialer: String::new(),
    }
}

/// Turns the reader's non-text outcomes into line errors; `Ok` carries text.
pub(crate) fn line_text(
    raw: RawLine<'_>,
    max: usize,
) -> Result<(u64, std::borrow::Cow<'_, str>), LineError> {
    match raw {
        RawLine::Text { no, text } => Ok((no, text)),
        RawLine::TooLong { no } => Err(LineError::new(
            no,
            Rule::LineTooLong,
            format!("the line is longer than {max} bytes"),
        )),
        RawLine::Utf16 { no } => Err(LineError::new(
            no,
            Rule::UnsupportedEncoding,
            "the file is UTF-16 (Excel's \"Unicode text\"); save it as \"CSV UTF-8\" or \"CSV (semicolon delimited)\"",
        )),
        RawLine::Io { no, error } => Err(LineError::new(
            no,
            Rule::ReadError,
            format!("the file could not be read: {error}"),
        )),
    }
}

/// Blank and control-character checks shared with the DNCR upload.
pub(crate) fn check_common(no: u64, text: &str) -> Result<(), LineError> {
    if text.trim().is_empty() || text.split(';').all(|f| f.trim().is_empty()) {
        return Err(LineError::new(
            no,
            Rule::BlankRecord,
            "the line is blank; remove blank lines, including any after the last line",
        ));
    }
    // Byte scan first (the import's hot loop): a control character is a
    // byte below 0x20, 0x7F, or a C1 control (U+0080..U+009F, C2 80..C2 9F).
    let b = text.as_bytes();
    let suspicious = b.iter().enumerate().any(|(i, &x)| {
        x < 0x20
            || x == 0x7F
            || (x == 0xC2 && b.get(i + 1).is_some_and(|n| (0x80..=0x9F).contains(n)))
    });
    if let Some(c) = suspicious
        .then(|| text.chars().find(|c| c.is_control()))
        .flatten()
    {
        let message = if c == '\r' {
            "the line contains a carriage return inside it; the file may use old Mac line ends: save it again as \"CSV UTF-8\"".to_owned()
        } else {
            format!("the line contains the control character U+{:04X}", c as u32)
        };
        return Err(LineError::new(no, Rule::ControlCharacter, message));
    }
    Ok(())
}

const COLUMNS: [&str; 4] = ["dialer", "destination", "message", "priority"];

/// The per-line state a row check needs, borrowed apart from the line
/// reader so that the line can stay a borrow of the reader's buffer.
struct Checker<'a, F> {
    rules: &'a ImportRules,
    dialer_exists: &'a mut F,
    known_dialer: &'a mut String,
}

impl<F: FnMut(&str) -> bool> Checker<'_, F> {
    fn row(&mut self, no: u64, text: &str) -> Result<ImportRow, LineError> {
        check_common(no, text)?;
        let mut fields = text.splitn(5, ';');
        let cols: [Option<&str>; 4] = std::array::from_fn(|_| fields.next());
        let [
            Some(dialer),
            Some(destination),
            Some(message),
            Some(priority),
        ] = cols
        else {
            let n = cols.iter().flatten().count();
            return Err(LineError::new(
                no,
                Rule::TooFewColumns,
                format!(
                    "the line has {n} column{}; it needs four: dialer;destination;message;priority",
                    if n == 1 { "" } else { "s" }
                ),
            ));
        };
        let rest = fields.next();
        let template = match rest.map(str::trim_start) {
            Some(r) if r.starts_with(TEMPLATE_PREFIX) => Some(parse_template(no, r)?),
            _ => None,
        };
        let extra = template.is_none() && rest.is_some_and(|rest| !rest.trim().is_empty());
        // ASCII forbidden characters (the usual case) are found by a byte
        // scan; others need the char walk.
        let forbidden = &self.rules.forbidden;
        let found = if forbidden.iter().all(char::is_ascii) {
            text.bytes()
                .position(|b| forbidden.contains(&char::from(b)))
                .map(|pos| (pos, char::from(text.as_bytes()[pos])))
        } else {
            text.char_indices().find(|(_, c)| forbidden.contains(c))
        };
        if let Some((pos, c)) = found {
            let col = text[..pos].matches(';').count();
            let col_name = COLUMNS.get(col).copied().unwrap_or("extra column");
            return Err(LineError::new(
                no,
                Rule::ForbiddenCharacter,
                format!("the {col_name} contains the forbidden character {c:?}"),
            ));
        }
        let dialer = dialer.trim();
        if dialer.is_empty() {
            return Err(LineError::new(
                no,
                Rule::UnknownDialer,
                "the dialer (first column) is empty",
            ));
        }
        if dialer != self.known_dialer.as_str() {
            if !(self.dialer_exists)(dialer) {
                return Err(LineError::new(
                    no,
                    Rule::UnknownDialer,
                    format!("there is no dialer named {dialer:?}"),
                ));
            }
            self.known_dialer.clear();
            self.known_dialer.push_str(dialer);
        }
        let destination = destination.trim();
        if destination.is_empty() {
            return Err(LineError::new(
                no,
                Rule::EmptyDestination,
                "the destination (second column) is empty",
            ));
        }
        if message.trim().is_empty() {
            return Err(LineError::new(
                no,
                Rule::EmptyMessage,
                "the message (third column) is empty",
            ));
        }
        check_text_length(no, dialer, message, self.rules)?;
        let priority = parse_priority(priority).ok_or_else(|| {
            let hint = if extra {
                "; if the message contains ';', remove it: ';' separates the columns"
            } else {
                ""
            };
            LineError::new(
                no,
                Rule::BadPriority,
                format!(
                    "the priority {:?} is not a whole number from {PRIORITY_MIN} (urgent) to {PRIORITY_MAX} (routine){hint}",
                    priority.trim()
                ),
            )
        })?;
        Ok(ImportRow {
            line: no,
            dialer: dialer.to_owned(),
            destination: destination.to_owned(),
            message: message.to_owned(),
            priority,
            template,
        })
    }
}

const TEMPLATE_PREFIX: &str = "template:";

/// `template:NAME[:LANGUAGE];variable;variable...` (the fifth column on;
/// not '@', which the seed forbids).
fn parse_template(
    no: u64,
    rest: &str,
) -> Result<smsgate_proto::whatsapp_rules::MessageTemplate, LineError> {
    let mut cols = rest.split(';');
    let head = cols.next().unwrap_or_default()[TEMPLATE_PREFIX.len()..].trim();
    let (name, language) = match head.rsplit_once(':') {
        Some((n, l)) => (n.trim(), Some(l.trim().to_string())),
        None => (head, None),
    };
    let mut variables: Vec<String> = cols.map(|v| v.trim().to_string()).collect();
    // The file's optional trailing ';' leaves an empty last column.
    while variables.last().is_some_and(String::is_empty) {
        variables.pop();
    }
    let t = smsgate_proto::whatsapp_rules::MessageTemplate {
        name: name.to_string(),
        language,
        variables,
    };
    t.check().map_err(|why| {
        LineError::new(
            no,
            Rule::BadTemplate,
            format!("the template column {head:?}: {why}"),
        )
    })?;
    Ok(t)
}

fn parse_priority(s: &str) -> Option<u16> {
    let s = s.trim();
    if s.is_empty() || s.len() > 5 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let p: u16 = s.parse().ok()?;
    (PRIORITY_MIN..=PRIORITY_MAX).contains(&p).then_some(p)
}

impl<R: BufRead, F: FnMut(&str) -> bool> Iterator for BulkImport<R, F> {
    type Item = Result<ImportRow, LineError>;

    fn next(&mut self) -> Option<Self::Item> {
        let max = self.rules.max_line_bytes;
        let raw = self.lines.next_line()?;
        let (no, text) = match line_text(raw, max) {
            Ok(t) => t,
            Err(e) => return Some(Err(e)),
        };
        let mut checker = Checker {
            rules: &self.rules,
            dialer_exists: &mut self.dialer_exists,
            known_dialer: &mut self.known_dialer,
        };
        Some(checker.row(no, &text))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(input: &[u8]) -> Vec<Result<ImportRow, LineError>> {
        bulk_import(input, &ImportRules::default(), |d: &str| d == "campsms").collect()
    }

    /// The single error of a one-line (or few-line) file, as (line, rule).
    fn errors(input: &[u8]) -> Vec<(u64, Rule)> {
        parse(input)
            .into_iter()
            .filter_map(Result::err)
            .map(|e| (e.line, e.rule))
            .collect()
    }

    #[test]
    fn a_fifth_column_may_name_a_template_and_its_variables() {
        let rows = parse(
            b"campsms;098344384;Your order;9999;template:order_update:es;Ana;1234;\n\
              campsms;098344385;Hi;10;HXb5b62575e6e4ff6129ad7c8efe1f983e;\n\
              campsms;098344386;Hi;10;template:HXb5b62575e6e4ff6129ad7c8efe1f983e\n",
        );
        let t = |r: &Result<ImportRow, LineError>| r.as_ref().unwrap().template.clone();
        let first = t(&rows[0]).unwrap();
        assert_eq!(first.name, "order_update");
        assert_eq!(first.language.as_deref(), Some("es"));
        assert_eq!(first.variables, vec!["Ana", "1234"]);
        assert_eq!(
            t(&rows[1]),
            None,
            "a fifth column without the prefix is ignored"
        );
        let third = t(&rows[2]).unwrap();
        assert_eq!(third.name, "HXb5b62575e6e4ff6129ad7c8efe1f983e");
        assert_eq!(third.language, None);
        assert_eq!(
            errors(b"campsms;098344384;x;9;template::es;\n"),
            vec![(1, Rule::BadTemplate)]
        );
        assert_eq!(
            errors(b"campsms;098344384;x;9;template:t:es;;Ana;\n"),
            vec![(1, Rule::BadTemplate)],
            "an empty variable before another"
        );
    }

    #[test]
    fn a_good_line_parses() {
        let rows = parse(b"campsms;098344384;Hola Mundo!;9999;\n");
        assert_eq!(
            rows,
            vec![Ok(ImportRow {
                line: 1,
                dialer: "campsms".into(),
                destination: "098344384".into(),
                message: "Hola Mundo!".into(),
                priority: 9999,
                template: None,
            })]
        );
    }

    #[test]
    fn trailing_semicolon_is_optional() {
        let rows = parse(b"campsms;098344384;Hola;1\ncampsms;098344384;Hola;1;\n");
        assert!(rows.iter().all(Result::is_ok), "{rows:?}");
        assert_eq!(rows.len(), 2);
    }

    #[test]
    fn rule_too_few_columns() {
        assert_eq!(
            errors(b"campsms;098344384;Hola;1\ncampsms;098344384;Hola\n"),
            vec![(2, Rule::TooFewColumns)]
        );
        let e = parse(b"campsms\n").remove(0).unwrap_err();
        assert!(e.message.contains("1 column;"), "{}", e.message);
    }

    #[test]
    fn rule_blank_record_in_the_middle_and_after_the_last_line() {
        assert_eq!(
            errors(b"campsms;098344384;Hola;1\n\ncampsms;098344384;Hola;1\n"),
            vec![(2, Rule::BlankRecord)]
        );
        assert_eq!(
            errors(b"campsms;098344384;Hola;1\r\n\r\n   \r\n"),
            vec![(2, Rule::BlankRecord), (3, Rule::BlankRecord)]
        );
        assert_eq!(
            errors(b"campsms;1;Hola;1\n;;;;\n"),
            vec![(2, Rule::BlankRecord)]
        );
        // One final line end is fine.
        assert_eq!(errors(b"campsms;098344384;Hola;1\n"), vec![]);
    }

    #[test]
    fn rule_forbidden_character_names_the_column() {
        let got = parse(b"campsms;098344384;Hola;1\ncampsms;098344384;it's;1\ncampsms;098344384;\"x\";1\ncampsms;a@b;x;1\n");
        let errs: Vec<_> = got.into_iter().filter_map(Result::err).collect();
        assert_eq!(
            errs.iter().map(|e| (e.line, e.rule)).collect::<Vec<_>>(),
            vec![
                (2, Rule::ForbiddenCharacter),
                (3, Rule::ForbiddenCharacter),
                (4, Rule::ForbiddenCharacter)
            ]
        );
        assert!(
            errs[0]
                .message
                .contains("message contains the forbidden character '\\''"),
            "{}",
            errs[0].message
        );
        assert!(
            errs[2].message.contains("destination"),
            "{}",
            errs[2].message
        );
    }

    #[test]
    fn forbidden_characters_come_from_the_config() {
        let rules = ImportRules {
            forbidden: vec!['#'],
            ..ImportRules::default()
        };
        let got: Vec<_> = bulk_import(
            &b"campsms;1;it's @ #1;1\ncampsms;1;it's @;1\n"[..],
            &rules,
            |_: &str| true,
        )
        .collect();
        assert_eq!(got[0].as_ref().unwrap_err().rule, Rule::ForbiddenCharacter);
        assert!(got[1].is_ok());
    }

    #[test]
    fn rule_unknown_dialer_and_lookup_once_per_name() {
        let mut asked = Vec::new();
        let got: Vec<_> = bulk_import(
            &b"campsms;1;a;1\ncampsms;1;a;1\notro;1;a;1\n;1;a;1\ncampsms;1;a;1\n"[..],
            &ImportRules::default(),
            |d: &str| {
                asked.push(d.to_owned());
                d == "campsms"
            },
        )
        .collect();
        let errs: Vec<_> = got
            .iter()
            .filter_map(|r| r.as_ref().err())
            .map(|e| (e.line, e.rule))
            .collect();
        assert_eq!(
            errs,
            vec![(3, Rule::UnknownDialer), (4, Rule::UnknownDialer)]
        );
        assert_eq!(asked, vec!["campsms", "otro"]);
    }

    #[test]
    fn rule_bad_priority() {
        assert_eq!(
            errors(b"campsms;1;a;0\ncampsms;1;a;10000\ncampsms;1;a;-1\ncampsms;1;a;x\ncampsms;1;a;\ncampsms;1;a;1.5\ncampsms;1;a; 7 \n"),
            vec![
                (1, Rule::BadPriority),
                (2, Rule::BadPriority),
                (3, Rule::BadPriority),
                (4, Rule::BadPriority),
                (5, Rule::BadPriority),
                (6, Rule::BadPriority),
            ]
        );
        // A ';' inside the message shifts the columns: say so.
        let e = parse(b"campsms;1;Hola; mundo;5;\n").remove(0).unwrap_err();
        assert_eq!(e.rule, Rule::BadPriority);
        assert!(
            e.message.contains("';' separates the columns"),
            "{}",
            e.message
        );
    }

    #[test]
    fn rule_empty_destination_and_message() {
        assert_eq!(
            errors(b"campsms; ;a;1\ncampsms;1;  ;1\n"),
            vec![(1, Rule::EmptyDestination), (2, Rule::EmptyMessage)]
        );
    }

    #[test]
    fn rule_control_character_and_old_mac_line_ends() {
        assert_eq!(
            errors(b"campsms;1;a\tb;1\ncampsms;1;a;1\rcampsms;1;a;1\r"),
            vec![(1, Rule::ControlCharacter), (2, Rule::ControlCharacter)]
        );
        // A C1 control (NEL, U+0085) in UTF-8, and DEL.
        assert_eq!(
            errors(
                "campsms;1;a\u{85}b;1\ncampsms;1;a\u{7f};1\ncampsms;1;\u{c5}\u{a0};1\n".as_bytes()
            ),
            vec![(1, Rule::ControlCharacter), (2, Rule::ControlCharacter)]
        );
    }

    #[test]
    fn rule_line_too_long_then_reading_goes_on() {
        let rules = ImportRules {
            max_line_bytes: 20,
            ..ImportRules::default()
        };
        let got: Vec<_> = bulk_import(
            &b"campsms;1;a very long message indeed;1\ncampsms;1;a;1\n"[..],
            &rules,
            |_: &str| true,
        )
        .collect();
        assert_eq!(got[0].as_ref().unwrap_err().rule, Rule::LineTooLong);
        assert_eq!(got[1].as_ref().unwrap().line, 2);
    }

    #[test]
    fn rule_text_too_long_for_ten_parts_or_for_the_dialers_gateway() {
        let mut rules = ImportRules {
            max_line_bytes: 16 * 1024,
            ..ImportRules::default()
        };
        rules
            .text_limits
            .insert("viadinstar".into(), (670, "gw1".into()));
        let gsm = |n: usize| "a".repeat(n);
        let ucs2 = |n: usize| "\u{3b1}".repeat(n);
        let file = format!(
            "campsms;1;{};1\ncampsms;1;{};1\ncampsms;1;{};1\nviadinstar;1;{};1\nviadinstar;1;{};1\nviadinstar;1;{};1\n",
            gsm(1530),
            gsm(1531),
            ucs2(671),
            gsm(670),
            gsm(671),
            ucs2(671),
        );
        let got: Vec<_> = bulk_import(file.as_bytes(), &rules, |_: &str| true).collect();
        assert!(got[0].is_ok(), "ten GSM-7 parts are fine");
        for (i, needle) in [
            (1, "11 SMS parts (gsm7)"),
            (2, "11 SMS parts (ucs2)"),
            (
                4,
                "671 characters long; dialer \"viadinstar\" sends through the Dinstar gateway \"gw1\"",
            ),
            (5, "at most 670"),
        ] {
            let e = got[i].as_ref().unwrap_err();
            assert_eq!((e.line, e.rule), (i as u64 + 1, Rule::TextTooLong), "{e:?}");
            assert!(e.message.contains(needle), "line {}: {}", i + 1, e.message);
        }
        assert!(got[3].is_ok(), "670 characters pass a Dinstar gateway");
        assert_eq!(Rule::TextTooLong.code(), "text_too_long");
    }

    #[test]
    fn rule_utf16_file_is_refused_once() {
        let got = parse(b"\xFF\xFEc\x00a\x00\n\x00");
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].as_ref().unwrap_err().rule, Rule::UnsupportedEncoding);
        assert_eq!(Rule::UnsupportedEncoding.code(), "unsupported_encoding");
    }

    #[test]
    fn excel_bom_crlf_and_windows_1252() {
        let rows = parse(b"\xEF\xBB\xBFcampsms;098344384;Caf\xE9 en Espa\xF1a;5;\r\ncampsms;098344384;Caf\xC3\xA9 \xF0\x9F\x98\x80;5\r\n");
        let rows: Vec<ImportRow> = rows.into_iter().map(Result::unwrap).collect();
        assert_eq!(rows[0].dialer, "campsms");
        assert_eq!(rows[0].message, "Café en España");
        assert_eq!(rows[1].message, "Café 😀");
    }

    #[test]
    fn message_spaces_are_kept_other_fields_trimmed() {
        let rows = parse(b" campsms ; 098344384 ;  Hola  ; 12 ;\n");
        let r = rows[0].as_ref().unwrap();
        assert_eq!(
            (
                r.dialer.as_str(),
                r.destination.as_str(),
                r.message.as_str(),
                r.priority
            ),
            ("campsms", "098344384", "  Hola  ", 12)
        );
    }

    #[test]
    fn read_error_ends_the_import() {
        struct Failing;
        impl std::io::Read for Failing {
            fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
                Err(std::io::Error::other("disk on fire"))
            }
        }
        let got: Vec<_> = bulk_import(
            std::io::BufReader::new(Failing),
            &ImportRules::default(),
            |_: &str| true,
        )
        .collect();
        assert_eq!(got.len(), 1);
        let e = got[0].as_ref().unwrap_err();
        assert_eq!((e.line, e.rule), (1, Rule::ReadError));
        assert!(e.message.contains("disk on fire"));
    }

    #[test]
    fn file_names() {
        assert_eq!(check_file_name("DISCTEST29042014.csv"), Ok(()));
        assert_eq!(check_file_name("envio_2026-06-01.csv"), Ok(()));
        assert_eq!(check_file_name(&format!("{}.csv", "a".repeat(60))), Ok(()));
        assert!(matches!(
            check_file_name(&format!("{}.csv", "a".repeat(61))),
            Err(ImportError::FileNameTooLong { chars: 65, .. })
        ));
        assert_eq!(check_file_name(""), Err(ImportError::EmptyFileName));
        for (bad, c) in [
            ("my file.csv", ' '),
            ("año.csv", 'ñ'),
            ("../x.csv", '/'),
            ("a@b.csv", '@'),
            ("a\\b", '\\'),
        ] {
            assert_eq!(
                check_file_name(bad),
                Err(ImportError::FileNameCharacter {
                    name: bad.into(),
                    bad: c
                }),
                "{bad:?}"
            );
        }
        assert!(matches!(
            check_file_name(".csv"),
            Err(ImportError::FileNameStartsWithDot { .. })
        ));
    }

    #[test]
    fn rule_codes_are_stable() {
        let all = [
            (Rule::BlankRecord, "blank_record"),
            (Rule::TooFewColumns, "too_few_columns"),
            (Rule::ForbiddenCharacter, "forbidden_character"),
            (Rule::ControlCharacter, "control_character"),
            (Rule::UnknownDialer, "unknown_dialer"),
            (Rule::EmptyDestination, "empty_destination"),
            (Rule::EmptyMessage, "empty_message"),
            (Rule::BadPriority, "bad_priority"),
            (Rule::BadPhone, "bad_phone"),
            (Rule::TextTooLong, "text_too_long"),
            (Rule::LineTooLong, "line_too_long"),
            (Rule::UnsupportedEncoding, "unsupported_encoding"),
            (Rule::ReadError, "read_error"),
        ];
        for (rule, code) in all {
            assert_eq!(rule.code(), code);
            assert_eq!(rule.to_string(), code);
        }
    }

    proptest::proptest! {
        #[test]
        fn never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
            let rules = ImportRules { max_line_bytes: 64, ..ImportRules::default() };
            let mut lines = 0u64;
            for r in bulk_import(&bytes[..], &rules, |d: &str| d.len() % 2 == 0) {
                let line = match r { Ok(row) => row.line, Err(e) => e.line };
                // Line numbers count up by one, from 1.
                proptest::prop_assert_eq!(line, lines + 1);
                lines = line;
            }
            for r in crate::dialer::dncr_import::dncr_import(&bytes[..], &rules, "UY", |_: &str| true) {
                let _ = r;
            }
        }

        #[test]
        fn semicolon_lines_round_trip(
            dest in "[0-9+ ]{1,15}",
            msg in "[a-zA-Z0-9 ñé!?.,]{0,40}[a-zA-Z]",
            prio in 1u16..=9999,
            crlf in proptest::bool::ANY,
        ) {
            proptest::prop_assume!(!dest.trim().is_empty());
            let text = format!("campsms;{dest};{msg};{prio};{}", if crlf { "\r\n" } else { "\n" });
            let rows: Vec<_> = bulk_import(text.as_bytes(), &ImportRules::default(), |_: &str| true).collect();
            proptest::prop_assert_eq!(rows.len(), 1);
            let row = rows[0].clone().unwrap();
            proptest::prop_assert_eq!(row.destination, dest.trim());
            proptest::prop_assert_eq!(row.message, msg);
            proptest::prop_assert_eq!(row.priority, prio);
        }
    }
}
