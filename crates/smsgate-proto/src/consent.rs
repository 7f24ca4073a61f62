//! Opt-out and opt-in keywords: whether a received text is one.
//!
//! A keyword matches only when it is the whole message once spaces,
//! punctuation, symbols, case and accents are set aside: "Stop." and
//! "baja!" match STOP and BAJA, "STOP this bill" and "no me des de baja"
//! match nothing. A text that merely contains a keyword is a conversation,
//! not a request; reading it as one would unsubscribe customers who wrote
//! "no quiero que me den de baja".

use unicode_normalization::UnicodeNormalization;
use unicode_normalization::char::is_combining_mark;

/// The opt-out keywords used when the config names none: the seed's
/// Spanish ones and those regulators list (CTIA, Ofcom).
pub const DEFAULT_OPT_OUT: &[&str] = &[
    "BAJA",
    "STOP",
    "CANCELAR",
    "UNSUBSCRIBE",
    "END",
    "QUIT",
    "REVOKE",
    "OPTOUT",
    "CANCEL",
    "STOPALL",
];

/// The opt-in keywords used when the config names none.
pub const DEFAULT_OPT_IN: &[&str] = &["ALTA", "START", "UNSTOP"];

/// A text reduced to what keyword matching compares: letters and digits
/// only, accents removed, upper case. Words stay apart by one space, so
/// "OPT OUT" is not "OPTOUT" and "STOP this" is two words.
pub fn fold(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut gap = false;
    for c in text.nfd().filter(|c| !is_combining_mark(*c)) {
        if c.is_alphanumeric() {
            if gap && !out.is_empty() {
                out.push(' ');
            }
            gap = false;
            out.extend(c.to_uppercase());
        } else if c.is_whitespace() {
            gap = true;
        }
        // Punctuation and symbols inside a word ("opt-out", "¡baja!")
        // join its parts: they are not a word boundary the customer meant.
    }
    out
}

/// What a received text asks for, with the list that decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keyword {
    OptOut,
    OptIn,
}

/// Whether `text` is, whole, one of the opt-out or opt-in keywords.
/// Keywords are folded the same way, so the config may write them in any
/// case or with accents. Opt-out wins when a word is on both lists: the
/// safe reading of an ambiguous request is to stop.
pub fn keyword<S: AsRef<str>>(text: &str, opt_out: &[S], opt_in: &[S]) -> Option<Keyword> {
    let folded = fold(text);
    if folded.is_empty() {
        return None;
    }
    let on = |list: &[S]| list.iter().any(|k| fold(k.as_ref()) == folded);
    if on(opt_out) {
        Some(Keyword::OptOut)
    } else if on(opt_in) {
        Some(Keyword::OptIn)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kw(text: &str) -> Option<Keyword> {
        keyword(text, DEFAULT_OPT_OUT, DEFAULT_OPT_IN)
    }

    #[test]
    fn whole_message_keywords_match_whatever_the_case_accents_and_punctuation() {
        for t in [
            "STOP",
            "Stop.",
            "stop",
            "  stop  ",
            "baja!",
            "¡Baja!",
            "BAJA",
            "bája",
            "Cancelar",
            "opt-out",
            "OptOut",
            "unsubscribe\n",
            "\"STOP\"",
            "Stop 🙏",
        ] {
            assert_eq!(kw(t), Some(Keyword::OptOut), "{t:?}");
        }
        for t in ["ALTA", "alta.", "Start", "¡Álta!"] {
            assert_eq!(kw(t), Some(Keyword::OptIn), "{t:?}");
        }
    }

    #[test]
    fn a_keyword_inside_a_sentence_is_not_a_request() {
        for t in [
            "STOP this bill",
            "no me des de baja",
            "baja el precio",
            "stopp",
            "",
            "...",
            "quiero el alta",
            "OPT OUT",
        ] {
            assert_eq!(kw(t), None, "{t:?}");
        }
    }

    #[test]
    fn configured_lists_are_folded_too() {
        assert_eq!(
            keyword("Désabonner", &["DESABONNER"], &["ÁLTA"]),
            Some(Keyword::OptOut)
        );
        assert_eq!(keyword("alta", &["x"], &["ÁLTA"]), Some(Keyword::OptIn));
        assert_eq!(keyword("stop", &["STOP"], &["STOP"]), Some(Keyword::OptOut));
    }
}
