//! The reads a portal and a scraper repeat, at the sizes the issue names:
//! `cargo bench --bench reads`.
//!
//! Fills a real SQLite file with 1,000,000 messages over three dialers in
//! every state, and 10,000,000 DNCR entries; starts the real engine and
//! API on loopback (dialers disabled, so nothing moves while measuring);
//! then asks each route many times over one keep-alive connection and
//! prints the median, the 99th percentile and the worst, in ms:
//! `GET /api/v1/status`, `GET /api/v1/dialers` (every dashboard),
//! `GET /api/v1/dialers/{name}`, `GET /metrics`, and
//! `GET /api/v1/dncr?phone=` for numbers on the list and not on it.
//! For comparison it also times the count the status used to run (a scan
//! of the message table).
//!
//! `cargo bench --bench reads -- 100000 1000000` runs smaller sizes
//! (messages, then DNCR entries).

use std::time::{Duration, Instant};

use smsgate::config::Config;
use smsgate::engine::Engine;
use smsgate::runtime::{Heartbeats, Shared};
use smsgate::store::Store;
use smsgate::store::spool::{NewMessage, State};

const TOKEN: &str = "bench-viewer-token-0123456789";
const DIALERS: [&str; 3] = ["camp1", "camp2", "camp3"];
const ROUNDS: usize = 500;

fn config(state: &std::path::Path, port: u16) -> Config {
    let mut text = format!(
        r#"
[daemon]
state_dir = "{}"
[api]
listen = "127.0.0.1:{port}"
[[api.tokens]]
name = "bench"
token = "{TOKEN}"
role = "viewer"
[[gateway]]
name = "sim1"
kind = "sim"
ports = 8
"#,
        state.display()
    );
    for d in DIALERS {
        text.push_str(&format!(
            "[[dialer]]\nname = \"{d}\"\nprovider = \"sim1\"\nenabled = false\ndncr = true\n"
        ));
    }
    Config::from_source(&state.join("bench.toml"), &text).expect("bench config")
}

