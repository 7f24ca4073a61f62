//! The Dinstar client against the simulated gateway, over real 127.0.0.1
//! sockets.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use smsgate::transport::dinstar::{
    AuthScheme, DeliverStatusQuery, DeliveryOutcome, DinstarClient, DinstarClientConfig,
    DinstarError, Encoding, PortInfoType, PushEventKind, RegStatus, RegisterState, SmsStatus,
    parse_push,
};
use smsgate_sim::dinstar::{AuthOutcome, DinstarSim, HttpFault, SimAuth, SimHandle};

fn config(sim: &SimHandle, password: &str) -> DinstarClientConfig {
    let mut c = DinstarClientConfig::new("gw1", sim.base_url(), "admin", password);
    c.request_timeout = Duration::from_secs(5);
    c.connect_timeout = Duration::from_secs(2);
    c
}

fn client(sim: &SimHandle) -> DinstarClient {
    DinstarClient::new(config(sim, "admin")).expect("client")
}

async fn sim() -> SimHandle {
    DinstarSim::builder().start().await.expect("simulator")
}

/// Polls until `f` is true or 5 s pass.
async fn eventually<F: FnMut() -> bool>(mut f: F) -> bool {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    f()
}

#[tokio::test]
async fn send_carries_port_user_id_encoding_and_exact_text() {
    let sim = sim().await;
    let c = client(&sim);
    let gsm = "Señor Müller: 5€ [ok] @casa";
    let uni = "Canción de cumpleaños: ¡Felicidades, José! 🎉🎂 ÁÍÓÚ";
    let a = c
        .send_sms(2, 101, "+59899123456", gsm, Encoding::Gsm7Bit)
        .await
        .expect("gsm send");
    assert!(a.task_id.is_some());
    assert_eq!(a.sn.as_deref(), Some("da00-0030-1901-2817"));
    c.send_sms(5, 102, "099123457", uni, Encoding::Unicode)
        .await
        .expect("unicode send");

    let sends = sim.sends();
    assert_eq!(sends.len(), 2);
    assert_eq!(
        (sends[0].port, sends[0].user_id, sends[0].number.as_str()),
        (2, Some(101), "+59899123456")
    );
    assert_eq!(sends[0].encoding, Encoding::Gsm7Bit);
    assert_eq!(sends[0].text, gsm);
    assert_eq!(sends[0].handset_text, gsm, "all GSM 7-bit characters");
    assert_eq!((sends[1].port, sends[1].user_id), (5, Some(102)));
    assert_eq!(sends[1].encoding, Encoding::Unicode);
    assert_eq!(sends[1].text, uni);
    assert_eq!(sends[1].handset_text, uni);
    assert!(sends.iter().all(|s| s.request_status_report));

    // On the wire: the documented shape, never an empty POST.
    let reqs = sim.requests_to("/api/send_sms");
    let ok: Vec<_> = reqs.iter().filter(|r| r.auth == AuthOutcome::Ok).collect();
    assert_eq!(ok.len(), 2);
    assert_eq!(ok[0].ports, vec![2]);
    assert_eq!(ok[0].user_ids, vec![101]);
    let body = ok[1].body.as_ref().expect("json body");
    assert_eq!(body["encoding"], "unicode");
    assert_eq!(body["port"], serde_json::json!([5]));
    assert_eq!(body["request_status_report"], true);
    assert_eq!(body["param"][0]["user_id"], 102);
    assert!(
        sim.requests()
            .iter()
            .all(|r| r.method != "POST" || r.body_len > 0)
    );

    // The simulator shows what a wrong encoding would do to Spanish.
    c.send_sms(0, 103, "099", "canción", Encoding::Gsm7Bit)
        .await
        .unwrap();
    assert_eq!(sim.sends()[2].handset_text, "canci?n");
}

#[tokio::test]
async fn digest_challenge_is_cached_one_request_per_call() {
    let sim = sim().await;
    let c = client(&sim);
    for i in 0..4 {
        c.send_sms(0, i, "099", "hola", Encoding::Gsm7Bit)
            .await
            .unwrap();
    }
    let reqs = sim.requests();
    assert_eq!(reqs.len(), 5, "one challenge, then one request per call");
    assert_eq!(reqs[0].auth, AuthOutcome::Challenged);
    assert!(reqs[0].body_len > 0, "the first request carries its body");
    assert!(reqs[1..].iter().all(|r| r.auth == AuthOutcome::Ok));
    let counts = sim.auth_counts();
    assert_eq!((counts.challenges, counts.ok, counts.bad), (1, 4, 0));
}

