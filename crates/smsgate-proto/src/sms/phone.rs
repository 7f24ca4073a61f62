//! Phone number normalisation to E.164.
//!
//! Every number that enters smsgate (a bulk CSV line, a DNCR upload, an API
//! send, an inbound sender) goes through [`normalise`] with the configured
//! default country, so that "098344384", "+598 98 344 384" and
//! "0059898344384" are one and the same number "+59898344384". The DNCR check
//! compares [`dncr_key`]s, so a blocked number matches in any written form.
//!
//! The numbering-plan knowledge comes from the `phonenumber` crate (a port of
//! Google's libphonenumber, metadata compiled in). It is pinned to 0.3: 0.4
//! from git was reported to use hundreds of MB after the first parse (see
//! reference/rust-notes.md B.6).
//!
//! What "invalid" means here: the number cannot be parsed, or its national
//! significant number has a length that the country's numbering plan never
//! uses. We deliberately do NOT require the number to fall in a range the
//! metadata lists as assigned (`phonenumber::is_valid`): the metadata only
//! changes with a crate update, and a real, newly opened mobile range must
//! not be marked INVALID because our copy is old. The gateway reports a
//! number that truly does not exist.

use std::fmt;

use phonenumber::country;
use phonenumber::metadata::DATABASE;

/// A phone number in E.164 form: '+', the country code, the national
/// significant number, digits only ("+59898344384").
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PhoneNumber(String);

impl PhoneNumber {
    /// The E.164 text, e.g. "+59898344384".
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The E.164 text, owned.
    pub fn into_string(self) -> String {
        self.0
    }
}

impl fmt::Display for PhoneNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for PhoneNumber {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// Why a text is not a phone number we can send to. The dialer stores such a
/// message as INVALID (the dashboard's "others") and shows this sentence.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PhoneError {
    #[error("the phone number is empty")]
    Empty,
    #[error("the phone number {raw:?} contains letters; only digits are allowed")]
    Letters { raw: String },
    #[error(
        "the phone number {raw:?} contains {bad:?}; only digits, a leading '+', spaces, '-', '.', '/' and brackets are allowed"
    )]
    BadCharacter { raw: String, bad: char },
    #[error("the phone number {raw:?} has too few digits to be a phone number")]
    TooShort { raw: String },
    #[error("the phone number {raw:?} has too many digits to be a phone number")]
    TooLong { raw: String },
    #[error("the phone number {raw:?} starts with +{code}, which is not a country calling code")]
    UnknownCountryCode { raw: String, code: String },
    #[error(
        "the phone number {raw:?} has {digits} digits after the country code +{code}, a length that numbers in that country never have"
    )]
    ImpossibleLength {
        raw: String,
        code: u16,
        digits: usize,
    },
    #[error(
        "{country:?} is not a known ISO 3166 two-letter country code (for example \"UY\", \"AR\", \"ES\")"
    )]
    UnknownCountry { country: String },
}

impl PhoneError {
    /// The same reason, about the text `raw` as it was written.
    fn with_raw(self, raw: &str) -> PhoneError {
        let raw = raw.to_owned();
        match self {
            PhoneError::Letters { .. } => PhoneError::Letters { raw },
            PhoneError::BadCharacter { bad, .. } => PhoneError::BadCharacter { raw, bad },
            PhoneError::TooShort { .. } => PhoneError::TooShort { raw },
            PhoneError::TooLong { .. } => PhoneError::TooLong { raw },
            PhoneError::UnknownCountryCode { code, .. } => {
                PhoneError::UnknownCountryCode { raw, code }
            }
            PhoneError::ImpossibleLength { code, digits, .. } => {
                PhoneError::ImpossibleLength { raw, code, digits }
            }
            e @ (PhoneError::Empty | PhoneError::UnknownCountry { .. }) => e,
        }
    }
}

/// Checks a configured default country ("UY"), so that the config loader can
/// refuse a bad one at startup rather than on every number.
pub fn check_country(default_country: &str) -> Result<(), PhoneError> {
    country_id(default_country).map(|_| ())
}

fn country_id(code: &str) -> Result<country::Id, PhoneError> {
    let upper = code.trim().to_ascii_uppercase();
    upper
        .parse::<country::Id>()
        .ok()
        // "001" (non-geographic) parses in some versions; it is no default.
        .filter(|_| upper.len() == 2 && upper.bytes().all(|b| b.is_ascii_uppercase()))
        .ok_or_else(|| PhoneError::UnknownCountry {
            country: code.to_owned(),
        })
}

