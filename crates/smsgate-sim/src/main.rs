//! `smsgate-sim`: run a simulated gateway on its own, so a technician or the
//! portal's developers can try smsgate without hardware.
//!
//! ```text
//! smsgate-sim dinstar --listen 127.0.0.1:8090 --ports 8 --user admin --password admin \
//!     --push-url http://127.0.0.1:8080/api/v1/gateways/gw1/push
//! curl -X POST localhost:8090/sim/incoming -d '{"port":0,"from":"099123456","text":"hola"}' \
//!     -H 'content-type: application/json'
//!
//! smsgate-sim dwg --connect 127.0.0.1:9000 --user smsgate --password secret --ports 8 \
//!     --no-sim 3 --incoming '0:099123456:¿Mañana? 👍'
//!
//! smsgate-sim http --listen 127.0.0.1:8095 --body '{"status":"ok","id":"{id}"}' \
//!     --callback-url http://127.0.0.1:8080/api/v1/gateways/prov/push
//!
//! smsgate-sim twilio --listen 127.0.0.1:8096 --auth-token sim-auth-token \\
//!     --incoming-url http://127.0.0.1:8080/api/v1/gateways/twilio/push
//!
//! smsgate-sim modem --link /tmp/ttyGSM0 --incoming '+59899123456:¿Mañana? 👍'
//!
//! # customers writing in every 10 s to our number +59829001000 (port 2)
//! smsgate-sim dinstar --push-url http://127.0.0.1:8080/api/v1/gateways/gw1/push \
//!     --sim-number 2:+59829001000 --incoming-on +59829001000 --incoming-every 10 \
//!     --incoming-from 099123456,099654321 --incoming-text 'Hola' --incoming-text "$(cat long.txt)"
//! ```
#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use smsgate_proto::dwg::PortState;
use smsgate_sim::dinstar::{Arrival, DinstarSim, IncomingSchedule, SimAuth};
use smsgate_sim::dwg::{DwgSim, SimPort};

#[derive(Parser)]
#[command(
    name = "smsgate-sim",
    version,
    about = "Simulated gateways for smsgate"
)]
struct Cli {
    #[command(subcommand)]
    sim: Sim,
}

#[derive(Subcommand)]
enum Sim {
    /// A Dinstar GSM gateway (JSON HTTP API under /api/, control under /sim/).
    ///
    /// A customer writes in with POST /sim/incoming
    /// {"port": 0, "from": "099123456", "text": "hola"}, or "number" (one of
    /// our numbers, a SIM's) instead of "port"; add "every_s" (and
    /// optionally "senders", "texts", "count") for a schedule. Each message
    /// is pushed (with --push-url) and listed by query_incoming_sms.
    Dinstar(DinstarArgs),
    /// A Dinstar DWG gateway on the binary "DWG SMS API": it connects to
    /// smsgate's `dinstar-dwg` listener.
    Dwg(DwgArgs),
    /// A GSM modem answering AT commands on a pseudo-terminal: prints the
    /// path to give smsgate as `device` (or gammu as `port`).
    Modem(ModemArgs),
    /// An HTTP SMS provider (smsgate's kind "http"): records every request
    /// byte for byte and answers with --status and --body ({id} becomes
    /// the provider's id: sim-1, sim-2, ...).
    ///
    /// GET /sim/requests lists what it received (body_hex is exact);
    /// POST /sim/reply {"status": 401, "body": "...", "times": 1} queues
    /// replies (a 429, a 503, "delay_ms" for a timeout); without "times"
    /// it becomes the default. POST /sim/callback posts its body, with its
    /// Content-Type, to --callback-url: a delivery report or a customer's
    /// message, e.g. curl localhost:8095/sim/callback -d 'id=sim-1&status=DELIVRD'.
    Http(HttpArgs),
    /// Meta's WhatsApp Business Cloud API (smsgate's kind
    /// "whatsapp-cloud"): POST /{version}/{phone_number_id}/messages with a
    /// Bearer token; templates known by --template NAME:LANG:PARAMS; free
    /// text only to customers who wrote in the last 24 h (else 131047);
    /// statuses by webhook to --webhook-url, signed X-Hub-Signature-256
    /// with --app-secret.
    ///
    /// GET /sim/requests lists what it received; POST /sim/incoming
    /// {"from": "59899000001", "text": "hola"} makes a customer write in;
    /// POST /sim/statuses {"statuses": ["sent", "read", "delivered"],
    /// "delay_ms": 50} sets what follows a send; POST /sim/error
    /// {"code": 190, "times": 1} (or "to": "598...", "hang": true) injects
    /// errors; POST /sim/handshake {"verify_token": "..."} performs Meta's
    /// verification GET against --webhook-url.
    WhatsappCloud(WhatsappCloudArgs),
    /// Twilio's Messages API (smsgate's kind "twilio", SMS and WhatsApp):
    /// create, fetch and list under /2010-04-01/Accounts/SID/Messages,
    /// basic auth checked, statuses queued → sent → delivered called back
    /// signed (X-Twilio-Signature) to each message's StatusCallback.
    ///
    /// POST /sim/incoming {"from": "+59899123456", "body": "hola",
    /// "whatsapp": false} is a customer's message to --number, posted
    /// signed to --incoming-url; POST /sim/fault {"to": "+598...", "code":
    /// 21610, "status": 400} (or without "to": the next "times" creates;
    /// "retry_after" with status 429; "hang_ms" to accept and then not
    /// answer) injects errors; POST /sim/status {"sid": "SM...", "status":
    /// "sent"} calls a status back now; GET /sim/requests and
    /// /sim/messages show what it saw and holds.
    Twilio(TwilioArgs),
    /// Writes the manual page smsgate-sim.1 into DIR (the .deb's build).
    #[command(hide = true)]
    GenerateMan { dir: std::path::PathBuf },
}