#[tokio::test]
async fn results_and_delivery_reports() {
    let sim = DinstarSim::builder()
        .result_delay(Duration::from_millis(400))
        .deliver_delay(Some(Duration::from_millis(60)))
        .start()
        .await
        .unwrap();
    let c = client(&sim);
    c.send_sms(1, 501, "099111222", "hola", Encoding::Gsm7Bit)
        .await
        .unwrap();
    let r = c.query_sms_result(&[501]).await.unwrap();
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].status, SmsStatus::Sending);

    let mut last = None;
    for _ in 0..200 {
        let r = c.query_sms_result(&[501]).await.unwrap();
        if r[0].status == SmsStatus::Delivered {
            last = Some(r[0].clone());
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let res = last.expect("delivered in time");
    assert_eq!(res.port, Some(1));
    assert_eq!(res.user_id, Some(501));
    assert_eq!(res.number.as_deref(), Some("099111222"));
    assert_eq!((res.count, res.succ_count), (Some(1), Some(1)));
    let imsi = sim.port(1).unwrap().imsi;
    assert_eq!(res.imsi.as_deref(), Some(imsi.as_str()));

    let reports = c
        .query_sms_deliver_status(&DeliverStatusQuery {
            numbers: vec!["099111222".into()],
            ports: vec![1],
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(reports.len(), 1);
    assert_eq!(reports[0].ref_id, res.ref_id);
    assert_eq!(reports[0].outcome(), DeliveryOutcome::Delivered);
    assert!(reports[0].time.as_deref().is_some_and(|t| t.len() == 19));
}

#[tokio::test]
async fn scripted_failures_and_manual_reports() {
    let sim = DinstarSim::builder()
        .result_delay(Duration::from_millis(10))
        .deliver_delay(None)
        .start()
        .await
        .unwrap();
    let c = client(&sim);
    c.send_sms(0, 1, "0991", "a", Encoding::Gsm7Bit)
        .await
        .unwrap();
    sim.fail_next_on_network(2);
    c.send_sms(2, 2, "0992", "b", Encoding::Gsm7Bit)
        .await
        .unwrap();
    assert!(eventually(|| sim.sends().len() == 2).await);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let r = c.query_sms_result(&[1, 2]).await.unwrap();
    let st = |u: u32| {
        r.iter()
            .find(|x| x.user_id == Some(u))
            .unwrap()
            .status
            .clone()
    };
    assert_eq!(st(1), SmsStatus::SentOk);
    assert_eq!(st(2), SmsStatus::Failed);

    assert!(sim.deliver(1, 64));
    let reports = c
        .query_sms_deliver_status(&DeliverStatusQuery::default())
        .await
        .unwrap();
    assert_eq!(reports.len(), 1);
    assert_eq!(reports[0].status_code, Some(64));
    assert_eq!(reports[0].outcome(), DeliveryOutcome::Failed);
}

#[tokio::test]
async fn result_queries_are_chunked_by_32() {
    let sim = sim().await;
    let c = client(&sim);
    let ids: Vec<u32> = (1..=70).collect();
    c.query_sms_result(&ids).await.expect("chunked query");
    let qs: Vec<_> = sim
        .requests_to("/api/query_sms_result")
        .into_iter()
        .filter(|r| r.auth == AuthOutcome::Ok)
        .collect();
    let sizes: Vec<usize> = qs.iter().map(|r| r.user_ids.len()).collect();
    assert_eq!(sizes, vec![32, 32, 6]);
}

#[tokio::test]
async fn error_codes_are_classified() {
    let sim = sim().await;
    let c = client(&sim);
    sim.script_next_send(3, 550);
    let e = c
        .send_sms(3, 1, "099", "x", Encoding::Gsm7Bit)
        .await
        .unwrap_err();
    assert_eq!(e, DinstarError::PortUnusable);

    sim.set_port_sim(4, false);
    let e = c
        .send_sms(4, 2, "099", "x", Encoding::Gsm7Bit)
        .await
        .unwrap_err();
    assert_eq!(e, DinstarError::PortUnusable, "a port without SIM");

    sim.script_next_send(0, 400);
    let e = c
        .send_sms(0, 3, "099", "x", Encoding::Gsm7Bit)
        .await
        .unwrap_err();
    assert!(
        matches!(&e, DinstarError::Permanent { code: 400, reason } if reason.contains("format")),
        "{e:?}"
    );

    sim.script_next_send(0, 413);
    let e = c
        .send_sms(0, 4, "099", "x", Encoding::Gsm7Bit)
        .await
        .unwrap_err();
    assert!(matches!(e, DinstarError::Permanent { code: 413, .. }));

    sim.script_next_send(0, 500);
    let e = c
        .send_sms(0, 5, "099", "x", Encoding::Gsm7Bit)
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            DinstarError::Temporary {
                gateway_code: Some(500),
                never_left: false,
                ..
            }
        ),
        "{e:?}"
    );
    assert!(sim.sends().is_empty(), "nothing was queued");

    // HTTP-level trouble is temporary too.
    sim.script_http_fault(HttpFault::Garbage);
    let e = c
        .send_sms(0, 6, "099", "x", Encoding::Gsm7Bit)
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            DinstarError::Temporary {
                never_left: false,
                ..
            }
        ),
        "{e:?}"
    );
    sim.script_http_fault(HttpFault::Http500);
    let e = c.get_port_info(&[0], &[]).await.unwrap_err();
    assert!(matches!(e, DinstarError::Temporary { .. }), "{e:?}");
    // The client still works afterwards.
    c.send_sms(0, 7, "099", "x", Encoding::Gsm7Bit)
        .await
        .unwrap();
}