/// Loads the numbering-plan metadata (about 10 MB) now, so that the first
/// number of the first import does not pay for it and the memory shows up at
/// startup, where `MemoryMax=` problems are easy to see.
pub fn warm_up() {
    let _ = normalise("+59898344384", "UY");
}

/// Normalises `raw` to E.164. A number without '+' (or an international
/// prefix such as "00") is read as a number of `default_country`, with its
/// national trunk prefix ("0" in Uruguay) removed.
///
/// ```
/// use smsgate_proto::sms::phone::normalise;
/// assert_eq!(normalise("098344384", "UY").unwrap().as_str(), "+59898344384");
/// ```
pub fn normalise(raw: &str, default_country: &str) -> Result<PhoneNumber, PhoneError> {
    let text = raw.trim();
    if text.is_empty() {
        return Err(PhoneError::Empty);
    }
    let mut digits = 0usize;
    for (i, c) in text.char_indices() {
        match c {
            '0'..='9' => digits += 1,
            '+' if i == 0 => {}
            ' ' | '-' | '.' | '/' | '(' | ')' => {}
            c if c.is_alphabetic() => {
                return Err(PhoneError::Letters {
                    raw: raw.to_owned(),
                });
            }
            c => {
                return Err(PhoneError::BadCharacter {
                    raw: raw.to_owned(),
                    bad: c,
                });
            }
        }
    }
    // libphonenumber's own limits: fewer than 3 digits is no number, more
    // than 17 is none either (15 for E.164 plus an international prefix).
    if digits < 3 {
        return Err(PhoneError::TooShort {
            raw: raw.to_owned(),
        });
    }
    if digits > 17 {
        return Err(PhoneError::TooLong {
            raw: raw.to_owned(),
        });
    }
    let id = country_id(default_country)?;
    let (mut e164, mut again) = read(raw, text, Some(id))?;
    // Read back what was read: the phonenumber crate strips national and
    // carrier prefixes from a number written with its country code too, so
    // an E.164 form may read as another number ("(011) 4321-5678" in
    // Germany gave +491143215678, which reads as +4943215678). The form
    // kept is one that reads back as itself (in its own country's rules),
    // so that a number and the E.164 form smsgate shows for it get the same
    // DNCR key. Only a national number that starts with such a prefix can
    // read differently, so most numbers are read once.
    // Each read that changes the number strips a prefix, so a number of at
    // most 17 digits settles within 17 reads ("(00000000000121" in Germany
    // loses one zero at a time).
    for _ in 0..17 {
        if !again {
            break;
        }
        match read(&e164, &e164, None) {
            Ok((next, more)) if next != e164 => (e164, again) = (next, more),
            Ok(_) => break,
            // An E.164 form that is no number when read again ("0000598"
            // in Germany gave +4900598, read back as 3 digits) is no
            // number to send to either.
            Err(e) => return Err(e.with_raw(raw)),
        }
    }
    Ok(PhoneNumber(e164))
}

/// `text` (the trimmed `raw`) as E.164, read as a number of `country`
/// unless it starts with '+' (then the rules of the country it names
/// apply), with the length check; and whether its national number starts
/// with a prefix the phonenumber crate would strip when reading it again.
fn read(raw: &str, text: &str, country: Option<country::Id>) -> Result<(String, bool), PhoneError> {
    let country = if text.starts_with('+') { None } else { country };
    let parsed = phonenumber::parse(country, text).map_err(|e| match e {
        phonenumber::ParseError::InvalidCountryCode => PhoneError::UnknownCountryCode {
            raw: raw.to_owned(),
            code: text
                .trim_start_matches('+')
                .chars()
                .filter(char::is_ascii_digit)
                .take(3)
                .collect(),
        },
        phonenumber::ParseError::TooLong => PhoneError::TooLong {
            raw: raw.to_owned(),
        },
        _ => PhoneError::TooShort {
            raw: raw.to_owned(),
        },
    })?;

    let code = parsed.code().value();
    // NationalNumber's Display keeps meaningful leading zeros (Italy).
    let national = parsed.national().to_string();
    let Some(meta) = DATABASE.by_code(&code).and_then(|m| m.into_iter().next()) else {
        return Err(PhoneError::UnknownCountryCode {
            raw: raw.to_owned(),
            code: code.to_string(),
        });
    };
    let len = national.len();
    if !possible_length(meta, len) {
        return Err(PhoneError::ImpossibleLength {
            raw: raw.to_owned(),
            code,
            digits: len,
        });
    }
    // E.164 numbers have at most 15 digits, country code included; some
    // countries' metadata allows national numbers that, with the code,
    // would be longer.
    if code.to_string().len() + len > 15 {
        return Err(PhoneError::TooLong {
            raw: raw.to_owned(),
        });
    }
    let mut e164 = String::with_capacity(1 + 3 + len);
    e164.push('+');
    e164.push_str(&code.to_string());
    e164.push_str(&national);
    let strips = meta
        .national_prefix()
        .is_some_and(|p| national.starts_with(p))
        || meta
            .national_prefix_for_parsing()
            .and_then(|re| re.find(&national))
            .is_some_and(|m| m.start() == 0);
    Ok((e164, strips))
}

