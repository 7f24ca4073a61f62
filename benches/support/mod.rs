//! Shared by the benchmarks: a generated CSV and a memory reading.
#![allow(dead_code)]

use std::io::{self, Read};

/// Writes `campsms;09XXXXXXX;Hola ... N!;PRIO;\r\n` lines on demand. Every
/// 1000th number is written in international form, every 997th is too short
/// (so the INVALID path is timed too).
pub struct Lines {
    next: u64,
    total: u64,
    line: Vec<u8>,
    pos: usize,
    worst_case: bool,
}

impl Lines {
    /// A campaign file as the seed shows them: routine bulk at priority
    /// 9999, with every 100th line urgent (priority 1).
    pub fn new(total: u64) -> Self {
        Lines {
            next: 0,
            total,
            line: Vec::with_capacity(96),
            pos: 0,
            worst_case: false,
        }
    }

    /// Every line a different priority of 9999, in turn: each row lands at
    /// another place of the queue index, the worst case for an import.
    pub fn worst_case(total: u64) -> Self {
        Lines {
            worst_case: true,
            ..Self::new(total)
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
        let prio = match (self.worst_case, i % 100) {
            (true, _) => 1 + i % 9999,
            (false, 0) => 1,
            (false, _) => 9999,
        };
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

pub fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}
