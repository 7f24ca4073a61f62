//! `smsgate pdu decode|encode` through the real binary: the reference
//! vectors decode to what their authors asserted, bad PDUs exit 1 with the
//! reason, and an encoded message decodes back to its text.

use std::process::Command;

use serde_json::Value;

const VECTORS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/data/sms/pdu-vectors.jsonl"
);

fn smsgate(args: &[&str]) -> (i32, Value, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_smsgate"))
        .args(args)
        // No config is needed; make sure none is read.
        .env("SMSGATE_CONFIG", "/nonexistent/smsgate.toml")
        .output()
        .expect("run smsgate");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let json = serde_json::from_str(&stdout).unwrap_or(Value::Null);
    (
        out.status.code().unwrap_or(-1),
        json,
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

fn vectors(direction: &str) -> Vec<Value> {
    std::fs::read_to_string(VECTORS)
        .expect("vectors")
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str::<Value>(l).expect("JSON line"))
        .filter(|v| v["direction"] == direction)
        .collect()
}

fn kind(vector_type: &str) -> &'static str {
    match vector_type {
        "SMS-DELIVER" => "deliver",
        "SMS-SUBMIT" => "submit",
        "SMS-STATUS-REPORT" => "status-report",
        other => panic!("unknown vector type {other}"),
    }
}

#[test]
fn decode_reference_vectors_through_the_binary() {
    let all = vectors("decode");
    assert!(all.len() > 20, "too few decode vectors: {}", all.len());
    let (mut ok, mut refused) = (0, 0);
    for v in &all {
        let name = v["name"].as_str().unwrap_or("?");
        let hex = v["pdu"].as_str().unwrap();
        let expect = &v["expect"];
        let (code, json, stderr) = smsgate(&["pdu", "decode", hex]);
        if expect["error"] == true {
            assert_eq!(code, 1, "{name}: a bad PDU must exit 1; printed {json}");
            assert!(
                stderr.contains("cannot decode the PDU:") && stderr.trim().len() > 30,
                "{name}: the reason must be printed; stderr {stderr:?}"
            );
            refused += 1;
            continue;
        }
        assert_eq!(code, 0, "{name}: exit code; stderr {stderr}");
        if let Some(t) = expect["type"].as_str() {
            assert_eq!(json["type"], kind(t), "{name}: type");
        }
        for key in ["number", "recipient"] {
            if let Some(want) = expect[key].as_str() {
                // python-gsmmodem prints semi-octet 0xB as 'b'; TS 23.040
                // makes it '#' (see the corpus SOURCES.txt).
                let want = if name == "gsmmodem:decode#16" {
                    want.replace('b', "#")
                } else {
                    want.to_string()
                };
                assert_eq!(json["number"], want.as_str(), "{name}: number");
            }
        }
        if let Some(want) = expect.get("text") {
            if let Some(data) = json["data_hex"].as_str() {
                // 8-bit data: the vector gives the bytes read as ASCII.
                let bytes: Vec<u8> = (0..data.len() / 2)
                    .map(|i| u8::from_str_radix(&data[2 * i..2 * i + 2], 16).unwrap())
                    .collect();
                assert_eq!(
                    want.as_str(),
                    Some(String::from_utf8_lossy(&bytes).as_ref()),
                    "{name}: 8-bit data"
                );
            } else if !want.is_null() {
                assert_eq!(&json["text"], want, "{name}: text");
            }
        }
        if let Some(want) = expect["smsc"].as_str() {
            assert_eq!(json["smsc"], want, "{name}: smsc");
        }
        if let Some(want) = expect["tpdu_len"].as_u64() {
            assert_eq!(json["tpdu_length"], want, "{name}: tpdu_length");
            // With the announced length the same message comes out.
            let (code2, json2, _) = smsgate(&["pdu", "decode", hex, "--length", &want.to_string()]);
            assert_eq!(code2, 0, "{name}: with --length");
            assert_eq!(json2["text"], json["text"], "{name}: with --length");
            assert_eq!(json2["number"], json["number"], "{name}: with --length");
        }
        if let Some(want) = expect["mr"].as_u64().or(expect["reference"].as_u64()) {
            if json["type"] != "deliver" {
                assert_eq!(json["message_reference"], want, "{name}: message reference");
            }
        }
        ok += 1;
    }
    assert!(ok > 20 && refused > 0, "decoded {ok}, refused {refused}");
}

#[test]
fn decode_refuses_garbage_with_the_reason() {
    for bad in ["", "zz", "0791", "07914400000000F0FF"] {
        let (code, json, stderr) = smsgate(&["pdu", "decode", bad]);
        assert_eq!(code, 1, "{bad:?} printed {json}");
        assert!(
            stderr.starts_with("smsgate: cannot decode the PDU: "),
            "{stderr}"
        );
    }
    // A --length that is not a number is a usage error (clap's exit 2).
    let (code, _, _) = smsgate(&["pdu", "decode", "00", "--length", "x"]);
    assert_eq!(code, 2);
}

#[test]
fn encode_then_decode_round_trips_a_three_part_ucs2_text() {
    let text = "Hola 😀 ¿qué tal? ".repeat(8);
    let (code, json, stderr) = smsgate(&["pdu", "encode", "--to", "+59899123456", "--text", &text]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(json["encoding"], "ucs2");
    let pdus = json["pdus"].as_array().unwrap();
    let lengths = json["tpdu_lengths"].as_array().unwrap();
    assert_eq!(pdus.len(), json["segments"].as_u64().unwrap() as usize);
    assert!(pdus.len() >= 3, "{json}");
    let mut joined = String::new();
    for (i, (pdu, len)) in pdus.iter().zip(lengths).enumerate() {
        let (code, part, stderr) = smsgate(&[
            "pdu",
            "decode",
            pdu.as_str().unwrap(),
            "--length",
            &len.to_string(),
        ]);
        assert_eq!(code, 0, "{stderr}");
        assert_eq!(part["type"], "submit");
        assert_eq!(part["number"], "+59899123456");
        assert_eq!(part["concat"]["seq"], i as u64 + 1);
        assert_eq!(part["concat"]["total"], pdus.len() as u64);
        joined.push_str(part["text"].as_str().unwrap_or(""));
    }
    // Parts are cut on whole characters (never inside a surrogate pair), so
    // the decoded texts join back into the original.
    assert_eq!(joined, text);

    let (code, _, stderr) = smsgate(&["pdu", "encode", "--to", "not a number", "--text", "x"]);
    assert_eq!(code, 1);
    assert!(
        stderr.starts_with("smsgate: cannot encode the message: "),
        "{stderr}"
    );
}