/// Customers writing in on a schedule (every simulator).
#[derive(clap::Args)]
struct ScheduleArgs {
    /// Seconds between two messages from simulated customers (fractions
    /// allowed); with none, no schedule. The first comes after one interval.
    #[arg(long, value_name = "SECS")]
    incoming_every: Option<f64>,
    /// Who writes, in turn (comma-separated or repeated).
    #[arg(long, value_delimiter = ',', default_value = "+59899123456")]
    incoming_from: Vec<String>,
    /// What they write, in turn (repeatable). A long text (over 160
    /// GSM characters, or 70 with emoji or accents outside GSM) is a
    /// multi-part message: a modem receives it as concatenated parts, a
    /// Dinstar box hands over the whole text.
    #[arg(long, default_value = "Hola, ¿me pueden llamar? 👍")]
    incoming_text: Vec<String>,
    /// How many messages in all (default: no end).
    #[arg(long, value_name = "N")]
    incoming_count: Option<u64>,
}

impl ScheduleArgs {
    fn every(&self) -> Result<Option<Duration>, String> {
        match self.incoming_every {
            None => Ok(None),
            Some(s) => match Duration::try_from_secs_f64(s) {
                Ok(d) if !d.is_zero() => Ok(Some(d)),
                _ => Err(format!("--incoming-every wants seconds over 0, not {s}")),
            },
        }
    }
}

#[derive(clap::Args)]
struct TwilioArgs {
    #[arg(long, default_value = "127.0.0.1:8096")]
    listen: SocketAddr,
    #[arg(long, default_value = "AC00000000000000000000000000000001")]
    account_sid: String,
    /// The auth token it checks and signs with (a test value: this is a
    /// simulator).
    #[arg(long, default_value = "sim-auth-token")]
    auth_token: String,
    /// Our number: the To of customers' messages.
    #[arg(long, default_value = "+15005550006")]
    number: String,
    /// smsgate's push route (its status_callback_url), for customers'
    /// messages.
    #[arg(long)]
    incoming_url: Option<String>,
    #[arg(long, default_value_t = 500)]
    sent_after_ms: u64,
    #[arg(long, default_value_t = 2000)]
    delivered_after_ms: u64,
    /// delivered, read, undelivered or failed.
    #[arg(long, default_value = "delivered")]
    final_status: String,
}

