//! The Dinstar HTTP API, what comes from the gateway: any bytes as a reply
//! body (the envelope and every endpoint's reader) and as a push body never
//! panic, whatever the JSON holds. HTTP Digest: any challenge and any
//! `Authorization` value parse without a panic, and the header we build
//! for any challenge, user, password and URI is read back field by field
//! by the simulator's parser and verifies with the same password (and not
//! with another).
//!
//! Input: the body; its first three lines (lossy UTF-8) are also the user,
//! password and URI of the Digest round trip.
#![no_main]

use libfuzzer_sys::fuzz_target;
use smsgate_proto::dinstar::{digest, wire};

fuzz_target!(|body: &[u8]| {
    let lossy = String::from_utf8_lossy(body);
    let mut lines = lossy.split('\n');
    let user = lines.next().unwrap_or_default();
    let password = lines.next().unwrap_or_default();
    let uri = lines.next().unwrap_or_default();
    let nc = body.len() as u32;
    let sess = body.len() % 2 == 1;

    if let Ok(env) = wire::parse_envelope(body) {
        let _ = wire::error_code_words(env.error_code);
        let _ = wire::send_accepted(&env);
        for r in wire::sms_results(&env) {
            let _ = r.status.is_pending();
        }
        for d in wire::deliver_statuses(&env) {
            let _ = d.outcome();
        }
        let _ = wire::incoming_batch(&env);
        for p in wire::port_infos(&env) {
            let _ = (p.looks_usable(), p.sim_missing());
        }
        let _ = wire::ussd_statuses(&env);
        let _ = wire::ussd_replies(&env);
    }
    let _ = wire::parse_push(body);

    let text = &lossy;
    let _ = wire::normalize_time(text);
    let _ = wire::parse_int_list(text);
    let _ = wire::Encoding::from_wire(text);
    let _ = digest::Challenge::parse(text);
    let _ = digest::DigestCredentials::parse(text);
    let _ = digest::parse_basic(text);

    // Basic: what we write is read back.
    if !user.contains(':') {
        let header = digest::basic_authorization(user, password);
        assert_eq!(
            digest::parse_basic(&header),
            Some((user.to_string(), password.to_string()))
        );
    }

    // Digest: a challenge we accept, the header we answer it with, read
    // back as the simulator does.
    let realm = user.chars().rev().collect::<String>();
    let challenge = format!(
        "Digest realm=\"{}\", nonce=\"{}\", qop=\"auth\", algorithm={}",
        quote(&realm),
        quote(uri),
        if sess { "MD5-sess" } else { "MD5" }
    );
    let Ok(ch) = digest::Challenge::parse(&challenge) else {
        return;
    };
    let header = digest::authorization(&ch, user, password, "POST", uri, nc, "0a4f113b");
    let creds = digest::DigestCredentials::parse(&header).expect("our own header parses");
    assert_eq!(creds.username, user);
    assert_eq!(creds.realm, ch.realm);
    assert_eq!(creds.nonce, ch.nonce);
    assert_eq!(creds.uri, uri);
    assert!(creds.verify(password, "POST"), "{header}");
    assert!(!creds.verify(&format!("{password}x"), "POST"));
});

fn quote(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}