#[tokio::test]
async fn timeouts_and_connect_errors() {
    let sim = sim().await;
    let mut cfg = config(&sim, "admin");
    cfg.request_timeout = Duration::from_millis(400);
    let c = DinstarClient::new(cfg).unwrap();
    c.get_port_info(&[0], &[]).await.unwrap();
    sim.script_http_fault(HttpFault::Hang);
    let t = Instant::now();
    let e = c
        .send_sms(0, 1, "099", "x", Encoding::Gsm7Bit)
        .await
        .unwrap_err();
    assert!(t.elapsed() < Duration::from_secs(3));
    assert!(
        matches!(
            e,
            DinstarError::Temporary {
                never_left: false,
                ..
            }
        ),
        "a timeout may have left: {e:?}"
    );
    assert!(!e.never_left());

    // Nothing listens on this port any more: the request provably never left.
    let addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let c = DinstarClient::new(DinstarClientConfig::new(
        "gw2",
        format!("http://{addr}"),
        "admin",
        "admin",
    ))
    .unwrap();
    let e = c
        .send_sms(0, 1, "099", "x", Encoding::Gsm7Bit)
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            DinstarError::Temporary {
                never_left: true,
                ..
            }
        ),
        "{e:?}"
    );
}

#[tokio::test]
async fn wrong_password_counts_exactly_and_backs_off() {
    let sim = DinstarSim::builder()
        .lockout_after(2)
        .start()
        .await
        .unwrap();
    let mut cfg = config(&sim, "wrong-secret-pw");
    cfg.auth_backoff_initial = Duration::from_millis(300);
    cfg.auth_backoff_max = Duration::from_millis(1000);
    let c = DinstarClient::new(cfg).unwrap();

    let e = c
        .send_sms(0, 1, "099", "hola", Encoding::Gsm7Bit)
        .await
        .unwrap_err();
    let DinstarError::Auth {
        status, retry_in, ..
    } = &e
    else {
        panic!("expected Auth, got {e:?}")
    };
    assert_eq!((*status, *retry_in), (401, Duration::from_millis(300)));
    assert!(!e.to_string().contains("wrong-secret-pw"));
    let counts = sim.auth_counts();
    assert_eq!((counts.challenges, counts.attempts, counts.bad), (1, 1, 1));
    assert_eq!(sim.requests().len(), 2);

    // Backing off: no request at all.
    let e = c.get_port_info(&[], &[]).await.unwrap_err();
    let DinstarError::BackingOff { reason, .. } = &e else {
        panic!("expected BackingOff, got {e:?}")
    };
    assert!(reason.contains("refused"), "{reason}");
    assert!(!reason.contains("wrong-secret-pw"));
    assert_eq!(sim.requests().len(), 2);
    let b = c.backoff().expect("backoff state");
    assert_eq!(b.refusals, 1);

    // After the pause: one more try (no cached challenge: challenge + one
    // credentialed attempt), refused again, the pause doubles, and the
    // simulator now locks the IP out.
    tokio::time::sleep(Duration::from_millis(350)).await;
    assert!(c.backoff().is_none());
    let e = c.get_port_info(&[], &[]).await.unwrap_err();
    assert!(
        matches!(e, DinstarError::Auth { status: 401, retry_in, .. } if retry_in == Duration::from_millis(600)),
        "{e:?}"
    );
    assert_eq!(sim.bad_auth_count(), 2);
    assert_eq!(c.backoff().unwrap().refusals, 2);
    assert!(sim.is_locked_out("127.0.0.1".parse().unwrap()));

    // Locked out: the gateway answers 403; the pause is capped.
    tokio::time::sleep(Duration::from_millis(650)).await;
    let e = c.get_port_info(&[], &[]).await.unwrap_err();
    assert!(
        matches!(e, DinstarError::Auth { status: 403, retry_in, .. } if retry_in == Duration::from_millis(1000)),
        "{e:?}"
    );
    assert_eq!(sim.auth_counts().locked_refusals, 1);
    assert_eq!(
        sim.bad_auth_count(),
        2,
        "a locked-out request is no new login"
    );
    assert!(sim.sends().is_empty());
}