#[derive(clap::Args)]
struct HttpArgs {
    #[arg(long, default_value = "127.0.0.1:8095")]
    listen: SocketAddr,
    /// The HTTP status of every answer.
    #[arg(long, default_value_t = 200)]
    status: u16,
    /// The body of every answer; {id} becomes the provider's id.
    #[arg(long, default_value = "OK {id}")]
    body: String,
    /// Its Content-Type (default: application/json when the body starts
    /// with "{", text/plain otherwise).
    #[arg(long)]
    content_type: Option<String>,
    /// Delay before each answer.
    #[arg(long, default_value_t = 0)]
    delay_ms: u64,
    /// smsgate's push route of this provider, for POST /sim/callback
    /// (http://127.0.0.1:8080/api/v1/gateways/NAME/push).
    #[arg(long)]
    callback_url: Option<String>,
}

#[derive(clap::Args)]
struct WhatsappCloudArgs {
    #[arg(long, default_value = "127.0.0.1:8096")]
    listen: SocketAddr,
    #[arg(long, default_value = "v21.0")]
    api_version: String,
    #[arg(long, default_value = "106540352242922")]
    phone_number_id: String,
    /// Our number as Meta shows it in the webhooks (digits).
    #[arg(long, default_value = "15550001111")]
    display_number: String,
    #[arg(
        long,
        env = "SMSGATE_SIM_ACCESS_TOKEN",
        hide_env_values = true,
        default_value = "sim-access-token"
    )]
    access_token: String,
    #[arg(
        long,
        env = "SMSGATE_SIM_APP_SECRET",
        hide_env_values = true,
        default_value = "sim-app-secret"
    )]
    app_secret: String,
    /// smsgate's push route of the gateway
    /// (http://127.0.0.1:8080/api/v1/gateways/NAME/push).
    #[arg(long)]
    webhook_url: Option<String>,
    /// An approved template, NAME:LANGUAGE:BODY_PARAMETERS (repeatable);
    /// hello_world:en_US:0 is always known.
    #[arg(long)]
    template: Vec<String>,
    /// The statuses that follow each send, in order (comma-separated).
    #[arg(long, default_value = "sent,delivered,read")]
    statuses: String,
    /// Between two statuses.
    #[arg(long, default_value_t = 50)]
    status_delay_ms: u64,
}

#[derive(clap::Args)]
struct ModemArgs {
    /// A stable path (symlink) to the pty, like /dev/serial/by-id/...; it
    /// follows the pty when the modem is re-plugged.
    #[arg(long, default_value = "/tmp/smsgate-modem")]
    link: std::path::PathBuf,
    /// The SIM asks for this PIN.
    #[arg(long, env = "SMSGATE_SIM_PIN", hide_env_values = true)]
    pin: Option<String>,
    /// Delay before each answer.
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,
    /// Time from a send to its status report (negative = none).
    #[arg(long, default_value_t = 1000, allow_negative_numbers = true)]
    report_delay_ms: i64,
    /// Vendor behaviour: plain, huawei (\r\r\n, COMMAND NOT SUPPORT,
    /// ^RSSI), wavecom (+CPIN? without OK).
    #[arg(long, default_value = "plain")]
    profile: String,
    /// A received SMS, stored on the SIM before any client comes, as
    /// FROM:TEXT (repeatable; long texts arrive in parts).
    #[arg(long)]
    incoming: Vec<String>,
    /// Hand new messages to the client as +CMT with the PDU, never stored
    /// on the SIM, whatever AT+CNMI asked (default: as AT+CNMI asks;
    /// smsgate asks for +CMTI, stored first).
    #[arg(long)]
    direct: bool,
    #[command(flatten)]
    schedule: ScheduleArgs,
}