/// Whether a number of the country that can receive an SMS (fixed line,
/// mobile, VoIP, personal number, pager) can have `len` digits in its national
/// significant number. The crate's metadata leaves the general descriptor's
/// lengths empty, so we take the union of those types. Toll-free, premium,
/// shared-cost and UAN numbers are left out on purpose: they do not receive
/// SMS, and in Uruguay toll-free numbers have any length from 6 to 13 digits,
/// which would make every typo "possible". Local-only lengths (no area code)
/// do not count either: they cannot be written in E.164.
fn possible_length(meta: &phonenumber::Metadata, len: usize) -> bool {
    let d = meta.descriptors();
    let types = [
        d.fixed_line(),
        d.mobile(),
        d.voip(),
        d.personal_number(),
        d.pager(),
    ];
    let mut any_listed = false;
    for desc in types.into_iter().flatten() {
        let lengths = desc.possible_length();
        any_listed |= !lengths.is_empty();
        if lengths.iter().any(|&l| usize::from(l) == len) {
            return true;
        }
    }
    let general = d.general().possible_length();
    if general.iter().any(|&l| usize::from(l) == len) {
        return true;
    }
    // Metadata without any length (a non-geographic entity, say): we cannot
    // judge, so the libphonenumber parse having succeeded has to do.
    !any_listed && general.is_empty()
}

