//! Unit tests of the wire format: kept beside it rather than inside so the
//! format's files hold only the format.

use super::*;

fn env(s: &str) -> Envelope {
    parse_envelope(s.as_bytes()).expect("envelope")
}

#[test]
fn envelope_accepts_string_codes_and_rejects_junk() {
    assert_eq!(env(r#"{"error_code":"202","sn":" a-b "}"#).error_code, 202);
    assert_eq!(env(r#"{"error_code":202}"#).sn, None);
    assert_eq!(
        env(r#"{"error_code":400,"reason":"bad number"}"#).reason,
        Some("bad number".into())
    );
    assert!(matches!(parse_envelope(b""), Err(ReplyError::NotJson(_))));
    assert!(matches!(
        parse_envelope(b"<html>"),
        Err(ReplyError::NotJson(_))
    ));
    assert_eq!(parse_envelope(b"[1]"), Err(ReplyError::NotObject));
    assert_eq!(parse_envelope(b"{\"sn\":1}"), Err(ReplyError::NoErrorCode));
    assert_eq!(
        parse_envelope(b"{\"error_code\":-5}"),
        Err(ReplyError::NoErrorCode)
    );
    assert_eq!(
        env("\u{feff}{\"error_code\":200}\r\n\0").error_code,
        200,
        "BOM and trailing NUL tolerated"
    );
}

#[test]
fn send_accepted_fields() {
    let e = env(r#"{"error_code":202,"sn":"x","sms_in_queue":"2","task_id":1284}"#);
    let a = send_accepted(&e);
    assert_eq!(a.task_id, Some(1284));
    assert_eq!(a.sms_in_queue, Some(2));
}

#[test]
fn results_with_typos() {
    let e = env(r#"{"error_code":200,"result":[
            {"port":"0","user_id":100001,"number":" 10086","time":"2016-07-1215:46:53",
             "status":"SENT_OK","count":1,"succ_count":"1","ref_id":37,"imsi":"460001234567890 "},
            {"port":1,"status":"sending"}, 5, "junk"]}"#);
    let r = sms_results(&e);
    assert_eq!(r.len(), 2);
    assert_eq!(r[0].port, Some(0));
    assert_eq!(r[0].number.as_deref(), Some("10086"));
    assert_eq!(r[0].time.as_deref(), Some("2016-07-12 15:46:53"));
    assert_eq!(r[0].imsi.as_deref(), Some("460001234567890"));
    assert_eq!(r[0].status, SmsStatus::SentOk);
    assert_eq!(r[0].succ_count, Some(1));
    assert_eq!(r[1].status, SmsStatus::Sending);
    assert!(r[1].status.is_pending());
}

#[test]
fn delivery_outcomes() {
    assert_eq!(
        DeliveryOutcome::from_status_code(Some(0)),
        DeliveryOutcome::Delivered
    );
    assert_eq!(
        DeliveryOutcome::from_status_code(Some(5)),
        DeliveryOutcome::CompletedUnconfirmed
    );
    assert_eq!(
        DeliveryOutcome::from_status_code(Some(40)),
        DeliveryOutcome::Pending
    );
    assert_eq!(
        DeliveryOutcome::from_status_code(Some(64)),
        DeliveryOutcome::Failed
    );
    assert_eq!(
        DeliveryOutcome::from_status_code(None),
        DeliveryOutcome::Unknown
    );
}

#[test]
fn port_info_variants() {
    let e = env(r#"{"error_code":200,"info":[
            {"port":1,"type":"LTE","imsi":"","number":"","reg":"NO_SIM","signal":"0"},
            {"port":0,"type":"LTE","imsi":"460001234567890","reg":"REGISTER_OK","signal":23,
             "remain_daily_call_time":"10","remain_daily_connected":""},
            {"type":"no port"}]}"#);
    let p = port_infos(&e);
    assert_eq!(p.len(), 2);
    assert_eq!(p[0].port, 0);
    assert!(p[0].looks_usable());
    assert_eq!(
        p[0].remain.get("remain_daily_calltime").map(String::as_str),
        Some("10")
    );
    assert!(!p[0].remain.contains_key("remain_daily_connect"));
    assert_eq!(p[1].reg, Some(RegStatus::NoSim));
    assert!(p[1].sim_missing());
    assert_eq!(p[1].imsi, None);
    assert_eq!(p[1].signal, Some(0));
}

#[test]
fn incoming_sorted_and_text_kept() {
    let e = env(r#"{"error_code":200,"sms":[
            {"incoming_sms_id":43,"port":1,"number":"1","text":"  hola  "},
            {"incoming_sms_id":"42","port":0,"number":"2","text":""}],"read":"1","unread":0}"#);
    let b = incoming_batch(&e);
    assert_eq!(b.sms[0].incoming_sms_id, Some(42));
    assert_eq!(b.sms[1].text, "  hola  ");
    assert_eq!(b.read, Some(1));
}

#[test]
fn push_every_kind() {
    let cases: &[(&str, usize)] = &[
        (
            r#"{"sn":"s","sms":[{"incoming_sms_id":7,"port":1,"number":"6717","smsc":"+8613800757511","timestamp":"2016-07-12 15:46:18","text":"test"}]}"#,
            1,
        ),
        (
            r#"{"sn":"s","sms_result":[{"port":1,"number":" 10086","time":"2016-07-12 01:46:02","status":"DELIVERED","count":1,"succ_count":1,"ref_id":215,"imsi":"460004642148063 "}]}"#,
            1,
        ),
        (
            r#"{"sn":"s","sms_deliver_status":[{"port":1,"number":"10086","time":"2016-07-1215:46:53","ref_id":215,"status_code":0,"imsi":"460004642148063"}]}"#,
            1,
        ),
        (
            r#"{"sn":"s","register":[{"port":8,"iccid":"<NULL>","imsi":"<NULL>","number":"13714637674","status":"down","sequence":1,"slot":2}]}"#,
            1,
        ),
        (
            r#"{"sn":"s","device":{"port_number":8,"IP":"10.0.0.2","MAC":"00:11","status":"power_off"}}"#,
            1,
        ),
        (
            r#"{"sn":"s","exception_info":{"port":0,"type":"call_fail","action":"reset"}}"#,
            1,
        ),
        (r#"{"sn":"s","ussd":[{"port":0,"text":"Saldo 10"}]}"#, 1),
        (r#"{"sn":"s","sms":[]}"#, 0),
    ];
    for (body, n) in cases {
        let ev = parse_push(body.as_bytes()).expect(body);
        assert_eq!(ev.len(), *n, "{body}");
        for e in &ev {
            assert_eq!(e.sn.as_deref(), Some("s"));
        }
    }
    let ev = parse_push(cases[3].0.as_bytes()).unwrap();
    let PushEventKind::Register(r) = &ev[0].kind else {
        panic!("not register")
    };
    assert_eq!(r.iccid, None);
    assert_eq!(r.status, RegisterState::Down);
    assert_eq!(r.port, Some(8));
    assert!(matches!(
        parse_push(br#"{"sn":"s","what":1}"#),
        Err(PushError::NoEvent(_))
    ));
    assert!(parse_push(b"[]").is_err());
    assert!(parse_push(b"").is_err());
}

#[test]
fn query_lists_encode_commas() {
    assert_eq!(query_list([0u8, 1, 2]), "0%2C1%2C2");
    assert_eq!(query_list(["a b"]), "a%20b");
    assert_eq!(parse_int_list("0,1, 2"), vec![0, 1, 2]);
    assert_eq!(parse_int_list("[0]"), vec![0]);
}

#[test]
fn encodings() {
    assert_eq!(Encoding::from_wire("gsm-7bit"), Some(Encoding::Gsm7Bit));
    assert_eq!(Encoding::from_wire("GSM7BIT"), Some(Encoding::Gsm7Bit));
    assert_eq!(Encoding::from_wire("UCS2"), Some(Encoding::Unicode));
    assert_eq!(Encoding::from_wire("latin1"), None);
    assert_eq!(text_length("😀"), 2);
    assert_eq!(text_length("ñandú"), 5);
}

proptest::proptest! {
    #[test]
    fn parsers_never_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300)) {
        let _ = parse_push(&bytes);
        if let Ok(e) = parse_envelope(&bytes) {
            let _ = sms_results(&e);
            let _ = deliver_statuses(&e);
            let _ = incoming_batch(&e);
            let _ = port_infos(&e);
            let _ = ussd_replies(&e);
            let _ = ussd_statuses(&e);
        }
    }

    #[test]
    fn json_parsers_never_panic(s in "\\{\"(error_code|sn|result|info|sms)\":(\\[\\{\"[a-z_]{1,12}\":(\"[ -~]{0,10}\"|-?[0-9]{1,25}(\\.[0-9])?|null|true)\\}\\]|\"[0-9]{0,4}\"|[0-9]{1,4})\\}") {
        let _ = parse_push(s.as_bytes());
        if let Ok(e) = parse_envelope(s.as_bytes()) {
            let _ = sms_results(&e);
            let _ = deliver_statuses(&e);
            let _ = incoming_batch(&e);
            let _ = port_infos(&e);
        }
    }
}