#[derive(clap::Args)]
struct DwgArgs {
    /// smsgate's DWG listener (the gateway's "SMS server" setting).
    #[arg(long, default_value = "127.0.0.1:9000")]
    connect: SocketAddr,
    #[arg(long, default_value = "admin")]
    user: String,
    #[arg(long, default_value = "admin", env = "SMSGATE_SIM_PASSWORD")]
    password: String,
    /// Number of GSM ports (0-based on the wire).
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u8).range(1..=32))]
    ports: u8,
    /// Ports without a SIM card (repeat or comma-separate).
    #[arg(long, value_delimiter = ',')]
    no_sim: Vec<u8>,
    /// Delay before answering a send request.
    #[arg(long, default_value_t = 20)]
    latency_ms: u64,
    /// Delay from the answer to the send result; negative = never.
    #[arg(long, default_value_t = 500, allow_negative_numbers = true)]
    result_delay_ms: i64,
    /// Delay from the result to the delivery receipt; negative = never.
    #[arg(long, default_value_t = 2000, allow_negative_numbers = true)]
    receipt_delay_ms: i64,
    /// Seconds between keep-alives.
    #[arg(long, default_value_t = 20)]
    keepalive_s: u64,
    /// Seconds before reconnecting after a drop.
    #[arg(long, default_value_t = 5)]
    reconnect_s: u64,
    /// A received SMS to deliver once connected, as PORT:FROM:TEXT (repeatable).
    #[arg(long)]
    incoming: Vec<String>,
    /// The port scheduled messages arrive on (see --incoming-every).
    #[arg(long, default_value_t = 0, value_name = "PORT")]
    incoming_on: u8,
    #[command(flatten)]
    schedule: ScheduleArgs,
}

#[derive(Clone, Copy, ValueEnum)]
enum AuthArg {
    Digest,
    Basic,
    Any,
}

#[derive(clap::Args)]
struct DinstarArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8090")]
    listen: SocketAddr,
    /// Number of GSM ports (0-based, 1 to 32).
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u8).range(1..=32))]
    ports: u8,
    #[arg(long, default_value = "admin")]
    user: String,
    #[arg(long, default_value = "admin", env = "SMSGATE_SIM_PASSWORD")]
    password: String,
    #[arg(long, value_enum, default_value = "digest")]
    auth: AuthArg,
    /// Serial number reported in replies and pushes.
    #[arg(long, default_value = "da00-0030-1901-2817")]
    sn: String,
    /// Where to push events (sms, sms_result, sms_deliver_status, ussd, register).
    #[arg(long)]
    push_url: Option<String>,
    /// Delay before every API answer.
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,
    /// Share of send_sms requests answered error_code 500 (0.0 to 1.0).
    #[arg(long, default_value_t = 0.0)]
    fail_rate: f64,
    /// Hold every N-th send_sms (0 = none) for --hold-ms before the
    /// gateway acts on it, as a box too busy to answer in time does.
    #[arg(long, default_value_t = 0)]
    hold_every: u64,
    /// How long a held send_sms waits before the gateway takes it.
    #[arg(long, default_value_t = 15000)]
    hold_ms: u64,
    /// Time from acceptance to SENT_OK.
    #[arg(long, default_value_t = 2000)]
    result_delay_ms: u64,
    /// Time from SENT_OK to a delivery report; negative = never by itself.
    #[arg(long, default_value_t = 5000, allow_negative_numbers = true)]
    deliver_delay_ms: i64,
    /// Bad logins from one IP before it is locked out (0 = never).
    #[arg(long, default_value_t = 5)]
    lockout_after: u32,
    /// Lock-out length in seconds (0 = until POST /sim/unlock).
    #[arg(long, default_value_t = 0)]
    lockout_secs: u64,
    /// Put user_id in pushed sms_result items (the manual's example has none).
    #[arg(long)]
    push_user_id: bool,
    /// Write pushed times and numbers with the manual's typos.
    #[arg(long)]
    manual_typos: bool,
    /// Serve HTTPS with this certificate (PEM); needs --tls-key.
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<std::path::PathBuf>,
    /// Private key (PEM) for --tls-cert.
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<std::path::PathBuf>,
    /// A port's SIM number, as PORT:NUMBER (repeatable): shown in
    /// get_port_info and register pushes, and where messages sent to that
    /// number arrive.
    #[arg(long, value_name = "PORT:NUMBER")]
    sim_number: Vec<String>,
    /// A customer's SMS, as ON:FROM:TEXT, injected once at start
    /// (repeatable). ON is a port (0-31) or one of our numbers (a SIM's,
    /// see --sim-number). A long text arrives as one message with the
    /// whole text, as the boxes observed hand it over (their JSON carries
    /// no part numbers to join segments by).
    #[arg(long, value_name = "ON:FROM:TEXT")]
    incoming: Vec<String>,
    /// Where scheduled messages arrive (see --incoming-every): a port or
    /// one of our numbers.
    #[arg(long, default_value = "0", value_name = "ON")]
    incoming_on: String,
    #[command(flatten)]
    schedule: ScheduleArgs,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,smsgate=debug".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    if let Sim::GenerateMan { dir } = &cli.sim {
        return generate_man(dir);
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("smsgate-sim: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match cli.sim {
        Sim::Dinstar(a) => rt.block_on(run_dinstar(a)),
        Sim::Dwg(a) => rt.block_on(run_dwg(a)),
        Sim::Modem(a) => rt.block_on(run_modem(a)),
        Sim::Http(a) => rt.block_on(run_http(a)),
        Sim::WhatsappCloud(a) => rt.block_on(run_whatsapp_cloud(a)),
        Sim::Twilio(a) => rt.block_on(run_twilio(a)),
        Sim::GenerateMan { .. } => ExitCode::SUCCESS,
    }
}