#[tokio::test]
async fn right_password_after_a_refusal_clears_the_backoff() {
    let sim = sim().await;
    let mut cfg = config(&sim, "bad");
    cfg.auth_backoff_initial = Duration::from_millis(100);
    let bad = DinstarClient::new(cfg).unwrap();
    assert!(matches!(
        bad.get_port_info(&[], &[]).await,
        Err(DinstarError::Auth { .. })
    ));
    let good = client(&sim);
    good.get_port_info(&[], &[]).await.unwrap();
    assert!(good.backoff().is_none());
    bad.clear_backoff();
    assert!(bad.backoff().is_none());
}

#[tokio::test]
async fn stale_nonce_is_rechallenged_without_a_bad_login() {
    let sim = sim().await;
    let c = client(&sim);
    c.get_port_info(&[0], &[]).await.unwrap();
    sim.expire_nonces();
    c.send_sms(0, 9, "099", "after stale", Encoding::Gsm7Bit)
        .await
        .expect("re-challenged and sent");
    let counts = sim.auth_counts();
    assert_eq!(counts.stale, 1);
    assert_eq!(counts.bad, 0);
    let sends = sim.requests_to("/api/send_sms");
    assert_eq!(
        sends.iter().map(|r| r.auth).collect::<Vec<_>>(),
        vec![AuthOutcome::Stale, AuthOutcome::Ok]
    );
    assert!(sends.iter().all(|r| r.body_len > 0));
    assert_eq!(sim.sends().len(), 1, "sent once");
    assert!(c.backoff().is_none());
}

#[tokio::test]
async fn basic_auth_mode() {
    let sim = DinstarSim::builder()
        .auth(SimAuth::Basic)
        .start()
        .await
        .unwrap();
    let mut cfg = config(&sim, "admin");
    cfg.auth = AuthScheme::Basic;
    let c = DinstarClient::new(cfg).unwrap();
    c.send_sms(1, 1, "099", "hola", Encoding::Gsm7Bit)
        .await
        .unwrap();
    assert_eq!(sim.requests().len(), 1, "preemptive Basic: one request");
    assert_eq!(sim.requests()[0].auth, AuthOutcome::Ok);

    let mut cfg = config(&sim, "nope");
    cfg.auth = AuthScheme::Basic;
    let c = DinstarClient::new(cfg).unwrap();
    assert!(matches!(
        c.send_sms(1, 2, "099", "hola", Encoding::Gsm7Bit).await,
        Err(DinstarError::Auth { status: 401, .. })
    ));
    assert_eq!(sim.bad_auth_count(), 1);
}

#[tokio::test]
async fn port_info_shows_a_removed_sim() {
    let sim = sim().await;
    let c = client(&sim);
    sim.set_port_sim(1, false);
    sim.set_port_signal(0, 17);
    let info = c
        .get_port_info(&[0, 1], PortInfoType::HEALTH)
        .await
        .unwrap();
    assert_eq!(info.len(), 2);
    assert_eq!(info[0].port, 0);
    assert_eq!(info[0].reg, Some(RegStatus::RegisterOk));
    assert_eq!(info[0].signal, Some(17));
    assert!(info[0].imsi.is_some());
    assert!(info[0].looks_usable());
    assert_eq!(info[1].reg, Some(RegStatus::NoSim));
    assert!(info[1].sim_missing() && !info[1].looks_usable());
    assert_eq!(info[1].imsi, None);

    // Lists go out with encoded commas (and the Digest uri matched them).
    let r = sim.requests_to("/api/get_port_info");
    let q = r.last().unwrap().query.clone().unwrap();
    assert!(q.contains("port=0%2C1"), "{q}");
    assert!(!q.contains(','), "{q}");

    // Every port when none is named.
    let all = c.get_port_info(&[], &[PortInfoType::Reg]).await.unwrap();
    assert_eq!(all.len(), 8);
    assert!(all.iter().all(|p| p.imsi.is_none()), "only reg was asked");
}

