//! The `at` transport against the simulated modem over real ptys, the
//! framed AT reader on gammu's real modem dumps, the daemon binary across
//! an unplug, and Debian's gammu driving the simulated modem.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use smsgate::config::{AtSettings, Secret};
use smsgate::transport::at::AtTransport;
use smsgate::transport::{Event, Outbound, SendError, Transport};
use smsgate_proto::at::framing::{AtCodec, FinalResult, Frame};
use smsgate_proto::sms::Body;
use smsgate_sim::modem::{FakeModem, ModemState};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

const DUMPS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/at/gammu-at-dumps");
const CROSSCHECK: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/data/sms/gammu-at-sms-crosscheck.jsonl"
);

// ---------------------------------------------------------------- helpers

fn settings(device: &Path) -> AtSettings {
    AtSettings {
        device: device.to_path_buf(),
        baud: 115_200,
        pin: None,
        smsc: None,
        timeout: Duration::from_millis(1500),
        port_poll: Duration::from_secs(1),
        send_timeout: Duration::from_secs(5),
    }
}

struct Rig {
    _dir: tempfile::TempDir,
    modem: FakeModem,
    transport: AtTransport,
    events: mpsc::Receiver<Event>,
    stop: CancellationToken,
    /// Answer for InboundAcked events: what the "engine" says.
    store_ok: bool,
}