fn generate_man(dir: &std::path::Path) -> ExitCode {
    use clap::CommandFactory;
    let mut page = Vec::new();
    let written = clap_mangen::Man::new(Cli::command())
        .render(&mut page)
        .and_then(|()| std::fs::create_dir_all(dir))
        .and_then(|()| std::fs::write(dir.join("smsgate-sim.1"), page));
    match written {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!(
                "smsgate-sim: cannot write {}: {e}",
                dir.join("smsgate-sim.1").display()
            );
            ExitCode::FAILURE
        }
    }
}

async fn run_modem(a: ModemArgs) -> ExitCode {
    use smsgate_sim::modem::{FakeModem, ModemState, Quirks};
    let quirks = match a.profile.as_str() {
        "plain" => Quirks::default(),
        "huawei" => Quirks {
            huawei: true,
            rssi_flood: true,
            ..Quirks::default()
        },
        "wavecom" => Quirks {
            cpin_no_ok: true,
            ..Quirks::default()
        },
        other => {
            eprintln!("smsgate-sim: unknown modem profile {other:?} (plain, huawei, wavecom)");
            return ExitCode::FAILURE;
        }
    };
    let mut state = ModemState::default();
    state.sim_pin = a.pin.clone();
    state.quirks = quirks;
    state.auto_report = (a.report_delay_ms >= 0).then_some(0);
    state.report_delay = Duration::from_millis(a.report_delay_ms.max(0) as u64);
    state.faults.delay = Duration::from_millis(a.latency_ms);
    state.deliver_direct = a.direct;
    // --incoming messages are stored before any client sets CNMI: no
    // announcement, found by AT+CMGL like messages that came while the
    // daemon was down.
    let modem = match FakeModem::start(&a.link, state) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("smsgate-sim: {e}");
            return ExitCode::FAILURE;
        }
    };
    for (i, spec) in a.incoming.iter().enumerate() {
        match spec.split_once(':') {
            Some((from, text)) => {
                modem.receive(from, text, i as u8 + 1);
            }
            None => {
                eprintln!("smsgate-sim: --incoming wants FROM:TEXT, not {spec:?}");
                return ExitCode::FAILURE;
            }
        }
    }
    let every = match a.schedule.every() {
        Ok(e) => e,
        Err(e) => {
            eprintln!("smsgate-sim: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Some(every) = every {
        let scheduled = modem.receive_every(smsgate_sim::modem::ReceiveSchedule {
            every,
            from: a.schedule.incoming_from.clone(),
            texts: a.schedule.incoming_text.clone(),
            count: a.schedule.incoming_count,
            first_ref: a.incoming.len() as u8 + 1,
        });
        if let Err(e) = scheduled {
            eprintln!("smsgate-sim: {e}");
            return ExitCode::FAILURE;
        }
    }
    println!("{}", modem.path().display());
    if let Some(tty) = modem.tty() {
        eprintln!(
            "smsgate-sim: modem on {} (linked from {})",
            tty.display(),
            modem.path().display()
        );
    }
    let _ = tokio::signal::ctrl_c().await;
    drop(modem);
    ExitCode::SUCCESS
}

async fn run_dwg(a: DwgArgs) -> ExitCode {
    let mut incoming = Vec::new();
    for spec in &a.incoming {
        let mut parts = spec.splitn(3, ':');
        match (
            parts.next().and_then(|p| p.parse::<u8>().ok()),
            parts.next(),
            parts.next(),
        ) {
            (Some(port), Some(from), Some(text)) => {
                incoming.push((port, from.to_string(), text.to_string()))
            }
            _ => {
                eprintln!("smsgate-sim: --incoming wants PORT:FROM:TEXT, found {spec:?}");
                return ExitCode::FAILURE;
            }
        }
    }
    let every = match a.schedule.every() {
        Ok(e) => e,
        Err(e) => {
            eprintln!("smsgate-sim: {e}");
            return ExitCode::FAILURE;
        }
    };
    if a.incoming_on >= a.ports {
        eprintln!(
            "smsgate-sim: --incoming-on {} is not a port (0 to {})",
            a.incoming_on,
            a.ports - 1
        );
        return ExitCode::FAILURE;
    }
    let delay = |ms: i64| u64::try_from(ms).ok().map(Duration::from_millis);
    let sim = DwgSim::builder()
        .connect(a.connect)
        .credentials(&a.user, &a.password)
        .ports(a.ports)
        .latency(Duration::from_millis(a.latency_ms))
        .result_delay(delay(a.result_delay_ms))
        .receipt_delay(delay(a.receipt_delay_ms))
        .keepalive(Duration::from_secs(a.keepalive_s.max(1)))
        .reconnect(Some(Duration::from_secs(a.reconnect_s.max(1))))
        .start();
    // Before the connection this only sets the state; the status report
    // sent after authentication carries it.
    for port in &a.no_sim {
        sim.set_port(
            *port,
            SimPort {
                state: PortState::NoSim,
                rssi: 0,
            },
        )
        .await;
    }
    eprintln!(
        "smsgate-sim: DWG gateway with {} ports connecting to {} as {:?}; send requests are logged",
        a.ports, a.connect, a.user
    );
    if !incoming.is_empty() || every.is_some() {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => return ExitCode::SUCCESS,
            _ = async { while !sim.wait_connected(Duration::from_secs(3600)).await {} } => {}
        }
        for (port, from, text) in incoming {
            deliver_dwg(&sim, port, &from, &text).await;
        }
    }
    if let Some(every) = every {
        // Delivered one at a time, each waiting for smsgate's ack; a
        // message that finds no connection is said and skipped.
        let s = &a.schedule;
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut n: usize = 0;
        while s.incoming_count.is_none_or(|c| (n as u64) < c) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {
                    sim.shutdown();
                    return ExitCode::SUCCESS;
                }
                _ = tick.tick() => {}
            }
            let from = &s.incoming_from[n % s.incoming_from.len()];
            let text = &s.incoming_text[n % s.incoming_text.len()];
            n += 1;
            deliver_dwg(&sim, a.incoming_on, from, text).await;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
    sim.shutdown();
    ExitCode::SUCCESS
}

