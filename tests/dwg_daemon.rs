//! The real daemon with a `dinstar-dwg` gateway: the simulated DWG gateway
//! connects to it, a message sent through the API leaves on a dialled port
//! with its text intact and ends DELIVERED; the password never reaches the
//! journal.

mod common;

use std::time::{Duration, Instant};

use common::{Daemon, OPERATOR, free_port, get};
use serde_json::{Value, json};
use smsgate_sim::dwg::DwgSim;

const PASSWORD: &str = "dwg-Pa55-xyz";
const TEXT: &str = "Hola Ñandú, ¿confirmás el turno? 👍🏽";

#[test]
fn a_message_goes_out_through_the_dwg_gateway_and_is_delivered() {
    let listen = free_port();
    let extra = format!(
        r#"
[[gateway]]
name = "dwg1"
kind = "dinstar-dwg"
ports = 4
listen = "127.0.0.1:{listen}"
user = "smsgate"
password = "{PASSWORD}"

[[dialer]]
name = "campdwg"
provider = "dwg1"
dial = "2.3"
interval_ms = 10
"#
    );
    let d = Daemon::start(&extra, &[("RUST_LOG", "debug")]);
    d.wait_ready();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let sim = rt.block_on(async {
        let sim = DwgSim::builder()
            .connect(format!("127.0.0.1:{listen}").parse().unwrap())
            .credentials("smsgate", PASSWORD)
            .ports(4)
            .reconnect(Some(Duration::from_millis(200)))
            .result_delay(Some(Duration::from_millis(50)))
            .receipt_delay(Some(Duration::from_millis(50)))
            .start();
        assert!(
            sim.wait_connected(Duration::from_secs(10)).await,
            "the gateway connects to smsgate"
        );
        sim
    });

    let t = Instant::now();
    loop {
        let ch = get(&d, "/api/v1/channels");
        let usable = ch
            .as_array()
            .or_else(|| ch["items"].as_array())
            .map(|a| {
                a.iter()
                    .filter(|c| c["gateway"] == "dwg1" && c["usable"] == true)
                    .count()
            })
            .unwrap_or(0);
        if usable == 4 {
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(10), "channels: {ch}");
        std::thread::sleep(Duration::from_millis(50));
    }

    let r = d
        .http()
        .post(d.url("/api/v1/messages"))
        .bearer_auth(OPERATOR)
        .json(&json!({"dialer": "campdwg", "to": "+59899123456", "text": TEXT}))
        .send()
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    let id = r.json::<Value>().unwrap()["id"].clone();

    let t = Instant::now();
    let m = loop {
        let m = get(&d, &format!("/api/v1/messages/{id}"));
        if m["state_name"] == "DELIVERED" {
            break m;
        }
        assert!(t.elapsed() < Duration::from_secs(15), "message: {m}");
        std::thread::sleep(Duration::from_millis(50));
    };
    let sends = sim.sends();
    assert_eq!(sends.len(), 1, "sent once");
    assert!(
        [2, 3].contains(&sends[0].port),
        "a dialled port: {}",
        sends[0].port
    );
    assert_eq!(sends[0].text, TEXT);
    assert_eq!(m["gateway_ref"], sends[0].serial.to_string());

    sim.shutdown();
    drop(rt);
    let mut d = d;
    d.signal("TERM");
    d.wait_exit(Duration::from_secs(10));
    let log = d.take_stderr();
    assert!(log.contains("DWG gateway connected"), "{log}");
    assert!(!log.contains(PASSWORD), "the password reached the journal");
}
