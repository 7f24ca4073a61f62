//! Unit tests of the DWG wire format: kept beside it rather than inside so
//! dwg.rs holds only the codec.

use super::*;

fn id(serial: u32) -> MsgId {
    MsgId {
        mac: [0, 1, 2, 3, 4, 5, 0, 0],
        time: 0x1f5c_b818,
        serial,
    }
}

/// The example frame of the vendor's manual (DWG SMS API v2.1 §2): a
/// send request on port 0, UCS-2, to 15088889999, text "1234".
#[test]
fn manual_example_frame() {
    let frame = Frame::new(
        id(6),
        Body::SendSms(SendSms {
            port: 0,
            encoding: TextEncoding::Ucs2,
            msg_type: 0,
            numbers: vec!["15088889999".into()],
            text: "1234".into(),
        }),
    );
    let bytes = encode_frame(&frame).unwrap();
    let mut expected = vec![
        0x00, 0x00, 0x00, 0x26, 0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x00, 0x00, 0x1f, 0x5c, 0xb8,
        0x18, 0x00, 0x00, 0x00, 0x06, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x00, 0x01,
    ];
    expected.extend_from_slice(b"15088889999");
    expected.extend_from_slice(&[0; 13]);
    expected.extend_from_slice(&[0x00, 0x08, 0x00, 0x31, 0x00, 0x32, 0x00, 0x33, 0x00, 0x34]);
    assert_eq!(bytes, expected);
    let (back, used) = decode_frame(&bytes).unwrap().unwrap();
    assert_eq!(used, bytes.len());
    assert_eq!(back, frame);
}

#[test]
fn every_body_round_trips() {
    let bodies = vec![
        Body::KeepAlive,
        Body::SendSmsResponse(SendCode::PortUnavailable),
        Body::SendSmsResult(SmsResult {
            count: 1,
            number: "+59899123456".into(),
            port: 3,
            code: SendCode::Succeed,
            slices: 2,
            succeeded: 2,
        }),
        Body::SendSmsResultAck(Ack::OK),
        Body::ReceiveSms(ReceivedSms {
            number: "099123456".into(),
            msg_type: 0,
            port: 7,
            timestamp: "20240501100003".into(),
            timezone: -12,
            encoding: TextEncoding::Ucs2,
            content: encode_text("¿Mañana? 👍", TextEncoding::Ucs2),
        }),
        Body::ReceiveSmsAck(Ack::FAIL),
        Body::PortStatus(vec![
            PortState::Works,
            PortState::NoSim,
            PortState::Other(9),
        ]),
        Body::PortStatusAck(Ack::OK),
        Body::SendUssd(SendUssd {
            port: 1,
            ussd_type: 1,
            content: b"*100#".to_vec(),
        }),
        Body::SendUssdResponse(SendCode::Succeed),
        Body::ReceiveUssd(ReceivedUssd {
            port: 1,
            status: 0,
            encoding: TextEncoding::Ascii,
            content: b"Saldo 10".to_vec(),
        }),
        Body::ReceiveUssdAck(Ack::OK),
        Body::CsqRssi(vec![31, 0, 99]),
        Body::CsqRssiAck(Ack::OK),
        Body::Auth(AuthRequest::new("smsgate", "s3cret").unwrap()),
        Body::AuthResponse(Ack::OK),
        Body::SmsReceipt(SmsReceipt {
            port: 2,
            number: "099123456".into(),
            receipt_id: 200,
            timestamp: "20240501100003".into(),
            timezone: 0,
            state: 64,
        }),
        Body::SmsReceiptAck(Ack::OK),
        Body::Unknown {
            kind: 0x0203,
            body: vec![1, 2, 3],
        },
    ];
    for (i, body) in bodies.into_iter().enumerate() {
        let frame = Frame {
            id: id(i as u32),
            flag: 7,
            body,
        };
        let bytes = encode_frame(&frame).unwrap();
        let (back, used) = decode_frame(&bytes).unwrap().unwrap();
        assert_eq!(used, bytes.len());
        assert_eq!(back, frame, "frame {i}");
    }
}

#[test]
fn texts_survive_in_the_chosen_encoding() {
    for text in [
        "Hola, ¿cómo está? Ñandú, acción, pingüino",
        "Confirmado 👍🏽 gracias 🎉",
        "plain ascii 123",
        "50% off: $10 @ store_name [x] {y} ~z",
        "",
    ] {
        let enc = choose_encoding(text);
        assert_eq!(decode_text(&encode_text(text, enc), enc), text, "{text}");
    }
    assert_eq!(choose_encoding("hola que tal 123?"), TextEncoding::Ascii);
    assert_eq!(choose_encoding("mañana"), TextEncoding::Ucs2);
    // '@' is 0x00 in GSM 7-bit: not the same under both readings.
    assert_eq!(choose_encoding("a@b"), TextEncoding::Ucs2);
}

#[test]
fn partial_input_waits_and_junk_never_panics() {
    let frame = Frame::new(id(1), Body::CsqRssi(vec![20, 21]));
    let bytes = encode_frame(&frame).unwrap();
    for cut in 0..bytes.len() {
        assert_eq!(decode_frame(&bytes[..cut]).unwrap(), None);
    }
    let mut huge = bytes.clone();
    huge[..4].copy_from_slice(&u32::MAX.to_be_bytes());
    assert!(matches!(
        decode_frame(&huge),
        Err(CodecError::BodyTooLong { .. })
    ));
    // A known type with a short body is reported, not fatal.
    let mut short = encode_frame(&Frame::new(id(2), Body::KeepAlive)).unwrap();
    short[21] = kind::RECEIVE_SMS as u8;
    short[3] = 3;
    short.extend_from_slice(&[1, 2, 3]);
    let (f, _) = decode_frame(&short).unwrap().unwrap();
    assert!(matches!(
        f.body,
        Body::Malformed {
            kind: kind::RECEIVE_SMS,
            ..
        }
    ));
}

#[test]
fn fields_that_do_not_fit_are_refused() {
    let long_number = Frame::new(
        id(1),
        Body::SendSms(SendSms {
            port: 0,
            encoding: TextEncoding::Ascii,
            msg_type: 0,
            numbers: vec!["1".repeat(24)],
            text: "x".into(),
        }),
    );
    assert!(matches!(
        encode_frame(&long_number),
        Err(CodecError::FieldTooLong {
            field: "number",
            ..
        })
    ));
    let long_text = Frame::new(
        id(1),
        Body::SendSms(SendSms {
            port: 0,
            encoding: TextEncoding::Ucs2,
            msg_type: 0,
            numbers: vec!["1".into()],
            text: "ñ".repeat(671),
        }),
    );
    assert!(matches!(
        encode_frame(&long_text),
        Err(CodecError::FieldTooLong { field: "text", .. })
    ));
    assert!(AuthRequest::new("a".repeat(16).as_str(), "x").is_none());
    assert!(!format!("{:?}", AuthRequest::new("u", "topsecret").unwrap()).contains("topsecret"));
}