#[tokio::test]
async fn incoming_from_a_high_water_mark_without_duplicates() {
    let sim = sim().await;
    let c = client(&sim);
    let first = [
        sim.inject_incoming(0, "099000001", "hola"),
        sim.inject_incoming(3, "099000002", "BAJA"),
        sim.inject_incoming(0, "099000003", "¿Qué tal? 😀"),
    ];
    let b = c.query_incoming_sms(0, &[]).await.unwrap();
    let ids: Vec<u64> = b.sms.iter().filter_map(|m| m.incoming_sms_id).collect();
    assert_eq!(ids, first.to_vec());
    assert_eq!(b.sms[2].text, "¿Qué tal? 😀");
    assert_eq!(b.sms[1].port, Some(3));
    assert_eq!(b.sms[1].number.as_deref(), Some("099000002"));
    assert!(b.sms[0].imsi.is_some());
    let hwm = *ids.last().unwrap();

    let again = c.query_incoming_sms(hwm, &[]).await.unwrap();
    assert!(again.sms.is_empty());

    let next = [
        sim.inject_incoming(1, "099000004", "uno"),
        sim.inject_incoming(1, "099000005", "dos"),
    ];
    let b = c.query_incoming_sms(hwm, &[]).await.unwrap();
    let ids: Vec<u64> = b.sms.iter().filter_map(|m| m.incoming_sms_id).collect();
    assert_eq!(ids, next.to_vec());
    // flag=all never marks anything read, so a crash loses nothing.
    assert_eq!(b.unread, Some(5));
    let q = sim.requests_to("/api/query_incoming_sms");
    assert!(
        q.iter()
            .all(|r| r.query.as_deref().unwrap_or("").contains("flag=all"))
    );
    // Port filter.
    let b = c.query_incoming_sms(0, &[3]).await.unwrap();
    assert_eq!(b.sms.len(), 1);
}

#[tokio::test]
async fn text_over_670_is_refused_without_a_request() {
    let sim = sim().await;
    let c = client(&sim);
    let long = "a".repeat(671);
    let e = c
        .send_sms(0, 1, "099", &long, Encoding::Gsm7Bit)
        .await
        .unwrap_err();
    assert_eq!(e, DinstarError::TextTooLong { length: 671 });
    // 335 emoji are 670 UTF-16 units; one more letter is too many.
    let emoji = format!("{}a", "😀".repeat(335));
    assert!(matches!(
        c.send_sms(0, 2, "099", &emoji, Encoding::Unicode).await,
        Err(DinstarError::TextTooLong { length: 671 })
    ));
    assert!(sim.requests().is_empty(), "no request at all");
    c.send_sms(0, 3, "099", &"a".repeat(670), Encoding::Gsm7Bit)
        .await
        .expect("670 is fine");
    assert_eq!(sim.sends()[0].count, 5);
}

#[tokio::test]
async fn invalid_requests_are_refused_locally() {
    let sim = sim().await;
    let c = client(&sim);
    for (port, uid, to) in [
        (32u8, 1u32, "099"),
        (0, 1, ""),
        (0, 1, "09a9"),
        (0, 1, "1234567890123456789012345"),
        (0, u32::MAX, "099"),
    ] {
        assert!(
            matches!(
                c.send_sms(port, uid, to, "x", Encoding::Gsm7Bit).await,
                Err(DinstarError::InvalidRequest(_))
            ),
            "{port} {uid} {to}"
        );
    }
    assert!(sim.requests().is_empty());
}

