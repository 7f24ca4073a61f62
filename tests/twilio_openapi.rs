//! Every request the twilio transport makes, checked against Twilio's own
//! OpenAPI description of Messages (tests/data/twilio/, MIT, from
//! twilio-oai) by Stoplight Prism's mock server with `--errors`: a create
//! (SMS, WhatsApp free text, WhatsApp template), a fetch (status polling),
//! and lists (inbound polling, reconcile). Prism logs, for each request,
//! whether it passed the description's validation rules; the test reads
//! that log.
//!
//! Prism comes from the npm registry; tests/run-all.sh installs it under
//! target/tools/prism and names it in SMSGATE_PRISM. Without it the test
//! fails saying how to install it.

use std::io::Read;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use smsgate::config::{Secret, TwilioSettings};
use smsgate::transport::twilio::TwilioTransport;
use smsgate::transport::{Asked, BuildContext, Events, Outbound, Reconciled, Transport};
use smsgate_proto::twilio::{Channel, Sender};
use smsgate_proto::whatsapp_rules::MessageTemplate;

const ACCOUNT: &str = "AC0123456789abcdef0123456789abcdef";

fn prism() -> std::path::PathBuf {
    let path = std::env::var_os("SMSGATE_PRISM")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("target/tools/prism/node_modules/.bin/prism")
        });
    assert!(
        path.exists(),
        "Stoplight Prism is not installed at {} (set SMSGATE_PRISM to its path). Install it with:\n  npm install --prefix target/tools/prism @stoplight/prism-cli@5\n(tests/run-all.sh does this)",
        path.display()
    );
    path
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Prism's mock server, ended when dropped.
struct Mock {
    child: std::process::Child,
    log: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for Mock {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Mock {
    fn start(port: u16) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("prism.log");
        let spec = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data/twilio/twilio_api_v2010.messages.json");
        let child = Command::new(prism())
            .args(["mock", "--errors", "-h", "127.0.0.1", "-p"])
            .arg(port.to_string())
            .arg(&spec)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(Stdio::null())
            .spawn()
            .expect("cannot start prism");
        let ready = (0..300).any(|_| {
            std::thread::sleep(Duration::from_millis(100));
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        assert!(ready, "prism did not listen on {port} within 30 s");
        Self {
            child,
            log,
            _dir: dir,
        }
    }

    fn log(&self) -> String {
        let mut s = String::new();
        std::fs::File::open(&self.log)
            .unwrap()
            .read_to_string(&mut s)
            .unwrap();
        s
    }
}

fn settings(url: &str, channel: Channel, number: &str) -> TwilioSettings {
    TwilioSettings {
        url: url.into(),
        account_sid: ACCOUNT.into(),
        auth_token: Some(Secret::new("prism-token")),
        api_key: None,
        sender: Sender::From(number.into()),
        channel,
        status_callback_url: Some("https://sms.example.com/api/v1/gateways/tw/push".into()),
        timeout: Duration::from_secs(5),
        status_poll: Some(Duration::from_millis(500)),
        status_poll_for: Duration::from_secs(60),
        inbound_poll: Some(Duration::from_millis(500)),
        messaging_limit: None,
    }
}

fn ctx(last_inbound: Vec<(String, i64)>) -> BuildContext {
    BuildContext {
        events: Events::channel().0,
        stop: Default::default(),
        awaiting: Vec::new(),
        inbound_mark: None,
        default_country: "UY".into(),
        last_inbound,
        templates_sent: Vec::new(),
    }
}

fn outbound(id: i64, to: &str, text: &str, template: Option<MessageTemplate>) -> Outbound {
    Outbound {
        message_id: id,
        port: 0,
        to: to.into(),
        text: text.into(),
        reference: id,
        template: template.map(Arc::new),
    }
}

#[test]
fn every_request_validates_against_twilios_openapi() {
    let port = free_port();
    let mock = Mock::start(port);
    let url = format!("http://127.0.0.1:{port}");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let (events, _rx) = Events::channel();
        let stop = tokio_util::sync::CancellationToken::new();
        let sms = TwilioTransport::start(
            "tw-sms",
            1,
            &settings(&url, Channel::Sms, "+15005550006"),
            BuildContext {
                events,
                stop: stop.clone(),
                ..ctx(Vec::new())
            },
        )
        .unwrap();
        let now = smsgate::now_ms();
        let wa = TwilioTransport::start(
            "tw-wa",
            1,
            &settings(&url, Channel::WhatsApp, "+15005550007"),
            BuildContext {
                stop: stop.clone(),
                ..ctx(vec![("+59899000001".into(), now)])
            },
        )
        .unwrap();
        let a = sms
            .send(&outbound(1, "+59899000001", "hola & chau ñ 👍", None))
            .await
            .expect("an SMS create accepted");
        assert!(a.gateway_ref.starts_with("SM"), "{a:?}");
        wa.send(&outbound(2, "+59899000001", "dentro de la ventana", None))
            .await
            .expect("a WhatsApp create accepted");
        wa.send(&outbound(
            3,
            "+59899000002",
            "",
            Some(MessageTemplate {
                name: "HX0123456789abcdef0123456789abcdef".into(),
                language: None,
                variables: vec!["Ana".into(), "10:30".into()],
            }),
        ))
        .await
        .expect("a WhatsApp template create accepted");
        // A list with To, From and DateSent> (whatever prism's canned page
        // holds, the question was asked).
        let r = sms
            .reconcile(&Asked {
                message_id: 1,
                port: 0,
                reference: 1,
                to: "+59899000001".into(),
                text: "hola & chau ñ 👍".into(),
                started_ms: now,
            })
            .await;
        assert_ne!(r, Reconciled::Unknown);
        // The pollers' fetches and lists.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        stop.cancel();
    });
    let log = mock.log();
    let received = log.matches("Request received").count();
    let passed = log
        .matches("The request passed the validation rules")
        .count();
    assert!(
        !log.contains("Request did not pass the validation rules"),
        "a request violates Twilio's description:\n{log}"
    );
    assert_eq!(received, passed, "{log}");
    for (what, needle) in [
        ("creates", "post /2010-04-01/Accounts/"),
        (
            "lists",
            "get /2010-04-01/Accounts/AC0123456789abcdef0123456789abcdef/Messages.json",
        ),
        ("fetches", "/Messages/SM"),
    ] {
        assert!(
            log.lines()
                .any(|l| l.contains(needle) && l.contains("Request received")),
            "no {what} seen by prism:\n{log}"
        );
    }
    assert!(
        log.matches("post /2010-04-01/Accounts/").count() >= 3,
        "three creates"
    );
}
