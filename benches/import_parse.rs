//! Bulk-import throughput: 1,000,000 generated lines through the streaming
//! parser, then again with every destination normalised to E.164, as the
//! import does. Prints lines/s and peak memory. Run in release mode:
//! `cargo bench --bench import_parse` (optionally `-- 2000000` for more lines).
//!
//! The lines come from a generating reader, not a 50 MB buffer, so the peak
//! memory printed is the parser's own (plus the phone metadata).

use std::io::{self, BufReader, Read};
use std::time::Instant;

use smsgate::dialer::import::{ImportRules, bulk_import};
use smsgate::sms::phone;

/// Writes `campsms;09XXXXXXX;Hola ... N!;PRIO;\r\n` lines on demand. Every
/// 1000th number is written in international form, every 997th is too short
/// (so the INVALID path is timed too).
struct Lines {
    next: u64,
    total: u64,
    line: Vec<u8>,
    pos: usize,
}

impl Lines {
    fn new(total: u64) -> Self {
        Lines {
            next: 0,
            total,
            line: Vec::with_capacity(96),
            pos: 0,
        }
    }

    fn refill(&mut self) -> bool {
        if self.next >= self.total {
            return false;
        }
        let i = self.next;
        self.next += 1;
        self.line.clear();
        // A spread of Uruguayan mobile numbers, 091000000..=099999999.
        let subscriber = 1_000_000 + (i.wrapping_mul(7_919)) % 8_999_999;
        let dest = if i % 1000 == 0 {
            format!("+598 9{subscriber:07}")
        } else if i % 997 == 0 {
            format!("09{}", subscriber % 1000)
        } else {
            format!("09{subscriber:07}")
        };
        let prio = 1 + i % 9999;
        let _ = io::Write::write_fmt(
            &mut self.line,
            format_args!(
                "campsms;{dest};Hola Mundo, su cita n\u{fa}mero {i} es ma\u{f1}ana!;{prio};\r\n"
            ),
        );
        self.pos = 0;
        true
    }
}

impl Read for Lines {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let mut n = 0;
        while n < out.len() {
            if self.pos == self.line.len() && !self.refill() {
                break;
            }
            let k = (self.line.len() - self.pos).min(out.len() - n);
            out[n..n + k].copy_from_slice(&self.line[self.pos..self.pos + k]);
            self.pos += k;
            n += k;
        }
        Ok(n)
    }
}

fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

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