#[tokio::test]
async fn the_gateway_drops_an_empty_post() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let sim = sim().await;
    let mut s = tokio::net::TcpStream::connect(sim.addr()).await.unwrap();
    s.write_all(
        b"POST /api/send_sms HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 0\r\n\r\n",
    )
    .await
    .unwrap();
    let mut buf = Vec::new();
    let n = tokio::time::timeout(Duration::from_secs(3), s.read_to_end(&mut buf))
        .await
        .expect("the connection is closed, not left hanging")
        .unwrap_or(0);
    assert_eq!(
        n,
        0,
        "no answer at all: {:?}",
        String::from_utf8_lossy(&buf)
    );
    assert_eq!(sim.dropped_connections(), 1);
    assert_eq!(sim.requests()[0].status, None);

    // The client never does that: the challenge round carries the body.
    let c = client(&sim);
    c.send_sms(0, 1, "099", "hola", Encoding::Gsm7Bit)
        .await
        .unwrap();
    assert_eq!(sim.dropped_connections(), 1);
}

#[tokio::test]
async fn ussd_round_trip() {
    let sim = DinstarSim::builder()
        .ussd_delay(Duration::from_millis(400))
        .start()
        .await
        .unwrap();
    let c = client(&sim);
    let st = c.send_ussd(2, "*100#").await.unwrap();
    assert_eq!(st.len(), 1);
    assert_eq!((st[0].port, st[0].status), (2, 200));
    assert_eq!(c.query_ussd_reply(2).await.unwrap(), None, "not yet");
    tokio::time::sleep(Duration::from_millis(450)).await;
    let r = c.query_ussd_reply(2).await.unwrap().expect("a reply");
    assert!(r.contains("saldo"), "{r}");
    sim.set_port_sim(3, false);
    let st = c.send_ussd(3, "*100#").await.unwrap();
    assert_eq!(st[0].status, 503);
}

#[tokio::test]
async fn stop_and_queue() {
    let sim = DinstarSim::builder()
        .result_delay(Duration::from_secs(30))
        .start()
        .await
        .unwrap();
    let c = client(&sim);
    let a = c
        .send_sms(0, 1, "099", "x", Encoding::Gsm7Bit)
        .await
        .unwrap();
    assert_eq!(c.query_sms_in_queue().await.unwrap(), 1);
    assert!(c.stop_sms(a.task_id.unwrap()).await.unwrap());
    assert!(!c.stop_sms(999_999).await.unwrap());
    assert_eq!(c.query_sms_in_queue().await.unwrap(), 0);
    let r = c.query_sms_result(&[1]).await.unwrap();
    assert_eq!(r[0].status, SmsStatus::Failed);
}

/// A push receiver on 127.0.0.1 collecting bodies.
async fn receiver() -> (String, Arc<Mutex<Vec<Vec<u8>>>>) {
    let got: Arc<Mutex<Vec<Vec<u8>>>> = Arc::default();
    let g = got.clone();
    let app = axum::Router::new().route(
        "/push",
        axum::routing::post(move |body: axum::body::Bytes| {
            let g = g.clone();
            async move {
                g.lock().unwrap().push(body.to_vec());
                "ok"
            }
        }),
    );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/push", l.local_addr().unwrap());
    tokio::spawn(async move {
        let _ = axum::serve(l, app).await;
    });
    (url, got)
}