impl Drop for Rig {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

fn rig_with(state: ModemState, tweak: impl FnOnce(&mut AtSettings)) -> Rig {
    let dir = tempfile::tempdir().unwrap();
    let link = dir.path().join("ttyGSM0");
    let modem = FakeModem::start(&link, state).unwrap();
    let mut s = settings(&link);
    tweak(&mut s);
    let (tx, rx) = smsgate::transport::Events::channel();
    let stop = CancellationToken::new();
    let transport = AtTransport::start("modem1", s, tx, stop.clone());
    Rig {
        _dir: dir,
        modem,
        transport,
        events: rx,
        stop,
        store_ok: true,
    }
}

fn rig(state: ModemState) -> Rig {
    rig_with(state, |_| {})
}

impl Rig {
    async fn usable(&mut self, within: Duration) {
        let t = Instant::now();
        while !self.transport.health(0).usable {
            assert!(
                t.elapsed() < within,
                "modem not usable within {within:?}: {:?}",
                self.transport.health(0)
            );
            self.drain();
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Handles pending events the way the engine would (acks inbound).
    fn drain(&mut self) -> Vec<Event> {
        let mut out = Vec::new();
        while let Ok(e) = self.events.try_recv() {
            if let Event::InboundAcked { ack, .. } = &e {
                ack.done(self.store_ok);
            }
            out.push(e);
        }
        out
    }

    async fn wait_event(&mut self, within: Duration, what: impl Fn(&Event) -> bool) -> Event {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            match tokio::time::timeout_at(deadline, self.events.recv()).await {
                Ok(Some(e)) => {
                    if let Event::InboundAcked { ack, .. } = &e {
                        ack.done(self.store_ok);
                    }
                    if what(&e) {
                        return e;
                    }
                }
                _ => panic!("no such event within {within:?}"),
            }
        }
    }

    async fn send(&self, id: i64, to: &str, text: &str) -> Result<String, SendError> {
        let msg = Outbound {
            message_id: id,
            port: 0,
            to: to.into(),
            text: text.into(),
            reference: 1000 + id,
            template: None,
        };
        self.transport.send(&msg).await.map(|a| a.gateway_ref)
    }
}

fn ucs2_text(b: &Body) -> String {
    match b {
        Body::Ucs2(u) => String::from_utf16(u).unwrap(),
        other => panic!("not UCS-2: {other:?}"),
    }
}

// ------------------------------------------------------- framed reader

fn decode_all(bytes: &[u8]) -> Vec<Frame> {
    let mut codec = AtCodec::new();
    let mut buf = tokio_util::bytes::BytesMut::from(bytes);
    let mut out = Vec::new();
    while let Some(f) = codec.decode(&mut buf).unwrap() {
        out.push(f);
    }
    while let Some(f) = codec.decode_eof(&mut buf).unwrap() {
        out.push(f);
    }
    out
}

#[test]
fn framed_reader_finds_header_pdu_and_ok_in_every_gammu_cmgr_dump() {
    let mut checked = 0;
    for line in std::fs::read_to_string(CROSSCHECK).unwrap().lines() {
        let v: Value = serde_json::from_str(line).unwrap();
        let file = v["file"].as_str().unwrap();
        let bytes = std::fs::read(format!("{DUMPS}/{file}")).unwrap();
        // Byte by byte too: how reads are cut must not matter.
        for frames in [decode_all(&bytes), {
            let mut codec = AtCodec::new();
            let mut buf = tokio_util::bytes::BytesMut::new();
            let mut out = Vec::new();
            for b in &bytes {
                buf.extend_from_slice(&[*b]);
                while let Some(f) = codec.decode(&mut buf).unwrap() {
                    out.push(f);
                }
            }
            while let Some(f) = codec.decode_eof(&mut buf).unwrap() {
                out.push(f);
            }
            out
        }] {
            assert!(
                matches!(&frames[0], Frame::Echo(e) if e.starts_with("AT+CMGR=")),
                "{file}: {frames:?}"
            );
            let want_pdu = v["pdu"].as_str().unwrap();
            match &frames[1] {
                Frame::Record { header, pdu } => {
                    assert_eq!(header, v["cmgr_line"].as_str().unwrap(), "{file}");
                    // The reader keeps the line as the modem sent it (a stray
                    // quote included, at-sms/04); the codec strips it.
                    let got = pdu.as_deref().unwrap().trim_end_matches('"');
                    assert_eq!(got, want_pdu.trim_end_matches('"'), "{file}");
                }
                other => panic!("{file}: expected the +CMGR record, got {other:?}"),
            }
            assert_eq!(frames[2], Frame::Final(FinalResult::Ok), "{file}");
            assert_eq!(frames.len(), 3, "{file}: {frames:?}");
        }
        checked += 1;
    }
    assert!(checked >= 40, "{checked}");
}

#[test]
fn framed_reader_survives_the_other_gammu_dumps() {
    let mut n = 0;
    for dir in [
        "at-creg",
        "at-creg-corner",
        "at-cpms",
        "at-cpms-sm",
        "at-cpms-sr",
        "at-cnmi",
        "at-smsc",
        "at-smsc-failing",
        "at-cscs-huawei",
        "at-sms-txt",
        "at-sms-txt-detail",
    ] {
        for entry in std::fs::read_dir(format!("{DUMPS}/{dir}")).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_none_or(|e| e != "dump") {
                continue;
            }
            let frames = decode_all(&std::fs::read(&path).unwrap());
            let name = path.display().to_string();
            // Every dump but Huawei's starts with the echoed command.
            if dir != "at-cscs-huawei" {
                assert!(
                    matches!(frames.first(), Some(Frame::Echo(_))),
                    "{name}: {frames:?}"
                );
            }
            assert!(
                matches!(frames.last(), Some(Frame::Final(_))),
                "{name}: no final result: {frames:?}"
            );
            assert!(
                !frames.iter().any(|f| matches!(f, Frame::Garbage(_))),
                "{name}"
            );
            // empty.dump: a bare OK, which must simply end the command.
            if dir.starts_with("at-creg") && !name.ends_with("empty.dump") {
                let line = frames
                    .iter()
                    .find_map(|f| match f {
                        Frame::Line(l) => l.strip_prefix("+CREG:"),
                        _ => None,
                    })
                    .unwrap_or_else(|| panic!("{name}: no +CREG line"));
                let stat = smsgate::transport::at::session::creg_stat(line);
                assert!(stat.is_some(), "{name}: {line}");
            }
            n += 1;
        }
    }
    assert!(n >= 25, "{n}");
}

// -------------------------------------------------------------- sending

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_part_ucs2_with_emoji_goes_out_as_three_correct_pdus() {
    let mut r = rig(ModemState::default());
    r.usable(Duration::from_secs(10)).await;
    // 3 parts of at most 67 UTF-16 units; the emoji are surrogate pairs.
    let text = "¿Mañana a las 9? 😀👍 Confirmá respondiendo SÍ o NO. ".repeat(3);
    let units = text.encode_utf16().count();
    assert!(units > 134 && units <= 201, "{units}");
    let gateway_ref = r.send(7, "+59899123456", &text).await.expect("sent");
    let submits = r.modem.state().submits();
    assert_eq!(submits.len(), 3, "one PDU per part");
    let mut joined = String::new();
    for (i, s) in submits.iter().enumerate() {
        assert_eq!(s.destination.to_string(), "+59899123456");
        assert_eq!(s.data_coding.raw & 0x0C, 0x08, "UCS-2");
        assert!(s.status_report_request, "a delivery report is asked for");
        let c = s.user_data.concat().expect("concatenation header");
        assert_eq!((c.total, c.sequence), (3, i as u8 + 1));
        assert_eq!(
            c.reference,
            (1007 % 256) as u16,
            "reference derived from the attempt"
        );
        joined.push_str(&ucs2_text(&s.user_data.body));
    }
    assert_eq!(joined, text);
    // Every PDU's AT+CMGS length matched (the fake refuses with 304 if not)
    // and each part got its own TP-MR.
    let mrs: Vec<u8> = r.modem.state().sent.iter().map(|s| s.mr).collect();
    assert_eq!(
        gateway_ref,
        format!("1007/{}.{}.{}", mrs[0], mrs[1], mrs[2])
    );
    // The fake reports each part delivered: one Delivered for the message.
    let e = r
        .wait_event(Duration::from_secs(5), |e| {
            matches!(e, Event::Delivered { .. })
        })
        .await;
    match e {
        Event::Delivered {
            gateway_ref: g,
            delivered,
            ..
        } => {
            assert_eq!(g, gateway_ref);
            assert!(delivered);
        }
        _ => unreachable!(),
    }
    let commands = r.modem.state().commands.clone();
    for c in [
        "ATE0",
        "AT+CMEE=1",
        "AT+CPIN?",
        "AT+CREG?",
        "AT+CSQ",
        "AT+CMGF=0",
        "AT+CMGL=4",
    ] {
        assert!(
            commands.iter().any(|x| x == c),
            "start-up sends {c}: {commands:?}"
        );
    }
    assert!(commands.iter().any(|x| x.starts_with("AT+CNMI=2,1")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_report_makes_the_message_undelivered() {
    let mut st = ModemState::default();
    st.auto_report = Some(0x41); // incompatible destination: permanent
    let mut r = rig(st);
    r.usable(Duration::from_secs(10)).await;
    let gateway_ref = r.send(1, "+59899123456", "hola").await.unwrap();
    match r
        .wait_event(Duration::from_secs(5), |e| {
            matches!(e, Event::Delivered { .. })
        })
        .await
    {
        Event::Delivered {
            gateway_ref: g,
            delivered,
            detail,
            ..
        } => {
            assert_eq!(g, gateway_ref);
            assert!(!delivered, "{detail}");
        }
        _ => unreachable!(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsolicited_cmti_in_the_middle_of_cmgs_breaks_neither() {
    let mut r = rig(ModemState::default());
    r.usable(Duration::from_secs(10)).await;
    // A message arrives while we send: its +CMTI comes between the prompt
    // and +CMGS, and vendor noise before the prompt.
    let hex = smsgate_sim::modem::deliver_pdus("+59899555666", "llegó durante el envío", 3);
    let index = r.modem.store_pdu(&hex[0]).expect("stored");
    {
        let mut st = r.modem.state();
        st.faults.urc_in_cmgs = Some(format!("+CMTI: \"SM\",{index}"));
        st.faults.urc_before_prompt = Some("+ZDONR: \"01\",\"01\",\"0\"".into());
    }
    let sent = r.send(2, "+59899123456", "hola").await;
    assert!(sent.is_ok(), "{sent:?}");
    assert_eq!(r.modem.state().submits().len(), 1);
    let e = r
        .wait_event(Duration::from_secs(5), |e| {
            matches!(e, Event::InboundAcked { .. })
        })
        .await;
    let Event::InboundAcked { message, .. } = e else {
        unreachable!()
    };
    assert_eq!(message.text, "llegó durante el envío");
    assert_eq!(message.sender, "+59899555666");
    // Deleted from the SIM once the engine said it is stored.
    let t = Instant::now();
    while !r.modem.state().stored().is_empty() {
        assert!(t.elapsed() < Duration::from_secs(5), "not deleted");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // And the modem still sends.
    assert!(r.send(3, "+59899123456", "otra").await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cms_errors_are_classified() {
    let mut r = rig(ModemState::default());
    r.usable(Duration::from_secs(10)).await;
    let cases: &[(u16, &str)] = &[
        (331, "temporary"),     // no network service
        (42, "temporary"),      // congestion
        (500, "temporary"),     // unknown: bounded retries by the engine
        (304, "permanent"),     // our PDU was refused
        (1, "permanent"),       // unassigned number
        (330, "port_unusable"), // SMSC unknown: fix the modem
    ];
    for (i, (code, want)) in cases.iter().enumerate() {
        r.modem.state().faults.cmgs_errors.push_back(*code);
        let e = r
            .send(10 + i as i64, "+59899123456", "hola")
            .await
            .unwrap_err();
        assert_eq!(e.outcome(), *want, "+CMS ERROR: {code} gave {e}");
        assert!(e.to_string().contains(&code.to_string()), "{e}");
        // 330 marks the modem unusable until its next start-up; let it
        // come back for the next case.
        r.usable(Duration::from_secs(10)).await;
    }
    // A later part refused after an earlier one left: resending would send
    // part 1 twice, so the outcome is unknown.
    let before = r.modem.state().sent.len();
    let long = "x".repeat(200);
    // Part 1 passes, part 2 is refused.
    r.modem.state().faults.cmgs_skip = 1;
    r.modem.state().faults.cmgs_errors.push_back(331);
    let e = r.send(30, "+59899123456", &long).await.unwrap_err();
    assert_eq!(e.outcome(), "unknown", "{e}");
    assert_eq!(r.modem.state().sent.len(), before + 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_prompt_is_abandoned_and_the_modem_keeps_working() {
    let mut r = rig_with(ModemState::default(), |s| {
        s.timeout = Duration::from_millis(400)
    });
    r.usable(Duration::from_secs(10)).await;
    r.modem.state().faults.stuck_prompts = 1;
    let e = r.send(1, "+59899123456", "hola").await.unwrap_err();
    // Nothing was handed over: safe to retry.
    assert_eq!(e.outcome(), "temporary", "{e}");
    assert!(r.modem.state().sent.is_empty());
    assert!(r.send(2, "+59899123456", "hola").await.is_ok());
    assert_eq!(r.modem.state().sent.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unplugged_after_the_pdu_is_unknown_then_reopened() {
    let mut r = rig(ModemState::default());
    r.usable(Duration::from_secs(10)).await;
    {
        let mut st = r.modem.state();
        st.faults.unplug_on_pdu = Some(1);
        st.faults.replug_after = Duration::from_millis(500);
    }
    let tty_before = r.modem.tty();
    let e = r.send(1, "+59899123456", "hola").await.unwrap_err();
    assert_eq!(e.outcome(), "unknown", "{e}");
    // Re-plugged on another pty behind the same stable path, reopened.
    let t = Instant::now();
    while r.transport.info().sessions < 2 {
        assert!(t.elapsed() < Duration::from_secs(15), "not reopened");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    r.usable(Duration::from_secs(15)).await;
    // (The kernel may hand out the same pts number again.)
    let _ = tty_before;
    assert_eq!(r.modem.state().unplugs, 1);
    assert!(r.send(2, "+59899123456", "chau").await.is_ok());
    let texts: Vec<String> = r
        .modem
        .state()
        .submits()
        .iter()
        .map(|s| s.user_data.body.text().unwrap())
        .collect();
    assert_eq!(texts, ["hola", "chau"], "nothing resent by the transport");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_or_garbling_modem_is_reopened() {
    let mut r = rig_with(ModemState::default(), |s| {
        s.timeout = Duration::from_millis(300);
        s.port_poll = Duration::from_millis(300);
    });
    r.usable(Duration::from_secs(10)).await;
    r.modem.state().faults.silent = true;
    let t = Instant::now();
    while r.transport.health(0).usable {
        assert!(t.elapsed() < Duration::from_secs(10), "silence not noticed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    r.modem.state().faults.silent = false;
    r.usable(Duration::from_secs(15)).await;
    r.modem.state().faults.garbage = true;
    let t = Instant::now();
    while r.transport.health(0).usable {
        assert!(t.elapsed() < Duration::from_secs(10), "garbage not noticed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    r.modem.state().faults.garbage = false;
    r.usable(Duration::from_secs(15)).await;
    assert!(r.transport.info().sessions >= 3, "{:?}", r.transport.info());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pin_is_sent_once_and_never_retried_when_wrong() {
    let mut st = ModemState::default();
    st.sim_pin = Some("4321".into());
    let r = rig_with(st, |s| s.pin = Some(Secret::new("1234")));
    let t = Instant::now();
    while !r.transport.health(0).reason.contains("PIN") {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "{:?}",
            r.transport.health(0)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Several polls later, still one try.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(r.modem.state().pin_attempts, 1);
    assert!(!r.transport.health(0).usable);

    let mut st = ModemState::default();
    st.sim_pin = Some("1234".into());
    let mut ok = rig_with(st, |s| s.pin = Some(Secret::new("1234")));
    ok.usable(Duration::from_secs(10)).await;
    assert_eq!(ok.modem.state().pin_attempts, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vendor_quirks_do_not_stop_the_start_up() {
    use smsgate_sim::modem::Quirks;
    for quirks in [
        Quirks {
            cpin_no_ok: true,
            ..Quirks::default()
        },
        Quirks {
            huawei: true,
            rssi_flood: true,
            no_cnmi_ds1: true,
            ..Quirks::default()
        },
    ] {
        let mut st = ModemState::default();
        st.quirks = quirks.clone();
        let mut r = rig(st);
        r.usable(Duration::from_secs(10)).await;
        assert!(
            r.send(1, "+59899123456", "hola").await.is_ok(),
            "{quirks:?}"
        );
    }
}

// -------------------------------------------------------------- receiving

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inbound_three_part_comes_back_whole_and_leaves_the_sim_only_once_stored() {
    let mut r = rig(ModemState::default());
    r.usable(Duration::from_secs(10)).await;
    // The engine fails to store it first: it must stay on the SIM.
    r.store_ok = false;
    let text =
        "Hola 😀, quiero darme de BAJA de la lista. ¿Me confirman por favor? Gracias 🙏🏽 ".repeat(2);
    let pdus = r.modem.receive("+59899777888", &text, 42);
    assert_eq!(pdus.len(), 3);
    let first = r
        .wait_event(Duration::from_secs(5), |e| {
            matches!(e, Event::InboundAcked { .. })
        })
        .await;
    let Event::InboundAcked { message: m1, .. } = first else {
        unreachable!()
    };
    assert_eq!(m1.text, text, "joined whole");
    assert_eq!(m1.sender, "+59899777888");
    assert_eq!(m1.port, Some(0));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(r.modem.state().stored().len(), 3, "kept on the SIM");
    // Stored at the next poll's re-read, with the same key: then deleted.
    r.store_ok = true;
    let again = r
        .wait_event(Duration::from_secs(5), |e| {
            matches!(e, Event::InboundAcked { .. })
        })
        .await;
    let Event::InboundAcked { message: m2, .. } = again else {
        unreachable!()
    };
    assert_eq!(
        m2.source_key, m1.source_key,
        "the same message, the same key"
    );
    assert_eq!(m2.text, text);
    let t = Instant::now();
    while !r.modem.state().stored().is_empty() {
        assert!(t.elapsed() < Duration::from_secs(5), "not deleted");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Out-of-order parts, stored before start-up, are listed and joined.
    drop(r);
    let dir = tempfile::tempdir().unwrap();
    let link = dir.path().join("tty");
    let modem = FakeModem::start(&link, ModemState::default()).unwrap();
    let pdus = smsgate_sim::modem::deliver_pdus("+59899777888", &text, 9);
    for p in pdus.iter().rev() {
        modem.store_pdu(p).unwrap();
    }
    let (tx, mut rx) = smsgate::transport::Events::channel();
    let stop = CancellationToken::new();
    let _t = AtTransport::start("modem1", settings(&link), tx, stop.clone());
    let got = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let Some(Event::InboundAcked { message, ack }) = rx.recv().await {
                ack.done(true);
                return message;
            }
        }
    })
    .await
    .expect("listed at start-up");
    assert_eq!(got.text, text);
    stop.cancel();
}

// ------------------------------------------------- the daemon, unplugged

fn daemon_config(link: &Path) -> String {
    format!(
        r#"
[[gateway]]
name = "modem1"
kind = "at"
device = "{}"
timeout_ms = 1500
port_poll_s = 1
send_timeout_s = 5

[[dialer]]
name = "gsm"
provider = "modem1"
dial = "0"
interval_ms = 10
"#,
        link.display()
    )
}

fn get(d: &common::Daemon, path: &str) -> Value {
    d.http()
        .get(d.url(path))
        .bearer_auth(common::VIEWER)
        .send()
        .unwrap()
        .json()
        .unwrap()
}

fn post(d: &common::Daemon, text: &str) -> i64 {
    let r = d
        .http()
        .post(d.url("/api/v1/messages"))
        .bearer_auth(common::OPERATOR)
        .json(&json!({"dialer": "gsm", "to": "+59899123456", "text": text}))
        .send()
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    r.json::<Value>().unwrap()["id"].as_i64().unwrap()
}

fn wait_state(d: &common::Daemon, id: i64, states: &[&str], within: Duration) -> Value {
    let t = Instant::now();
    loop {
        let m = get(d, &format!("/api/v1/messages/{id}"));
        if states.iter().any(|s| m["state_name"] == *s) {
            return m;
        }
        assert!(t.elapsed() < within, "message {id} not in {states:?}: {m}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn daemon_loses_nothing_and_sends_nothing_twice_across_an_unplug() {
    let dir = tempfile::tempdir().unwrap();
    let link: PathBuf = dir.path().join("ttyGSM0");
    let mut st = ModemState::default();
    st.sim_pin = Some("8642".into());
    let modem = FakeModem::start(&link, st).unwrap();
    // A message waiting on the SIM before the daemon starts.
    for p in
        smsgate_sim::modem::deliver_pdus("+59899555000", "BAJA por favor 🙏 ".repeat(5).trim(), 77)
    {
        modem.store_pdu(&p).unwrap();
    }
    let config = daemon_config(&link).replace(
        "send_timeout_s = 5\n",
        "send_timeout_s = 5\npin = \"8642\"\n",
    );
    let mut d = common::Daemon::start(&config, &[("RUST_LOG", "smsgate=trace")]);
    // A trace log is long: read it as it comes, so the pipe never fills
    // and stalls the daemon.
    let stderr = d.drain_stderr();
    d.wait_ready();

    // A: unplugged right after its PDU came: it may have left. With
    // resend_unknown off (the default) it is UNKNOWN, never resent.
    {
        let mut st = modem.state();
        st.faults.unplug_on_pdu = Some(1);
        st.faults.replug_after = Duration::from_millis(800);
    }
    let a = post(&d, "mensaje A");
    let ma = wait_state(&d, a, &["UNKNOWN"], Duration::from_secs(20));
    assert!(ma["state"] == 9, "{ma}");

    // B: unplugged when AT+CMGS came, before the prompt: nothing left, so it
    // goes again after the modem is back, once.
    {
        let mut st = modem.state();
        st.faults.unplug_on_cmgs = Some(1);
        st.faults.replug_after = Duration::from_millis(800);
    }
    // Wait for the modem to be back before B, so B meets the fault.
    let t = Instant::now();
    while modem
        .state()
        .commands
        .iter()
        .filter(|c| *c == "AT+CMGL=4")
        .count()
        < 2
    {
        assert!(t.elapsed() < Duration::from_secs(20), "not reopened");
        std::thread::sleep(Duration::from_millis(50));
    }
    let b = post(&d, "mensaje B");
    wait_state(&d, b, &["SENT", "DELIVERED"], Duration::from_secs(90));
    // C after all that: plain.
    let c = post(&d, "mensaje C");
    wait_state(&d, c, &["DELIVERED"], Duration::from_secs(30));

    let texts: Vec<String> = modem
        .state()
        .submits()
        .iter()
        .map(|s| s.user_data.body.text().unwrap())
        .collect();
    assert_eq!(
        texts,
        ["mensaje A", "mensaje B", "mensaje C"],
        "each PDU reached the modem exactly once"
    );
    assert_eq!(modem.state().unplugs, 2);

    // The stored message came in whole, through the engine's store, and
    // left the SIM only then.
    let db = d.dir.path().join("state").join("smsgate.db");
    let t = Instant::now();
    let text: String = loop {
        let c = rusqlite::Connection::open(&db).unwrap();
        let row: Option<String> = c
            .query_row(
                "SELECT text FROM inbound WHERE gateway = 'modem1'",
                [],
                |r| r.get(0),
            )
            .ok();
        if let Some(t) = row {
            break t;
        }
        assert!(t.elapsed() < Duration::from_secs(10), "inbound not stored");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(text, "BAJA por favor 🙏 ".repeat(5).trim());
    let t = Instant::now();
    while !modem.state().stored().is_empty() {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "not deleted from the SIM"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // The PIN was entered (each start-up) and never written to the log.
    assert!(
        modem
            .state()
            .commands
            .iter()
            .any(|c| c == "AT+CPIN=\"8642\"")
    );
    d.signal("TERM");
    d.wait_exit(Duration::from_secs(10));
    // Without the terminal colours the fields read `gateway=modem1`.
    let raw = stderr.text_at_end(Duration::from_secs(5));
    let mut log = String::new();
    let mut in_escape = false;
    for ch in raw.chars() {
        match (in_escape, ch) {
            (false, '\u{1b}') => in_escape = true,
            (true, 'm') => in_escape = false,
            (true, _) => {}
            (false, c) => log.push(c),
        }
    }
    assert!(
        log.contains("gateway=modem1") && log.contains("port=0"),
        "journal fields gateway= and port=: {log}"
    );
    assert!(!log.contains("8642"), "the PIN leaked into the log");
}

// ------------------------------------------------------------ gammu

fn gammu() -> PathBuf {
    let found = std::env::var_os("PATH")
        .map(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join("gammu"))
                .find(|p| p.is_file())
        })
        .unwrap_or(None);
    found.unwrap_or_else(|| {
        panic!(
            "gammu is not installed: this test drives the simulated modem with Debian's gammu \
             client to show the fake answers like a real modem. Install it: apt-get install gammu"
        )
    })
}

fn run_gammu(rc: &Path, args: &[&str]) -> (bool, String) {
    let out = std::process::Command::new(gammu())
        .arg("-c")
        .arg(rc)
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn gammu_identifies_sends_and_reads_through_the_simulated_modem() {
    let _ = gammu();
    let dir = tempfile::tempdir().unwrap();
    let link = dir.path().join("ttyGSM0");
    let modem = FakeModem::start(&link, ModemState::default()).unwrap();
    modem.receive("+59899123456", "¿Mañana a las 9? 👍", 5);
    let rc = dir.path().join("gammurc");
    std::fs::write(
        &rc,
        format!("[gammu]\nport = {}\nconnection = at\n", link.display()),
    )
    .unwrap();

    let (ok, out) = run_gammu(&rc, &["identify"]);
    assert!(ok, "{out}");
    assert!(
        out.contains("Fakecom") && out.contains("356938035643809"),
        "{out}"
    );
    assert!(out.contains("748010123456789"), "IMSI: {out}");

    let (ok, out) = run_gammu(
        &rc,
        &["sendsms", "TEXT", "+59899111222", "-text", "Hello [test] €"],
    );
    assert!(ok, "{out}");
    let submits = modem.state().submits();
    assert_eq!(submits.len(), 1, "{out}");
    assert_eq!(submits[0].destination.to_string(), "+59899111222");
    assert_eq!(submits[0].user_data.body.text().unwrap(), "Hello [test] €");

    let (ok, out) = run_gammu(&rc, &["getallsms"]);
    assert!(ok, "{out}");
    assert!(out.contains("¿Mañana a las 9? 👍"), "{out}");
    assert!(out.contains("+59899123456"), "{out}");
    assert!(out.contains("1 SMS parts in 1 SMS sequences"), "{out}");
}
