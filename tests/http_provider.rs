//! The `http` provider kind in the real `smsgate` process, against the
//! simulated HTTP provider on 127.0.0.1: each example shipped in
//! config/smsgate.toml sends a text with `&`, `"`, `+`, `ñ`, a newline and
//! an emoji, and the request the provider received is checked byte for
//! byte; then the classes of failure, delivery reports, received messages
//! and the secrets.

mod common;
use common::runtime;

use std::time::Duration;

use common::{ADMIN, Daemon, OPERATOR, VIEWER, wait_until};
use smsgate_sim::http_provider::{HttpProviderHandle, HttpProviderSim, Reply};

const TEXT: &str = "a&b \"c\" +1 ñ\nline 😀";
/// TEXT in a URL query (and what each shipped GET example must send).
const TEXT_QUERY: &str = "a%26b%20%22c%22%20%2B1%20%C3%B1%0Aline%20%F0%9F%98%80";
const QUALITY_PASSWORD: &str = "qu&lity pa$$";
const AGGREGATOR_TOKEN: &str = "agg-token-7f3b9c1d";
const YEASTAR_PASSWORD: &str = "y3astar+pw";

/// The shipped example `[[gateway]]` named `name` (with its sub-tables),
/// uncommented as the config check test does.
fn shipped_example(name: &str) -> String {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config/smsgate.toml"))
        .unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let start = lines
        .windows(2)
        .position(|w| w[0] == "#[[gateway]]" && w[1] == format!("#name = \"{name}\""))
        .unwrap_or_else(|| panic!("no shipped example {name:?}"));
    let mut out = String::new();
    for (i, line) in lines[start..].iter().enumerate() {
        let Some(rest) = line.strip_prefix('#') else {
            break;
        };
        let example = rest.starts_with('[') || (rest.contains(" = ") && !rest.starts_with(' '));
        if !example || (i > 0 && rest == "[[gateway]]") {
            break;
        }
        out.push_str(rest);
        out.push('\n');
    }
    out
}