#[tokio::test]
async fn pushes_of_every_kind_parse() {
    let (url, got) = receiver().await;
    let sim = DinstarSim::builder()
        .push_url(Some(url))
        .manual_typos(true)
        .result_delay(Duration::from_millis(10))
        .deliver_delay(Some(Duration::from_millis(10)))
        .ussd_delay(Duration::from_millis(10))
        .start()
        .await
        .unwrap();
    let c = client(&sim);
    sim.inject_incoming(2, "099777666", "Hola ñandú 😀");
    c.send_sms(1, 77, "099555444", "hola", Encoding::Gsm7Bit)
        .await
        .unwrap();
    sim.set_port_sim(6, false);
    c.send_ussd(4, "*100#").await.unwrap();
    assert!(
        eventually(|| got.lock().unwrap().len() >= 5).await,
        "pushes arrived: {}",
        got.lock().unwrap().len()
    );

    let mut events = Vec::new();
    for body in got.lock().unwrap().iter() {
        let ev =
            parse_push(body).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(body)));
        assert!(
            ev.iter()
                .all(|e| e.sn.as_deref() == Some("da00-0030-1901-2817"))
        );
        events.extend(ev.into_iter().map(|e| e.kind));
    }
    let sms = events.iter().find_map(|k| match k {
        PushEventKind::IncomingSms(m) => Some(m),
        _ => None,
    });
    let sms = sms.expect("sms push");
    assert_eq!(sms.text, "Hola ñandú 😀");
    assert_eq!(sms.port, Some(2));
    let result = events
        .iter()
        .find_map(|k| match k {
            PushEventKind::SmsResult(r) => Some(r),
            _ => None,
        })
        .expect("sms_result push");
    // Typos repaired: " 099555444" and "YYYY-MM-DDHH:MM:SS".
    assert_eq!(result.number.as_deref(), Some("099555444"));
    assert!(
        result
            .time
            .as_deref()
            .is_some_and(|t| t.as_bytes()[10] == b' ')
    );
    assert_eq!(result.user_id, None, "like the manual's example");
    let report = events
        .iter()
        .find_map(|k| match k {
            PushEventKind::DeliverStatus(d) => Some(d),
            _ => None,
        })
        .expect("sms_deliver_status push");
    assert_eq!(report.ref_id, result.ref_id);
    assert_eq!(report.outcome(), DeliveryOutcome::Delivered);
    let reg = events
        .iter()
        .find_map(|k| match k {
            PushEventKind::Register(r) => Some(r),
            _ => None,
        })
        .expect("register push");
    assert_eq!(
        (reg.port, &reg.status, &reg.imsi, &reg.iccid),
        (Some(6), &RegisterState::Down, &None, &None)
    );
    assert!(
        events
            .iter()
            .any(|k| matches!(k, PushEventKind::Ussd(u) if u.port == Some(4) && u.text.is_some()))
    );
    assert!(sim.pushes().iter().all(|p| p.outcome == Ok(200)));

    // The two object-shaped events the simulator does not produce.
    let dev = parse_push(
        br#"{"sn":"x","device":{"port_number":"8","IP":"10.0.0.2","MAC":"00:1F","status":"power_off"}}"#,
    )
    .unwrap();
    assert!(
        matches!(&dev[0].kind, PushEventKind::Device(d) if d.port_number == Some(8) && d.status.as_deref() == Some("power_off"))
    );
    let ex = parse_push(
        br#"{"sn":"x","exception_info":{"port":0,"type":"call_fail","action":"reset"}}"#,
    )
    .unwrap();
    assert!(
        matches!(&ex[0].kind, PushEventKind::Exception(e) if e.port == Some(0) && e.kind.as_deref() == Some("call_fail"))
    );
}

