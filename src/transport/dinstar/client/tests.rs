//! Unit tests of the Dinstar client: kept beside it rather than inside so
//! client.rs holds only the client.

use super::*;

#[test]
fn debug_hides_the_password() {
    let c = DinstarClientConfig::new("gw1", "http://127.0.0.1:1", "admin", "s3cr3t-pw");
    assert!(!format!("{c:?}").contains("s3cr3t-pw"));
    let client = DinstarClient::new(c).unwrap();
    assert!(!format!("{client:?}").contains("s3cr3t-pw"));
}

#[test]
fn bad_base_urls() {
    for u in ["ftp://x", "not a url", "http://u:p@host"] {
        let c = DinstarClientConfig::new("gw", u, "a", "b");
        assert!(
            matches!(DinstarClient::new(c), Err(DinstarError::Setup(_))),
            "{u}"
        );
    }
}

#[test]
fn code_classification() {
    let env = wire::parse_envelope(br#"{"error_code":413}"#).unwrap();
    assert!(matches!(
        code_error(&env, 413),
        DinstarError::Permanent { code: 413, .. }
    ));
    assert_eq!(code_error(&env, 550), DinstarError::PortUnusable);
    assert!(matches!(
        code_error(&env, 500),
        DinstarError::Temporary {
            gateway_code: Some(500),
            never_left: false,
            ..
        }
    ));
    let r = Reply {
        status: StatusCode::OK,
        body: b"garbage".to_vec(),
    };
    assert!(matches!(classify(&r), Err(DinstarError::Temporary { .. })));
}
