//! Consent keywords (`consent`): any text against any keyword lists never
//! panics. Folding is stable (a folded text folds to itself), so a keyword
//! written in its folded form matches the texts it stands for; a text
//! matches the default lists only when it folds to one of their words
//! (never a sentence that merely holds one); opt-out wins over opt-in.
//!
//! Input: the text, optionally LF and comma-separated opt-out keywords,
//! LF and comma-separated opt-in keywords.
#![no_main]

use libfuzzer_sys::fuzz_target;
use smsgate_proto::consent::{self, DEFAULT_OPT_IN, DEFAULT_OPT_OUT, Keyword};

fuzz_target!(|input: &str| {
    let mut lines = input.split('\n');
    let text = lines.next().unwrap_or_default();
    let opt_out: Vec<&str> = lines.next().unwrap_or_default().split(',').collect();
    let opt_in: Vec<&str> = lines.next().unwrap_or_default().split(',').collect();
    let folded = consent::fold(text);
    assert_eq!(consent::fold(&folded), folded, "{text:?}");
    let _ = consent::keyword(text, &opt_out, &opt_in);

    match consent::keyword(text, DEFAULT_OPT_OUT, DEFAULT_OPT_IN) {
        Some(Keyword::OptOut) => assert!(DEFAULT_OPT_OUT.contains(&folded.as_str())),
        Some(Keyword::OptIn) => assert!(DEFAULT_OPT_IN.contains(&folded.as_str())),
        None => assert!(
            !DEFAULT_OPT_OUT.contains(&folded.as_str())
                && !DEFAULT_OPT_IN.contains(&folded.as_str())
        ),
    }
    if !folded.is_empty() {
        let own = [folded.as_str()];
        assert_eq!(consent::keyword(text, &own, &own), Some(Keyword::OptOut));
        assert_eq!(consent::keyword(text, &[], &own), Some(Keyword::OptIn));
    }
});
