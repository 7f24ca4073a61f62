//! The send path's DNCR look-up (`spool::is_blocked`, the statement the
//! claim runs for every message of a dialer with `dncr = true`) on a state
//! directory a daemon filled: `cargo bench --bench dncr_lookup -- STATE_DIR`.
//! benches/kannel/run.sh calls it after importing 10,000,000 numbers
//! through the API, with the daemon stopped.
//!
//! One connection with the writer's page cache (16 MiB), as the claim has;
//! 200,000 look-ups of numbers on the list and 200,000 of numbers not on
//! it, spread over the whole key range, after 20,000 unmeasured ones.
//! Prints the mean (a batch timed whole) and the p50/p99 of single calls.

use std::time::{Duration, Instant};

use smsgate::store::rusqlite::{Connection, OpenFlags};
use smsgate::store::spool::is_blocked;

const ROUNDS: u64 = 200_000;

fn main() {
    let Some(dir) = std::env::args().skip(1).find(|a| !a.starts_with('-')) else {
        // A plain `cargo bench` runs every bench: say why nothing was
        // measured rather than fail the others' run.
        eprintln!(
            "dncr_lookup: give a filled state directory (cargo bench --bench dncr_lookup -- STATE_DIR; benches/kannel/run.sh makes one); nothing measured"
        );
        return;
    };
    let path = std::path::Path::new(&dir).join("smsgate.db");
    let conn = Connection::open_with_flags(&path, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .expect("open the state's database");
    conn.pragma_update(None, "cache_size", -16384)
        .expect("cache_size");
    let entries: i64 = conn
        .query_row("SELECT count(*) FROM dncr", [], |r| r.get(0))
        .expect("count");
    let entries = entries as u64;
    // The keys benches/kannel/bench.py imported: mobiles 091000000 up,
    // then Montevideo landlines 20000000 up, stored in E.164.
    let listed = |i: u64| {
        let i = (i.wrapping_mul(7_919)) % entries.max(1);
        if i < 8_999_999 {
            format!("+5989{:07}", 1_000_000 + i)
        } else {
            format!("+5982{:07}", i - 8_999_999)
        }
    };
    // Landlines past the imported ones: the same index pages, never a hit.
    let unlisted = |i: u64| format!("+5984{:07}", (i.wrapping_mul(7_919)) % 9_999_999);
    for i in 0..20_000 {
        let _ = is_blocked(&conn, &listed(i), "campsms");
    }
    for (what, key, expect) in [
        ("listed", &listed as &dyn Fn(u64) -> String, true),
        ("not listed", &unlisted, false),
    ] {
        let keys: Vec<String> = (0..ROUNDS).map(key).collect();
        let t = Instant::now();
        for k in &keys {
            let blocked = is_blocked(&conn, k, "campsms").expect("look-up");
            assert_eq!(blocked, expect, "{k}");
        }
        let mean = t.elapsed() / ROUNDS as u32;
        let mut one: Vec<Duration> = keys
            .iter()
            .map(|k| {
                let t = Instant::now();
                let _ = is_blocked(&conn, k, "campsms");
                t.elapsed()
            })
            .collect();
        one.sort();
        let at = |p: f64| one[((one.len() - 1) as f64 * p) as usize].as_secs_f64() * 1e6;
        println!(
            "dncr_lookup {what}: {entries} entries, mean {:.2} us, p50 {:.2} us, p99 {:.2} us",
            mean.as_secs_f64() * 1e6,
            at(0.50),
            at(0.99)
        );
    }
}