fn fill(store: &Store, messages: u64, dncr: u64) {
    let t = Instant::now();
    const CHUNK: u64 = 100_000;
    let mut done = 0;
    while done < messages {
        let n = CHUNK.min(messages - done);
        let first = done;
        store
            .write_blocking(move |tx| {
                let import = smsgate::store::dncr::begin_import(tx, "messages", "BENCH.csv")?;
                let rows: Vec<NewMessage> = (first..first + n)
                    .map(|i| NewMessage {
                        dialer: DIALERS[(i % 3) as usize].to_string(),
                        destination: format!("09{:07}", i % 10_000_000),
                        number: Some(format!("+5989{:07}", i % 10_000_000)),
                        text: format!("mensaje {i}"),
                        priority: 9999,
                        client_id: None,
                        import_id: None,
                        encoding: "gsm7",
                        segments: 1,
                        state: State::ALL[(i % State::ALL.len() as u64) as usize],
                        template: None,
                    })
                    .collect();
                smsgate::store::spool::insert_many(tx, &rows, import, 1)
            })
            .expect("messages");
        done += n;
    }
    println!(
        "filled {messages} messages in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let t = Instant::now();
    let mut done = 0;
    while done < dncr {
        let n = (1_000_000).min(dncr - done);
        let first = done;
        store
            .write_blocking(move |tx| {
                let mut stmt = tx.prepare(
                    "INSERT INTO dncr (key, dialer, written, source, added_at) VALUES (?1, '', ?1, 'bench', 1)",
                )?;
                // Keys in order: the list's primary key is filled at the end.
                for i in first..first + n {
                    stmt.execute([dncr_key(i)])?;
                }
                Ok(())
            })
            .expect("dncr");
        done += n;
    }
    println!(
        "filled {dncr} DNCR entries in {:.1} s",
        t.elapsed().as_secs_f64()
    );
}

/// The i-th listed number: even numbers from +59820000000 up.
fn dncr_key(i: u64) -> String {
    format!("+598{:08}", 20_000_000 + 2 * i)
}

struct Figures {
    what: String,
    samples: Vec<Duration>,
}

impl Figures {
    fn print(mut self) {
        let worst_at = (0..self.samples.len())
            .max_by_key(|&i| self.samples[i])
            .unwrap_or(0);
        self.samples.sort();
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        let n = self.samples.len();
        println!(
            "{:<36} median {:>7.3} ms   p99 {:>7.3} ms   max {:>7.3} ms (request {worst_at})   ({n} requests)",
            self.what,
            ms(self.samples[n / 2]),
            ms(self.samples[n * 99 / 100]),
            ms(self.samples[n - 1]),
        );
    }
}

fn main() {
    let args: Vec<u64> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let messages = args.first().copied().unwrap_or(1_000_000);
    let dncr = args.get(1).copied().unwrap_or(10_000_000);
    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path().join("state");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let config = config(&state, port);
    let store = Store::open(&state, smsgate::runtime::Heartbeat::detached()).expect("store");
    fill(&store, messages, dncr);
    // Let the checkpointer fold the fill's WAL into the database first:
    // its copy would otherwise land on a few of the measured requests.
    std::thread::sleep(Duration::from_secs(5));

    let t = Instant::now();
    let scanned: i64 = store
        .read_blocking(|c| {
            let mut stmt = c.prepare("SELECT state, count(*) FROM message GROUP BY state")?;
            let rows = stmt.query_map([], |r| r.get::<_, i64>(1))?;
            let mut total = 0;
            for r in rows {
                total += r?;
            }
            Ok(total)
        })
        .expect("scan");
    println!(
        "for comparison, counting the message table by state: {:.1} ms ({scanned} rows)",
        t.elapsed().as_secs_f64() * 1000.0
    );

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let shared = Shared::new(config, store.clone(), Heartbeats::default());
    runtime.block_on(async {
        let engine = Engine::start(shared.clone()).await;
        let server =
            smsgate::api::Server::bind(smsgate::api::AppState::new(shared.clone(), engine.clone()))
                .await
                .expect("API binds");
        tokio::spawn(server.serve(shared.shutdown.clone()));
    });

    let http = reqwest::blocking::Client::builder()
        .use_preconfigured_tls(
            smsgate::tls::client_config(&smsgate::tls::TlsVerify::System).expect("TLS config"),
        )
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client");
    let get = |path: &str| {
        let t = Instant::now();
        let r = http
            .get(format!("http://127.0.0.1:{port}{path}"))
            .bearer_auth(TOKEN)
            .send()
            .expect("request");
        assert!(r.status().is_success(), "{path}: {}", r.status());
        let body = r.bytes().expect("body");
        (t.elapsed(), body)
    };
    // Warm the connection and SQLite's page cache once.
    for p in ["/api/v1/status", "/metrics", "/api/v1/dialers"] {
        get(p);
    }
    let (_, body) = get("/api/v1/status");
    let status: serde_json::Value = serde_json::from_slice(&body).expect("status JSON");
    let counted: u64 = status["messages"]
        .as_object()
        .expect("messages")
        .values()
        .filter_map(serde_json::Value::as_u64)
        .sum();
    assert_eq!(counted, messages, "the status counts every message");

    let run = |what: &str, path: &dyn Fn(usize) -> String, check: &dyn Fn(&[u8])| {
        let mut samples = Vec::with_capacity(ROUNDS);
        for i in 0..ROUNDS {
            let (took, body) = get(&path(i));
            check(&body);
            samples.push(took);
        }
        Figures {
            what: what.to_string(),
            samples,
        }
        .print();
    };
    let any = |_: &[u8]| {};
    run("GET /api/v1/status", &|_| "/api/v1/status".into(), &any);
    run("GET /api/v1/dialers", &|_| "/api/v1/dialers".into(), &any);
    run(
        "GET /api/v1/dialers/camp2",
        &|_| "/api/v1/dialers/camp2".into(),
        &any,
    );
    run("GET /metrics", &|_| "/metrics".into(), &any);
    let listed = |b: &[u8]| {
        let v: serde_json::Value = serde_json::from_slice(b).expect("JSON");
        assert_eq!(v["items"].as_array().map(Vec::len), Some(1), "{v}");
    };
    let absent = |b: &[u8]| {
        let v: serde_json::Value = serde_json::from_slice(b).expect("JSON");
        assert_eq!(v["items"].as_array().map(Vec::len), Some(0), "{v}");
    };
    // Spread over the whole list, so the look-ups do not all hit the same
    // cached pages.
    let step = (dncr / ROUNDS as u64).max(1);
    run(
        "GET /api/v1/dncr?phone= (listed)",
        &|i| {
            format!(
                "/api/v1/dncr?phone={}",
                dncr_key((i as u64 * step) % dncr.max(1)).replace('+', "%2B")
            )
        },
        &listed,
    );
    run(
        "GET /api/v1/dncr?phone= (not listed)",
        &|i| {
            let odd = format!(
                "+598{:08}",
                20_000_001 + 2 * ((i as u64 * step) % dncr.max(1))
            );
            format!("/api/v1/dncr?phone={}", odd.replace('+', "%2B"))
        },
        &absent,
    );
    shared.shutdown.cancel();
    store.close();
}
