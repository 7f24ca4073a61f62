//! Phone-number normalisation (`sms::phone`): any text with any default
//! country gives an E.164 number or a reason, never a panic. An E.164
//! result is '+' and 2 to 15 digits, normalises to itself (whatever the
//! default country), and is the number's DNCR key; a number that does not
//! normalise has its digits as its DNCR key.
//!
//! Input: the number, optionally LF and a default country to try as well;
//! the number is also read in one of eight countries picked by its length.
#![no_main]

use libfuzzer_sys::fuzz_target;
use smsgate_proto::sms::phone;

const COUNTRIES: [&str; 8] = ["UY", "AR", "ES", "US", "GB", "BR", "MX", "DE"];

fuzz_target!(|text: &str| {
    let (raw, country) = text.split_once('\n').unwrap_or((text, "UY"));
    let pick = raw.len();
    let _ = phone::check_country(country);
    let _ = phone::normalise(raw, country);
    let country = COUNTRIES[pick % COUNTRIES.len()];
    let key = phone::dncr_key(raw, country);
    match phone::normalise(raw, country) {
        Ok(n) => {
            let e164 = n.as_str();
            let digits = &e164[1..];
            assert!(e164.starts_with('+'), "{e164}");
            assert!(digits.bytes().all(|b| b.is_ascii_digit()), "{e164}");
            assert!((2..=15).contains(&digits.len()), "{e164}");
            for other in ["UY", "US"] {
                let again = phone::normalise(e164, other).map(|n| n.into_string());
                assert_eq!(again.as_deref(), Ok(e164), "{raw:?} in {country}");
            }
            assert_eq!(key, e164);
        }
        Err(e) => {
            let _ = e.to_string();
            let digits: String = raw.chars().filter(char::is_ascii_digit).collect();
            assert_eq!(key, digits);
        }
    }
});
