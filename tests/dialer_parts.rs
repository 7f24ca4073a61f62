//! The seed manual's own sample files parse as the seed says, and the file
//! handling holds on real files (tempfile) as well as in memory.

use std::fs::File;
use std::io::{BufReader, Write};

use smsgate::dialer::dncr_import::dncr_import;
use smsgate::dialer::import::{ImportRow, ImportRules, Rule, bulk_import, check_file_name};
use smsgate_proto::sms::phone::{dncr_key, normalise};

fn seed_file(name: &str) -> BufReader<File> {
    let path = format!("{}/tests/data/seed/{name}", env!("CARGO_MANIFEST_DIR"));
    BufReader::new(File::open(&path).unwrap_or_else(|e| panic!("{path}: {e}")))
}

#[test]
fn seed_bulk_sample_parses_as_three_messages_for_campsms() {
    let rows: Vec<ImportRow> =
        bulk_import(seed_file("bulk.csv"), &ImportRules::default(), |d: &str| {
            d == "campsms"
        })
        .map(|r| r.unwrap_or_else(|e| panic!("{e}")))
        .collect();
    let got: Vec<(u64, &str, &str, &str, u16)> = rows
        .iter()
        .map(|r| {
            (
                r.line,
                r.dialer.as_str(),
                r.destination.as_str(),
                r.message.as_str(),
                r.priority,
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            (1, "campsms", "098344384", "Hola Mundo!", 9999),
            (2, "campsms", "098356484", "Hola Mundo!", 9999),
            (3, "campsms", "098378984", "Hola Mundo!", 9999),
        ]
    );
    // The seed's destinations are Uruguayan mobiles written locally.
    let e164: Vec<String> = rows
        .iter()
        .map(|r| normalise(&r.destination, "UY").unwrap().into_string())
        .collect();
    assert_eq!(e164, ["+59898344384", "+59898356484", "+59898378984"]);
}

#[test]
fn seed_bulk_sample_is_refused_whole_when_the_dialer_does_not_exist() {
    let errs: Vec<_> = bulk_import(seed_file("bulk.csv"), &ImportRules::default(), |d: &str| {
        d == "other"
    })
    .filter_map(Result::err)
    .map(|e| (e.line, e.rule))
    .collect();
    assert_eq!(
        errs,
        vec![
            (1, Rule::UnknownDialer),
            (2, Rule::UnknownDialer),
            (3, Rule::UnknownDialer)
        ]
    );
}

#[test]
fn seed_dncr_sample_loads_and_matches_its_own_form() {
    let rows: Vec<_> = dncr_import(
        seed_file("dncr.csv"),
        &ImportRules::default(),
        "UY",
        |d: &str| d == "marcadortest",
    )
    .map(|r| r.unwrap_or_else(|e| panic!("{e}")))
    .collect();
    let keys: Vec<(u64, &str, Option<&str>)> = rows
        .iter()
        .map(|r| (r.line, r.key.as_str(), r.dialer.as_deref()))
        .collect();
    assert_eq!(
        keys,
        vec![
            (1, "123578408", Some("marcadortest")),
            (2, "223113758", Some("marcadortest")),
            (3, "322150696", Some("marcadortest")),
            (4, "422016549", Some("marcadortest")),
        ]
    );
    // A destination written the same way gets the same key, so it is blocked.
    assert_eq!(dncr_key("123578408", "UY"), rows[0].key);
}

#[test]
fn seed_example_file_name_is_accepted() {
    assert!(check_file_name("DISCTEST29042014.csv").is_ok());
    assert!(check_file_name("bulk.csv").is_ok());
}

#[test]
fn excel_file_on_disk_with_bom_crlf_and_windows_1252() {
    let mut f = tempfile::NamedTempFile::new().unwrap();
    f.write_all(b"\xEF\xBB\xBFcampsms;098344384;Se\xF1or P\xE9rez: su cita;10;\r\ncampsms;098356484;Ma\xF1ana;20;\r\n")
        .unwrap();
    let rows: Vec<ImportRow> = bulk_import(
        BufReader::new(f.reopen().unwrap()),
        &ImportRules::default(),
        |_: &str| true,
    )
    .map(Result::unwrap)
    .collect();
    assert_eq!(rows[0].message, "Señor Pérez: su cita");
    assert_eq!(rows[1].message, "Mañana");
    assert_eq!(rows[1].line, 2);
}
