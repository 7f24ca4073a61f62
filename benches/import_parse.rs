//! Bulk-import throughput: 1,000,000 generated lines through the streaming
//! parser, then again with every destination normalised to E.164, as the
//! import does. Prints lines/s and peak memory. Run in release mode:
//! `cargo bench --bench import_parse` (optionally `-- 2000000` for more lines).
//!
//! The lines come from a generating reader, not a 50 MB buffer, so the peak
//! memory printed is the parser's own (plus the phone metadata).

use std::io::{self, BufReader};
use std::time::Instant;

use smsgate::dialer::import::{ImportRules, bulk_import};
use smsgate_proto::sms::phone;

mod support;
use support::{Lines, peak_rss_kib};

fn report(what: &str, lines: u64, secs: f64) {
    println!(
        "{what:<28} {lines} lines in {secs:.3} s = {:>10.0} lines/s ({:.2} us/line)",
        lines as f64 / secs,
        secs * 1e6 / lines as f64
    );
}

fn main() {
    let total: u64 = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let rules = ImportRules::default();

    // The generator alone, to subtract its cost by eye.
    let t = Instant::now();
    let bytes = io::copy(&mut Lines::new(total), &mut io::sink()).expect("generator");
    report("generate only", total, t.elapsed().as_secs_f64());
    println!("  ({:.1} MB of CSV)", bytes as f64 / 1e6);

    let t = Instant::now();
    let (mut ok, mut refused) = (0u64, 0u64);
    for row in bulk_import(
        BufReader::with_capacity(64 * 1024, Lines::new(total)),
        &rules,
        |d: &str| d == "campsms",
    ) {
        match row {
            Ok(_) => ok += 1,
            Err(_) => refused += 1,
        }
    }
    report("parse", total, t.elapsed().as_secs_f64());
    assert_eq!((ok, refused), (total, 0), "every generated line is valid");

    let t = Instant::now();
    phone::warm_up();
    println!(
        "phone::warm_up               {:.3} s",
        t.elapsed().as_secs_f64()
    );

    let t = Instant::now();
    let (mut valid, mut invalid) = (0u64, 0u64);
    for row in bulk_import(
        BufReader::with_capacity(64 * 1024, Lines::new(total)),
        &rules,
        |d: &str| d == "campsms",
    ) {
        let row = row.expect("valid line");
        match phone::normalise(&row.destination, "UY") {
            Ok(_) => valid += 1,
            Err(_) => invalid += 1,
        }
    }
    report("parse + normalise", total, t.elapsed().as_secs_f64());
    println!("  valid {valid}, invalid {invalid}");

    let t = Instant::now();
    let n = total.min(200_000);
    let mut k = 0usize;
    for i in 0..n {
        k += phone::normalise(&format!("+5989{:07}", 1_000_000 + i), "UY")
            .map_or(0, |p| p.as_str().len());
    }
    report("normalise E.164 input only", n, t.elapsed().as_secs_f64());
    std::hint::black_box(k);

    if let Some(kib) = peak_rss_kib() {
        println!("peak RSS {:.1} MiB", kib as f64 / 1024.0);
    }
}