/// The example pointed at the simulator, its secret in a file of ours,
/// callbacks allowed from loopback.
fn pointed(
    example: &str,
    from: &str,
    sim: &HttpProviderHandle,
    secrets: &std::path::Path,
) -> String {
    let mut e = example.replace(from, &sim.base_url());
    for (file, value) in [
        ("quality.password", QUALITY_PASSWORD),
        ("aggregator.token", AGGREGATOR_TOKEN),
        ("yeastar.password", YEASTAR_PASSWORD),
    ] {
        let path = secrets.join(file);
        std::fs::write(&path, format!("{value}\n")).unwrap();
        e = e.replace(&format!("/etc/smsgate/{file}"), &path.display().to_string());
    }
    let mut out = String::new();
    for line in e.lines() {
        if line.starts_with("push_allow = ") {
            out.push_str("push_allow = [\"127.0.0.1\"]\n");
        } else if line.starts_with("timeout_ms = ") {
            out.push_str("timeout_ms = 1500\n");
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

fn dialer(name: &str, provider: &str) -> String {
    format!(
        "\n[[dialer]]\nname = \"{name}\"\nprovider = \"{provider}\"\ninterval_ms = 10\ndncr = false\nretry_backoff_ms = 200\nmax_attempts = 5\n"
    )
}

fn send(d: &Daemon, dialer: &str, text: &str) -> i64 {
    let r = d
        .http()
        .post(d.url("/api/v1/messages"))
        .bearer_auth(OPERATOR)
        .json(&serde_json::json!({"dialer": dialer, "to": "+59899123456", "text": text}))
        .send()
        .unwrap();
    assert!(r.status().is_success(), "{:?}", r.text());
    r.json::<serde_json::Value>().unwrap()["id"]
        .as_i64()
        .unwrap()
}

fn message(d: &Daemon, id: i64) -> serde_json::Value {
    d.http()
        .get(d.url(&format!("/api/v1/messages/{id}")))
        .bearer_auth(VIEWER)
        .send()
        .ok()
        .and_then(|r| r.json().ok())
        .unwrap_or_default()
}

fn wait_state(d: &Daemon, id: i64, state: &str) -> serde_json::Value {
    let mut last = serde_json::Value::Null;
    let ok = wait_until(Duration::from_secs(15), || {
        last = message(d, id);
        last["state_name"] == state
    });
    assert!(ok, "message {id} never {state}: {last}");
    last
}

struct Sims {
    quality: HttpProviderHandle,
    aggregator: HttpProviderHandle,
    yeastar: HttpProviderHandle,
}

fn start(rt: &tokio::runtime::Runtime, secrets: &std::path::Path) -> (Sims, Daemon) {
    let port = common::free_port();
    let push = |gw: &str| Some(format!("http://127.0.0.1:{port}/api/v1/gateways/{gw}/push"));
    let quality = rt
        .block_on(
            HttpProviderSim::builder()
                .reply(Reply::new(200, "OK {id}\n"))
                .callback_url(push("quality"))
                .start(),
        )
        .unwrap();
    let aggregator = rt
        .block_on(
            HttpProviderSim::builder()
                .reply(Reply::new(
                    202,
                    r#"{"status":"accepted","data":{"id":"{id}"}}"#,
                ))
                .callback_url(push("aggregator"))
                .start(),
        )
        .unwrap();
    let yeastar = rt
        .block_on(
            HttpProviderSim::builder()
                .reply(Reply::new(
                    200,
                    "Response: Success\r\nMessage: Commit successfully!\r\n",
                ))
                .start(),
        )
        .unwrap();
    let mut extra = String::new();
    extra.push_str(&pointed(
        &shipped_example("quality"),
        "https://sms.quality.example",
        &quality,
        secrets,
    ));
    extra.push_str(&pointed(
        &shipped_example("aggregator"),
        "https://api.aggregator.example",
        &aggregator,
        secrets,
    ));
    extra.push_str(&pointed(
        &shipped_example("yeastar"),
        "http://192.168.1.60",
        &yeastar,
        secrets,
    ));
    extra.push_str(&dialer("dq", "quality"));
    extra.push_str(&dialer("da", "aggregator"));
    extra.push_str(&dialer("dy", "yeastar"));
    extra.push_str(
        "\n[[campaign]]\nname = \"ventas\"\nprovider = \"quality\"\ndid_ports = [\"+59829001000\"]\n",
    );
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("smsgate.toml");
    std::fs::write(
        &config,
        common::config_text(port, &dir.path().join("state"), &extra),
    )
    .unwrap();
    let d = Daemon::start_with(dir, config, port, &[]);
    d.wait_ready();
    (
        Sims {
            quality,
            aggregator,
            yeastar,
        },
        d,
    )
}

#[test]
fn each_shipped_example_sends_the_text_byte_for_byte() {
    let rt = runtime();
    let secrets = tempfile::tempdir().unwrap();
    let (sims, d) = start(&rt, secrets.path());

    // Quality-style GET: every parameter in the query, the password too.
    let id = send(&d, "dq", TEXT);
    let m = wait_state(&d, id, "SENT");
    assert_eq!(m["gateway_ref"], "sim-1", "the id from \"OK <id>\": {m}");
    let r = &sims.quality.requests()[0];
    assert_eq!(r.method, "GET");
    assert_eq!(r.path, "/api/send");
    assert_eq!(
        r.query.as_deref(),
        Some(
            format!("user=acc123&pass=qu%26lity%20pa%24%24&to=59899123456&text={TEXT_QUERY}")
                .as_str()
        )
    );
    assert!(r.body_bytes.is_empty());
    assert_eq!(r.header("authorization"), None);
    assert_eq!(r.header("content-type"), None);

    // JSON aggregator: bearer token, the JSON body exactly, our id in it.
    let id = send(&d, "da", TEXT);
    let m = wait_state(&d, id, "SENT");
    assert_eq!(m["gateway_ref"], "sim-1", "the id at /data/id: {m}");
    let r = &sims.aggregator.requests()[0];
    assert_eq!(r.method, "POST");
    assert_eq!(r.path, "/v1/messages");
    assert_eq!(r.query, None);
    assert_eq!(
        r.header("authorization"),
        Some(format!("Bearer {AGGREGATOR_TOKEN}").as_str())
    );
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.header("accept"), Some("application/json"));
    let want = format!(
        "{{\"to\": \"+59899123456\", \"from\": \"ACME\", \"text\": \"a&b \\\"c\\\" +1 ñ\\nline 😀\", \"reference\": \"{id}\"}}"
    );
    assert_eq!(String::from_utf8(r.body_bytes.clone()).unwrap(), want);
    let parsed: serde_json::Value = serde_json::from_slice(&r.body_bytes).unwrap();
    assert_eq!(
        parsed["text"], TEXT,
        "the provider reads back the same text"
    );

    // Yeastar TG: its odd query, the GSM port from 1, the national number.
    let id = send(&d, "dy", TEXT);
    let m = wait_state(&d, id, "SENT");
    assert_eq!(
        m["gateway_ref"],
        id.to_string(),
        "no id in its answer: ours stands for it"
    );
    let r = &sims.yeastar.requests()[0];
    assert_eq!(r.method, "GET");
    assert_eq!(r.path, "/cgi/WebCGI");
    assert_eq!(
        r.query.as_deref(),
        Some(
            format!(
                "1500101=account=apiuser&password=y3astar%2Bpw&port=1&destination=099123456&content={TEXT_QUERY}"
            )
            .as_str()
        )
    );
}

#[test]
fn failures_reports_inbound_and_secrets() {
    let rt = runtime();
    let secrets = tempfile::tempdir().unwrap();
    let (sims, mut d) = start(&rt, secrets.path());
    let agg = &sims.aggregator;

    // A permanent refusal: FAILED with the provider's words.
    agg.queue_reply(
        Reply::new(
            400,
            r#"{"status":"rejected","error":"invalid destination number"}"#,
        ),
        1,
    );
    let failed = send(&d, "da", "uno");
    let m = wait_state(&d, failed, "FAILED");
    assert!(
        m["error"]
            .as_str()
            .unwrap_or("")
            .contains("invalid destination number"),
        "{m}"
    );
    assert_eq!(
        agg.requests().len(),
        1,
        "a permanent failure is not retried"
    );

    // A 503 and a 429 are retried; the third try is taken.
    agg.queue_reply(Reply::new(503, "maintenance"), 1);
    agg.queue_reply(Reply::new(429, "slow down"), 1);
    let retried = send(&d, "da", "dos");
    let m = wait_state(&d, retried, "SENT");
    assert_eq!(m["attempts"], 3, "{m}");
    assert_eq!(agg.requests().len(), 4);

    // A delivery report by callback: DELIVERED.
    let gateway_ref = m["gateway_ref"].as_str().unwrap().to_string();
    let (status, body) = rt
        .block_on(agg.callback(
            "application/json",
            format!(r#"{{"message_id":"{gateway_ref}","status":"delivered"}}"#).as_bytes(),
        ))
        .unwrap();
    assert_eq!(status, 200, "{body}");
    wait_state(&d, retried, "DELIVERED");
    // An undelivered one, for the permanent... (the first message never
    // left; take a fresh one)
    let third = send(&d, "da", "tres");
    let m = wait_state(&d, third, "SENT");
    let (status, _) = rt
        .block_on(
            agg.callback(
                "application/json",
                format!(
                    r#"{{"message_id":"{}","status":"failed","error":"absent subscriber"}}"#,
                    m["gateway_ref"].as_str().unwrap()
                )
                .as_bytes(),
            ),
        )
        .unwrap();
    assert_eq!(status, 200);
    wait_state(&d, third, "UNDELIVERED");

    // A timeout: the provider may have taken it and cannot be asked.
    agg.queue_reply(Reply::new(202, "{}").delayed(Duration::from_secs(3)), 1);
    let late = send(&d, "da", "cuatro");
    wait_state(&d, late, "UNKNOWN");

    // A customer's message by callback (form-encoded), sent twice.
    let form = "from=099111222&to=%2B59829001000&text=Hola%2C+%C2%BFc%C3%B3mo+est%C3%A1n%3F+%F0%9F%98%80&id=in-1";
    for _ in 0..2 {
        let (status, body) = rt
            .block_on(
                sims.quality
                    .callback("application/x-www-form-urlencoded", form.as_bytes()),
            )
            .unwrap();
        assert_eq!(status, 200, "{body}");
    }
    let mut inbound = serde_json::Value::Null;
    assert!(
        wait_until(Duration::from_secs(10), || {
            inbound = common::get(&d, "/api/v1/inbound?campaign=ventas");
            inbound["items"].as_array().is_some_and(|a| !a.is_empty())
        }),
        "{inbound}"
    );
    std::thread::sleep(Duration::from_millis(300));
    let inbound = common::get(&d, "/api/v1/inbound?campaign=ventas");
    let items = inbound["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "stored once: {inbound}");
    assert_eq!(items[0]["text"], "Hola, ¿cómo están? 😀");
    assert_eq!(items[0]["number"], "+59899111222");
    assert_eq!(items[0]["recipient"], "+59829001000");
    assert_eq!(items[0]["gateway"], "quality");
    let conversations = common::get(&d, "/api/v1/interactions?campaign=ventas");
    assert!(
        conversations.to_string().contains("+59899111222"),
        "a conversation of the campaign: {conversations}"
    );
    // A callback that is neither: 400, and nothing from another address
    // (push_allow) is tested by the push route's own tests.
    let (status, _) = rt
        .block_on(
            sims.quality
                .callback("application/x-www-form-urlencoded", b"foo=bar"),
        )
        .unwrap();
    assert_eq!(status, 400);

    // A callback from an address not in push_allow (the Yeastar example
    // lists none): refused before it is read.
    let r = d
        .http()
        .post(d.url("/api/v1/gateways/yeastar/push"))
        .body("id=1&status=DELIVRD")
        .send()
        .unwrap();
    assert_eq!(r.status(), 403);

    // Refused credentials: the provider echoes the token in its answer.
    agg.set_reply(Reply::new(
        401,
        &format!(r#"{{"error":"token {AGGREGATOR_TOKEN} is not valid"}}"#),
    ));
    let refused = send(&d, "da", "cinco");
    let mut channels = serde_json::Value::Null;
    assert!(
        wait_until(Duration::from_secs(10), || {
            channels = common::get(&d, "/api/v1/channels");
            channels["items"].as_array().into_iter().flatten().any(|c| {
                c["gateway"] == "aggregator"
                    && c["usable"] == false
                    && c["reason"]
                        .as_str()
                        .unwrap_or("")
                        .contains("refused our credentials")
            })
        }),
        "the provider's channels stop, saying why: {channels}"
    );
    let m = message(&d, refused);
    assert!(
        m["state_name"] == "TO_PROCESS" || m["state_name"] == "SENDING",
        "back in its queue, not failed: {m}"
    );
    // The secrets are nowhere: API bodies, status, the journal.
    for path in [
        format!("/api/v1/messages/{refused}"),
        "/api/v1/channels".to_string(),
        "/api/v1/status".to_string(),
        "/api/v1/messages?dialer=da".to_string(),
    ] {
        let body = d
            .http()
            .get(d.url(&path))
            .bearer_auth(ADMIN)
            .send()
            .unwrap()
            .text()
            .unwrap();
        for secret in [
            AGGREGATOR_TOKEN,
            QUALITY_PASSWORD,
            "qu%26lity",
            YEASTAR_PASSWORD,
        ] {
            assert!(!body.contains(secret), "{path} shows a secret: {body}");
        }
    }
    d.signal("TERM");
    d.wait_exit(Duration::from_secs(10));
    let journal = d.take_stderr();
    assert!(journal.contains("refused our credentials"), "{journal}");
    for secret in [
        AGGREGATOR_TOKEN,
        QUALITY_PASSWORD,
        "qu%26lity",
        YEASTAR_PASSWORD,
    ] {
        assert!(!journal.contains(secret), "the journal shows a secret");
    }
}

/// Delivery reports by polling a status URL: the provider's id in the
/// poll's query, the status read at a JSON pointer.
#[test]
fn delivery_reports_by_polling_a_status_url() {
    let rt = runtime();
    let sim = rt
        .block_on(
            HttpProviderSim::builder()
                .reply(Reply::new(
                    200,
                    r#"{"status":"accepted","data":{"id":"{id}"},"state":"DELIVRD"}"#,
                ))
                .start(),
        )
        .unwrap();
    let extra = format!(
        r#"
[[gateway]]
name = "polled"
kind = "http"
url = "{base}/send"
json = '{{"to": "{{number}}", "text": "{{text}}"}}'
success_pointer = "/status"
success_value = "accepted"
id_pointer = "/data/id"
[gateway.reports]
poll_url = "{base}/status?id={{provider_id}}&ours={{message_id}}"
poll_interval_s = 1
status_field = "/state"
delivered = ["DELIVRD"]
undelivered = ["UNDELIV"]
{dialer}"#,
        base = sim.base_url(),
        dialer = dialer("dp", "polled"),
    );
    let d = Daemon::start(&extra, &[]);
    d.wait_ready();
    let id = send(&d, "dp", TEXT);
    wait_state(&d, id, "DELIVERED");
    let reqs = sim.requests();
    assert_eq!(reqs[0].path, "/send");
    let poll = reqs.iter().find(|r| r.path == "/status").expect("a poll");
    assert_eq!(poll.method, "GET");
    assert_eq!(
        poll.query.as_deref(),
        Some(format!("id=sim-1&ours={id}").as_str())
    );
}

/// Bad templates are refused at load, each where it is written.
#[test]
fn templates_are_checked_at_load() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        r#"[daemon]
state_dir = "/tmp/x"

[[gateway]]
name = "p1"
kind = "http"
url = "https://p.example/send?to={number}&msg={txt}"

[[gateway]]
name = "p2"
kind = "http"
json = '{"to": {number}, "text": "{text}"}'
url = "https://p.example/send"

[[gateway]]
name = "p3"
kind = "http"
method = "GET"
url = "https://p.example/send?user=u&pass=hunter2secret&to={number}&text={text}"
"#,
    )
    .unwrap();
    let out = std::process::Command::new(common::bin())
        .arg("check-config")
        .arg(&path)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(":7:7: url: unknown placeholder {txt}"),
        "{err}"
    );
    assert!(
        err.contains(":12:8: json is not JSON once its placeholders are filled"),
        "{err}"
    );
    assert!(
        err.contains(
            ":19:7: url: the query parameter \"pass\" holds a secret written into the URL"
        ),
        "{err}"
    );
    assert!(
        !err.contains("hunter2secret"),
        "the secret is not echoed: {err}"
    );
}

/// A kill while a request is in flight: a provider cannot be asked what it
/// took, so after the restart the message is UNKNOWN, and not sent again.
#[test]
fn a_kill_during_a_send_leaves_the_message_unknown_not_sent_twice() {
    let rt = runtime();
    let sim = rt
        .block_on(
            HttpProviderSim::builder()
                .reply(Reply::new(200, "OK {id}").delayed(Duration::from_secs(5)))
                .start(),
        )
        .unwrap();
    let extra = format!(
        "\n[[gateway]]\nname = \"slow\"\nkind = \"http\"\nmethod = \"GET\"\nurl = \"{}/send?to={{number}}&text={{text}}\"\ntimeout_ms = 10000\n{}",
        sim.base_url(),
        dialer("ds", "slow")
    );
    let mut d = Daemon::start(&extra, &[]);
    d.wait_ready();
    let id = send(&d, "ds", "una sola vez");
    assert!(wait_until(Duration::from_secs(10), || sim.requests().len() == 1));
    d.signal("KILL");
    d.wait_exit(Duration::from_secs(5));
    sim.set_reply(Reply::new(200, "OK {id}"));
    let dir = std::mem::replace(&mut d.dir, tempfile::tempdir().unwrap());
    let (config, port) = (d.config.clone(), d.port);
    drop(d);
    let d = Daemon::start_with(dir, config, port, &[]);
    d.wait_ready();
    let m = wait_state(&d, id, "UNKNOWN");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(sim.requests().len(), 1, "not sent twice: {m}");
}

/// Callbacks configured with no address allowed to make them: a warning.
#[test]
fn callbacks_without_push_allow_are_warned_about() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("warn.toml");
    std::fs::write(
        &path,
        "[daemon]\nstate_dir = \"/tmp/x\"\n\n[[gateway]]\nname = \"p\"\nkind = \"http\"\nurl = \"https://p.example/send\"\nform = \"to={number}&text={text}\"\n[gateway.inbound]\nfrom_field = \"from\"\ntext_field = \"text\"\n",
    )
    .unwrap();
    let out = std::process::Command::new(common::bin())
        .arg("check-config")
        .arg(&path)
        .output()
        .unwrap();
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(0), "{all}");
    assert!(
        all.contains("\"p\": [gateway.inbound] or [gateway.reports] expects the provider's callbacks, but push_allow is empty"),
        "{all}"
    );
}

