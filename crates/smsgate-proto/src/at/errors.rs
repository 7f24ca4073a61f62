//! What a `+CMS ERROR` / `+CME ERROR` on a send means for the message.
//!
//! The table follows docs/reference at-modems.md §1.4, which draws on:
//! - TS 24.011 Annex E (RP causes 1-127, which modems pass through as CMS
//!   codes) and TS 27.005 §3.2.5 (codes 300-340 and 500);
//! - gammu `libgammu/phone/at/atgen.c` `ATGEN_HandleCMSError` @78fd6a92
//!   (its NETWORK_ERROR / BUG / NOSIM / SECURITY groups);
//! - python-gsmmodem-new 0.13.0 `modem.py` (CME 14 and 515 retried with a
//!   growing delay);
//! - field reports: TinyGSM #413/#243 and gammu #438 (CMS 500 on SIM800 and
//!   SIM7000 sends, no single cause), LilyGo #247 (A76xx errors while
//!   unregistered).

use super::framing::FinalResult;

/// What to do with a message a modem refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// A passing network or modem condition: try the same message again
    /// later (the engine's backoff and `max_attempts` bound it).
    Retry,
    /// The modem cannot send now (no SIM, PIN, no SMSC, not registered for
    /// long): the message goes to another channel and this one is taken out
    /// of use until its health says otherwise.
    PortUnusable,
    /// The message cannot be sent, anywhere (bad destination, barred).
    Permanent,
    /// Our PDU was wrong: never retry; logged loudly so a fuzz case gets
    /// added.
    OurBug,
}

/// `+CMS ERROR: <code>` on `AT+CMGS`.
pub fn classify_cms(code: u16) -> ErrorClass {
    use ErrorClass::*;
    match code {
        // 24.011 Annex E, temporary network conditions; gammu's
        // NETWORK_ERROR group (38, 41, 42, 47).
        38 | 41 | 42 | 47 => Retry,
        // 27.005: 331 no network service, 332 network timeout (gammu
        // NETWORK_ERROR). The health poll takes the port out of use if the
        // registration stays lost.
        331 | 332 => Retry,
        // 27.005 314 SIM busy; vendor 512/532 "SIM not ready" and 535
        // "PS busy" (gammu BUSY): wait and retry.
        314 | 512 | 532 | 535 => Retry,
        // 500 "unknown" (SIM800/SIM7000 field reports name no single cause)
        // and 300 "ME failure": ambiguous. Retried a bounded number of times
        // by the engine; the session also re-reads the modem's health.
        300 | 500 => Retry,
        // 24.011 Annex E causes about the destination or subscription:
        // 1 unassigned number, 8 operator barring, 10 call barred,
        // 21 short message transfer rejected, 27 destination out of order,
        // 28 unidentified subscriber, 29 facility rejected, 30 unknown
        // subscriber, 50 facility not subscribed, 69 not implemented,
        // 95-99 invalid / unknown message.
        1 | 8 | 10 | 21 | 27 | 28 | 29 | 30 | 50 | 69 | 81 | 95..=99 => Permanent,
        // 27.005 304/305 invalid PDU/text parameter; vendor 513-519 and
        // 549-554 (length, MTI, UDL, SCA; gammu's BUG group; 514 515 517
        // 519 520 538 too): our encoding was refused.
        304 | 305 | 513..=520 | 538 | 549..=554 => OurBug,
        // 27.005: 302 operation not allowed (wrong mode or SIM locked),
        // 310 no SIM, 311/312/316-318 PIN/PUK, 313/315 SIM failure/wrong,
        // 330 SMSC address unknown, 322 memory full (gammu NOSIM, SECURITY,
        // FULL groups): the modem must be fixed; other channels can send.
        302 | 310..=318 | 320 | 322 | 330 => PortUnusable,
        // Everything else (gammu's UNKNOWN): treat as a passing failure;
        // the engine's max_attempts stops an endless loop.
        _ => Retry,
    }
}

/// `+CME ERROR: <code>` (some modems answer `AT+CMGS` with one).
pub fn classify_cme(code: u16) -> ErrorClass {
    use ErrorClass::*;
    match code {
        // 14 SIM busy, 30 no network, 31 network timeout, 515 "please wait,
        // init in progress" (python-gsmmodem retries these), 100 unknown.
        14 | 30 | 31 | 515 | 100 | 0 => Retry,
        // 10-13, 15-18 SIM missing / PIN / PUK / failure; 20 memory full.
        10..=13 | 15..=18 | 20 => PortUnusable,
        // 3 not allowed, 4 not supported, 24-27 text too long / bad chars.
        3 | 4 | 24..=27 => OurBug,
        _ => Retry,
    }
}

/// The class of any final result that is not OK. A bare `ERROR` says
/// nothing: a retry (with the engine's bound) is the safe reading.
pub fn classify(result: &FinalResult) -> ErrorClass {
    match result {
        FinalResult::Ok => ErrorClass::Retry,
        FinalResult::Error(_) => ErrorClass::Retry,
        FinalResult::Cms(c) => c.code.map_or(ErrorClass::Retry, classify_cms),
        FinalResult::Cme(c) => c.code.map_or(ErrorClass::Retry, classify_cme),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reference_table() {
        for c in [38, 41, 42, 47, 331, 332, 314, 500, 535] {
            assert_eq!(classify_cms(c), ErrorClass::Retry, "{c}");
        }
        for c in [1, 8, 10, 21, 27, 28, 29, 30, 50, 96] {
            assert_eq!(classify_cms(c), ErrorClass::Permanent, "{c}");
        }
        for c in [304, 305, 514, 515, 517, 550] {
            assert_eq!(classify_cms(c), ErrorClass::OurBug, "{c}");
        }
        for c in [302, 310, 311, 313, 316, 322, 330] {
            assert_eq!(classify_cms(c), ErrorClass::PortUnusable, "{c}");
        }
        assert_eq!(classify_cme(14), ErrorClass::Retry);
        assert_eq!(classify_cme(10), ErrorClass::PortUnusable);
    }
}