/// The key a DNCR entry is stored and looked up under: the E.164 form when
/// the text normalises, otherwise its bare digits. The fallback keeps odd
/// entries (the seed's sample "123578408" is not a possible Uruguayan number)
/// loadable, and they still match a destination written the same way, since
/// the same function computes both sides. Returns an empty string when `raw`
/// has no digit at all; callers refuse such an entry.
pub fn dncr_key(raw: &str, default_country: &str) -> String {
    match normalise(raw, default_country) {
        Ok(n) => n.into_string(),
        Err(_) => raw.chars().filter(char::is_ascii_digit).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(raw: &str, country: &str) -> String {
        match normalise(raw, country) {
            Ok(n) => n.into_string(),
            Err(e) => panic!("{raw:?} in {country}: {e}"),
        }
    }

    /// Found by the `phone` fuzz target: the E.164 form of a number read
    /// as another number, so the number and its E.164 form had different
    /// DNCR keys.
    #[test]
    fn an_e164_result_reads_back_as_itself() {
        let e164 = ok("(011) 4321-5678", "DE");
        assert_eq!(ok(&e164, "DE"), e164);
        assert_eq!(ok(&e164, "UY"), e164);
        assert_eq!(dncr_key(&e164, "UY"), dncr_key("(011) 4321-5678", "DE"));
        // Read back one zero at a time, down to no number at all.
        assert!(normalise("(00000000000121", "DE").is_err());
        // An E.164 form that reads back as no number: the number is none.
        assert!(matches!(
            normalise("0000598", "DE"),
            Err(PhoneError::ImpossibleLength { raw, .. }) if raw == "0000598"
        ));
    }

    /// Found by the `phone` fuzz target: Germany's metadata allows a
    /// 14-digit national number, which made a 16-digit "E.164" number.
    #[test]
    fn an_e164_number_has_at_most_15_digits() {
        assert!(matches!(
            normalise("8050.9434344384", "DE"),
            Err(PhoneError::TooLong { raw }) if raw == "8050.9434344384"
        ));
        assert!(matches!(
            normalise("+49 80509434344384", "UY"),
            Err(PhoneError::TooLong { .. })
        ));
    }

    #[test]
    fn uruguay_local_mobile_gets_country_code_and_loses_trunk_zero() {
        assert_eq!(ok("098344384", "UY"), "+59898344384");
        assert_eq!(ok("98344384", "UY"), "+59898344384");
        assert_eq!(ok("098 344 384", "uy"), "+59898344384");
    }

    #[test]
    fn international_forms_are_the_same_number() {
        assert_eq!(ok("+598 98 344 384", "UY"), "+59898344384");
        assert_eq!(ok("0059898344384", "UY"), "+59898344384");
        assert_eq!(ok("+59898344384", "AR"), "+59898344384");
        assert_eq!(ok("+34 612-345-678", "UY"), "+34612345678");
        assert_eq!(ok("(011) 1234-5678", "AR"), "+541112345678");
    }

    #[test]
    fn empty_and_blank_are_empty() {
        assert_eq!(normalise("", "UY"), Err(PhoneError::Empty));
        assert_eq!(normalise("   ", "UY"), Err(PhoneError::Empty));
    }

    #[test]
    fn letters_are_refused_in_plain_words() {
        let e = normalise("09834abc4", "UY").unwrap_err();
        assert!(matches!(e, PhoneError::Letters { .. }), "{e:?}");
        assert!(e.to_string().contains("letters"));
    }

    #[test]
    fn odd_characters_are_refused() {
        let e = normalise("098344384@", "UY").unwrap_err();
        assert_eq!(
            e,
            PhoneError::BadCharacter {
                raw: "098344384@".into(),
                bad: '@'
            }
        );
        // A '+' in the middle is not a leading '+'.
        assert!(matches!(
            normalise("0983+44384", "UY"),
            Err(PhoneError::BadCharacter { bad: '+', .. })
        ));
    }

    #[test]
    fn impossible_lengths_are_invalid() {
        // Uruguayan numbers have 8 digits (plus short codes); 6 is none.
        let e = normalise("098344", "UY").unwrap_err();
        assert!(matches!(e, PhoneError::ImpossibleLength { .. }), "{e:?}");
        assert!(matches!(
            normalise("09834438412", "UY"),
            Err(PhoneError::ImpossibleLength { .. })
        ));
        assert!(matches!(
            normalise("12", "UY"),
            Err(PhoneError::TooShort { .. })
        ));
        assert!(matches!(
            normalise("123456789012345678", "UY"),
            Err(PhoneError::TooLong { .. })
        ));
    }

    #[test]
    fn unknown_country_calling_code_is_refused() {
        let e = normalise("+999 1234 5678", "UY").unwrap_err();
        assert!(matches!(e, PhoneError::UnknownCountryCode { .. }), "{e:?}");
    }

    #[test]
    fn bad_default_country_is_refused() {
        assert!(check_country("UY").is_ok());
        assert!(check_country("es").is_ok());
        for bad in ["", "XX", "URY", "001", "U"] {
            assert!(
                matches!(check_country(bad), Err(PhoneError::UnknownCountry { .. })),
                "{bad:?}"
            );
        }
        assert!(matches!(
            normalise("098344384", "XX"),
            Err(PhoneError::UnknownCountry { .. })
        ));
    }

    #[test]
    fn dncr_key_matches_any_written_form() {
        let a = dncr_key("098344384", "UY");
        assert_eq!(a, "+59898344384");
        assert_eq!(dncr_key("+598 98-344-384", "UY"), a);
        assert_eq!(dncr_key("0059898344384", "UY"), a);
    }

    #[test]
    fn dncr_key_falls_back_to_bare_digits() {
        // The seed's DNCR sample: 9 digits starting with 1 is no Uruguayan
        // number, so it is kept as written and still matches itself.
        assert!(normalise("123578408", "UY").is_err());
        assert_eq!(dncr_key("123578408", "UY"), "123578408");
        assert_eq!(dncr_key("123-578-408", "UY"), "123578408");
        assert_eq!(dncr_key("abc", "UY"), "");
    }

    #[test]
    fn warm_up_does_not_panic_and_normalise_works_after() {
        warm_up();
        assert_eq!(ok("098344384", "UY"), "+59898344384");
    }
}