#[tokio::test]
async fn pacing_is_visible_in_the_recording() {
    let sim = sim().await;
    let c = client(&sim);
    for i in 0..3 {
        c.send_sms(i % 2, u32::from(i), "099", "x", Encoding::Gsm7Bit)
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
    let ok: Vec<_> = sim
        .requests_to("/api/send_sms")
        .into_iter()
        .filter(|r| r.auth == AuthOutcome::Ok)
        .collect();
    assert_eq!(ok.len(), 3);
    for w in ok.windows(2) {
        assert!(w[1].at.duration_since(w[0].at) >= Duration::from_millis(40));
        assert!(w[1].seq > w[0].seq);
    }
    assert_eq!(
        ok.iter().map(|r| r.ports.clone()).collect::<Vec<_>>(),
        vec![vec![0], vec![1], vec![0]]
    );
}

const CERT: &[u8] = include_bytes!("fixtures/dinstar-sim.crt");
const KEY: &[u8] = include_bytes!("fixtures/dinstar-sim.key");
/// `openssl x509 -in tests/fixtures/dinstar-sim.crt -noout -fingerprint -sha256`
const CERT_SHA256: &str = "1F:33:AC:7A:72:9E:91:DC:43:12:71:AF:53:C5:99:10:86:95:44:8F:96:E0:74:82:DD:D4:8E:63:97:61:AD:81";

#[tokio::test]
async fn https_with_a_self_signed_certificate() {
    use smsgate::transport::dinstar::{TlsVerify, parse_fingerprint};
    let sim = DinstarSim::builder().tls(CERT, KEY).start().await.unwrap();
    assert!(sim.base_url().starts_with("https://"));
    let with = |tls: TlsVerify| {
        let mut cfg = config(&sim, "admin");
        cfg.tls = tls;
        DinstarClient::new(cfg).unwrap()
    };

    // Normal verification refuses the self-signed certificate; nothing left.
    let e = with(TlsVerify::System)
        .get_port_info(&[0], &[])
        .await
        .unwrap_err();
    assert!(matches!(e, DinstarError::Temporary { .. }), "{e:?}");
    assert!(sim.requests().is_empty());

    // A wrong pin is refused too.
    let e = with(TlsVerify::Pinned([7; 32]))
        .get_port_info(&[0], &[])
        .await
        .unwrap_err();
    assert!(
        matches!(&e, DinstarError::Temporary { reason, .. } if reason.contains("pinned")),
        "{e:?}"
    );
    assert!(sim.requests().is_empty());

    // The right pin, and accept-invalid, work.
    let pinned = with(TlsVerify::Pinned(parse_fingerprint(CERT_SHA256).unwrap()));
    pinned
        .send_sms(0, 1, "099", "hola por TLS", Encoding::Gsm7Bit)
        .await
        .unwrap();
    with(TlsVerify::AcceptInvalid)
        .get_port_info(&[0], &[])
        .await
        .unwrap();
    assert_eq!(sim.sends()[0].text, "hola por TLS");
}

/// The simulator's slow-gateway faults: a held `send_sms` times out at the
/// client, is not known by its user_id until the hold ends, and is taken
/// (once) then; faults scripted for one path hit only that path.
#[tokio::test]
async fn a_held_send_is_taken_after_the_client_gave_up_and_path_faults_hit_one_path() {
    let sim = sim().await;
    let mut cfg = config(&sim, "admin");
    cfg.request_timeout = Duration::from_millis(400);
    let c = DinstarClient::new(cfg).unwrap();
    c.get_port_info(&[0], &[]).await.unwrap();
    sim.hold_next_send(Duration::from_millis(1200));
    let e = c
        .send_sms(0, 41, "59899000041", "lento", Encoding::Gsm7Bit)
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            DinstarError::Temporary {
                never_left: false,
                gateway_code: None,
                ..
            }
        ),
        "{e:?}"
    );
    assert_eq!(sim.sends_on_hold(), 1);
    assert!(
        c.query_sms_result(&[41]).await.unwrap().is_empty(),
        "not known while held"
    );
    assert!(sim.sends().is_empty());
    assert!(eventually(|| sim.sends_on_hold() == 0).await);
    let r = c.query_sms_result(&[41]).await.unwrap();
    assert_eq!(r.len(), 1, "known once the gateway took it: {r:?}");
    assert_eq!(sim.sends().len(), 1);

    sim.fault_next_on("/api/query_sms_result", HttpFault::Http500, 2);
    assert!(c.query_sms_result(&[41]).await.is_err());
    c.get_port_info(&[0], &[]).await.unwrap();
    assert!(c.query_sms_result(&[41]).await.is_err());
    assert_eq!(c.query_sms_result(&[41]).await.unwrap().len(), 1);
    sim.fault_on_for(
        "/api/query_sms_result",
        HttpFault::Drop,
        Duration::from_millis(300),
    );
    assert!(c.query_sms_result(&[41]).await.is_err());
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(c.query_sms_result(&[41]).await.unwrap().len(), 1);
}

/// Requests in flight at once with a wrong password (at start, the port,
/// result and incoming pollers) cost one refusal, not one each: the others
/// wait for the first and then meet the backoff it started. Before, they
/// all carried the password at once, and a gateway that locks an address
/// out after two failures locked smsgate out at its first start with a
/// wrong password. Once the gateway has answered, requests run side by
/// side again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_with_a_wrong_password_cost_one_refusal() {
    let sim = DinstarSim::builder()
        .lockout_after(2)
        .start()
        .await
        .unwrap();
    let calls = |c: DinstarClient| {
        (0..8)
            .map(|_| {
                let c = c.clone();
                tokio::spawn(async move { c.get_port_info(&[], &[]).await })
            })
            .collect::<Vec<_>>()
    };
    let (mut refused, mut backing_off) = (0, 0);
    for h in calls(DinstarClient::new(config(&sim, "wrong-secret-pw")).unwrap()) {
        match h.await.unwrap() {
            Err(DinstarError::Auth { .. }) => refused += 1,
            Err(DinstarError::BackingOff { .. }) => backing_off += 1,
            other => panic!("{other:?}"),
        }
    }
    assert_eq!((refused, backing_off), (1, 7), "{:?}", sim.auth_counts());
    assert_eq!(sim.bad_auth_count(), 1, "{:?}", sim.auth_counts());
    assert!(!sim.is_locked_out("127.0.0.1".parse().unwrap()));

    let right = client(&sim);
    for h in calls(right.clone()) {
        h.await.unwrap().expect("accepted");
    }
    for h in calls(right) {
        h.await.unwrap().expect("accepted, side by side");
    }
    assert_eq!(sim.bad_auth_count(), 1);
}