async fn deliver_dwg(sim: &smsgate_sim::dwg::DwgSimHandle, port: u8, from: &str, text: &str) {
    match sim.inject_incoming(port, from, text).await {
        Ok(ack) => eprintln!(
            "smsgate-sim: delivered an SMS from {from} on port {port}; ack {}",
            ack.0
        ),
        Err(e) => eprintln!("smsgate-sim: could not deliver the SMS from {from}: {e}"),
    }
}

async fn run_dinstar(a: DinstarArgs) -> ExitCode {
    let mut builder = DinstarSim::builder();
    if let (Some(c), Some(k)) = (&a.tls_cert, &a.tls_key) {
        match (std::fs::read(c), std::fs::read(k)) {
            (Ok(c), Ok(k)) => builder = builder.tls(&c, &k),
            (Err(e), _) | (_, Err(e)) => {
                eprintln!("smsgate-sim: cannot read the TLS certificate or key: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    let sim = builder
        .listen(a.listen)
        .ports(a.ports)
        .credentials(&a.user, &a.password)
        .auth(match a.auth {
            AuthArg::Digest => SimAuth::Digest,
            AuthArg::Basic => SimAuth::Basic,
            AuthArg::Any => SimAuth::Any,
        })
        .sn(&a.sn)
        .push_url(a.push_url.clone())
        .latency(Duration::from_millis(a.latency_ms))
        .fail_rate(a.fail_rate)
        .hold_sends(a.hold_every, Duration::from_millis(a.hold_ms))
        .result_delay(Duration::from_millis(a.result_delay_ms))
        .deliver_delay(
            u64::try_from(a.deliver_delay_ms)
                .ok()
                .map(Duration::from_millis),
        )
        .lockout_after(a.lockout_after)
        .lockout_for((a.lockout_secs > 0).then(|| Duration::from_secs(a.lockout_secs)))
        .push_user_id(a.push_user_id)
        .manual_typos(a.manual_typos)
        .start()
        .await;
    let sim = match sim {
        Ok(s) => s,
        Err(e) => {
            eprintln!("smsgate-sim: cannot start on {}: {e}", a.listen);
            return ExitCode::FAILURE;
        }
    };
    if let Err(e) = dinstar_incoming(&sim, &a) {
        eprintln!("smsgate-sim: {e}");
        sim.shutdown().await;
        return ExitCode::FAILURE;
    }
    eprintln!(
        "smsgate-sim: Dinstar gateway on {} ({} ports, user {:?}); control: POST /sim/incoming, /sim/port, /sim/script, /sim/deliver, /sim/unlock; GET /sim/requests, /sim/sends",
        sim.base_url(),
        a.ports,
        a.user
    );
    let _ = tokio::signal::ctrl_c().await;
    sim.shutdown().await;
    ExitCode::SUCCESS
}

/// The SIM numbers, the messages injected at start and the schedule of
/// `smsgate-sim dinstar`.
fn dinstar_incoming(sim: &smsgate_sim::dinstar::SimHandle, a: &DinstarArgs) -> Result<(), String> {
    for spec in &a.sim_number {
        let (port, number) = spec
            .split_once(':')
            .and_then(|(p, n)| Some((p.trim().parse::<u8>().ok()?, n.trim())))
            .filter(|(p, n)| *p < a.ports && !n.is_empty())
            .ok_or_else(|| {
                format!(
                    "--sim-number wants PORT:NUMBER with a port from 0 to {}, not {spec:?}",
                    a.ports - 1
                )
            })?;
        sim.set_port_number(port, number);
    }
    for spec in &a.incoming {
        let mut parts = spec.splitn(3, ':');
        let (Some(on), Some(from), Some(text)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(format!("--incoming wants ON:FROM:TEXT, not {spec:?}"));
        };
        let on: Arrival = on
            .parse()
            .map_err(|e| format!("--incoming {spec:?}: {e}"))?;
        let (id, port) = sim
            .inject_incoming_on(&on, from, text)
            .map_err(|e| format!("--incoming {spec:?}: {e}"))?;
        eprintln!("smsgate-sim: an SMS from {from} arrived on port {port} (incoming_sms_id {id})");
    }
    if let Some(every) = a.schedule.every()? {
        let on: Arrival = a
            .incoming_on
            .parse()
            .map_err(|e| format!("--incoming-on: {e}"))?;
        sim.schedule_incoming(IncomingSchedule {
            on: on.clone(),
            every,
            from: a.schedule.incoming_from.clone(),
            texts: a.schedule.incoming_text.clone(),
            count: a.schedule.incoming_count,
        })
        .map_err(|e| format!("--incoming-on {}: {e}", a.incoming_on))?;
        eprintln!(
            "smsgate-sim: simulated customers write in on {on} every {:?}",
            every
        );
    }
    Ok(())
}

async fn run_http(a: HttpArgs) -> ExitCode {
    use smsgate_sim::http_provider::{HttpProviderSim, Reply};
    let mut reply = Reply::new(a.status, &a.body).delayed(Duration::from_millis(a.delay_ms));
    if let Some(ct) = a.content_type {
        reply.content_type = ct;
    }
    let sim = match HttpProviderSim::builder()
        .listen(a.listen)
        .reply(reply)
        .callback_url(a.callback_url)
        .start()
        .await
    {
        Ok(s) => s,
        Err(e) => {
            eprintln!("smsgate-sim: cannot listen on {}: {e}", a.listen);
            return ExitCode::FAILURE;
        }
    };
    eprintln!(
        "smsgate-sim: HTTP provider on {}; recorded requests at {}/sim/requests",
        sim.addr(),
        sim.base_url()
    );
    let _ = tokio::signal::ctrl_c().await;
    sim.stop();
    ExitCode::SUCCESS
}

async fn run_whatsapp_cloud(a: WhatsappCloudArgs) -> ExitCode {
    use smsgate_sim::whatsapp_cloud::{StatusPlan, WhatsAppCloudSim};
    let mut b = WhatsAppCloudSim::builder()
        .listen(a.listen)
        .api_version(&a.api_version)
        .phone_number_id(&a.phone_number_id)
        .display_number(&a.display_number)
        .access_token(&a.access_token)
        .app_secret(&a.app_secret)
        .webhook_url(a.webhook_url)
        .statuses(StatusPlan {
            statuses: a
                .statuses
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect(),
            delay_ms: a.status_delay_ms,
            ..StatusPlan::default()
        });
    for t in &a.template {
        let parts: Vec<&str> = t.split(':').collect();
        let params = parts.get(2).and_then(|p| p.parse::<usize>().ok());
        match (parts.as_slice(), params) {
            ([name, lang, _], Some(n)) => b = b.template(name, lang, n),
            _ => {
                eprintln!("smsgate-sim: --template wants NAME:LANGUAGE:PARAMETERS, not {t:?}");
                return ExitCode::FAILURE;
            }
        }
    }
    let sim = match b.start().await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("smsgate-sim: cannot listen on {}: {e}", a.listen);
            return ExitCode::FAILURE;
        }
    };
    eprintln!(
        "smsgate-sim: WhatsApp Cloud API on {}: POST {}/{}/{}/messages; recorded requests at {}/sim/requests",
        sim.addr(),
        sim.base_url(),
        a.api_version,
        a.phone_number_id,
        sim.base_url()
    );
    let _ = tokio::signal::ctrl_c().await;
    sim.stop();
    ExitCode::SUCCESS
}

async fn run_twilio(a: TwilioArgs) -> ExitCode {
    use smsgate_sim::twilio::{TwilioSimConfig, start};
    let cfg = TwilioSimConfig {
        listen: a.listen,
        account_sid: a.account_sid,
        auth_token: a.auth_token,
        api_key: None,
        number: a.number,
        incoming_url: a.incoming_url,
        sent_after: Duration::from_millis(a.sent_after_ms),
        delivered_after: Duration::from_millis(a.delivered_after_ms),
        final_status: a.final_status,
    };
    let sim = match start(cfg).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("smsgate-sim: cannot listen on {}: {e}", a.listen);
            return ExitCode::FAILURE;
        }
    };
    eprintln!(
        "smsgate-sim: Twilio Messages API on {}; give smsgate url = \"{}\"; requests at {}/sim/requests",
        sim.addr(),
        sim.base_url(),
        sim.base_url()
    );
    let _ = tokio::signal::ctrl_c().await;
    sim.stop();
    ExitCode::SUCCESS
}