/// No connection: temporary, retried with backoff until the attempts are
/// spent; the words never hold the URL (it holds the password).
#[test]
fn a_provider_that_cannot_be_reached_is_retried_then_failed() {
    let closed = common::free_port();
    let secrets = tempfile::tempdir().unwrap();
    let pw = secrets.path().join("pw");
    std::fs::write(&pw, format!("{QUALITY_PASSWORD}\n")).unwrap();
    let extra = format!(
        "\n[[gateway]]\nname = \"down\"\nkind = \"http\"\nmethod = \"GET\"\nbreaker_failures = 20\nurl = \"http://127.0.0.1:{closed}/send?user={{user}}&pass={{password}}&to={{number}}&text={{text}}\"\nuser = \"acc\"\npassword_file = \"{}\"\n{}",
        pw.display(),
        dialer("dd", "down")
    );
    let mut d = Daemon::start(&extra, &[]);
    d.wait_ready();
    let id = send(&d, "dd", "hola");
    let m = wait_state(&d, id, "FAILED");
    assert_eq!(m["attempts"], 5, "{m}");
    let error = m["error"].as_str().unwrap_or("");
    assert!(error.contains("cannot connect to the provider"), "{m}");
    assert!(
        !error.contains("127.0.0.1") && !error.contains("qu%26lity"),
        "{m}"
    );
    d.signal("TERM");
    d.wait_exit(Duration::from_secs(10));
    let journal = d.take_stderr();
    assert!(!journal.contains("qu%26lity") && !journal.contains(QUALITY_PASSWORD));
}
