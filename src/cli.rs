//! The command line. Subcommands that act on a running daemon reach it
//! through its API, with the address and a token read from the config file
//! (or given with --api and --token).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::config::{self, Config, ConfigError, Role};

#[derive(Debug, Parser)]
#[command(
    name = "smsgate",
    version,
    about = "On-premise SMS engine: Dinstar gateways, GSM modems, outbound dialers and a local REST API",
    long_about = None,
)]
pub struct Cli {
    /// The config file.
    #[arg(long, global = true, env = "SMSGATE_CONFIG", default_value = config::DEFAULT_PATH, value_name = "PATH")]
    pub config: PathBuf,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon in the foreground (as systemd does).
    Run,
    /// Check a config file: exit 0 when valid, 1 listing every problem.
    CheckConfig {
        /// The file to check (default: --config).
        path: Option<PathBuf>,
    },
    /// The daemon at a glance: gateways, channels, dialers, messages.
    Status {
        #[command(flatten)]
        remote: Remote,
        /// Print the raw JSON instead of tables.
        #[arg(long)]
        json: bool,
    },
    /// Ask the running daemon to re-read its config (like systemctl reload).
    Reload {
        #[command(flatten)]
        remote: Remote,
    },
    /// Send one message through a dialer.
    Send {
        #[command(flatten)]
        remote: Remote,
        /// The dialer that sends it.
        #[arg(long)]
        dialer: String,
        /// The destination number, in any written form.
        #[arg(long)]
        to: String,
        /// The text.
        #[arg(long)]
        text: String,
        /// 1 (urgent) to 9999 (routine); default: the dialer's.
        #[arg(long)]
        priority: Option<i64>,
        /// An idempotency key: sending again with it sends nothing new.
        #[arg(long)]
        client_id: Option<String>,
    },
    /// Import a bulk CSV file (dialer;destination;message;priority).
    Import {
        #[command(flatten)]
        remote: Remote,
        /// The CSV file.
        file: PathBuf,
    },
    /// The do-not-contact list.
    Dncr {
        #[command(subcommand)]
        command: DncrCommand,
    },
    /// SMS PDUs: decode what a modem printed, or build what AT+CMGS takes.
    Pdu {
        #[command(subcommand)]
        command: PduCommand,
    },
    /// Check each gateway and print its ports (SIM, IMSI, registration, signal).
    ///
    /// A Dinstar gateway is asked directly, which also shows whether our
    /// password works; the gateways the daemon holds (modems, DWG, sim) are
    /// shown as the running daemon sees them. Exits 1 when a gateway is
    /// unreachable, refuses us, or has no channel that can send.
    Probe {
        /// Only this gateway (default: every enabled gateway).
        gateway: Option<String>,
    },
    /// Send a USSD code (a balance check such as *100#) on a gateway port
    /// and print the reply. Talks to the gateway directly.
    Ussd {
        /// The gateway's name in the config.
        gateway: String,
        /// The port, from 0 as the gateway counts.
        port: u8,
        /// The USSD code, e.g. "*100#".
        code: String,
        /// How long to wait for the reply, in seconds.
        #[arg(long, default_value_t = 30)]
        wait_s: u64,
    },
    /// Write the man pages and shell completions into DIR (packaging).
    #[command(hide = true)]
    GenerateAssets { dir: PathBuf },
}

#[derive(Debug, Subcommand)]
pub enum PduCommand {
    /// Decode a PDU (SMS-DELIVER, SUBMIT or STATUS-REPORT) as JSON; exit 1
    /// with the reason when it cannot be decoded.
    Decode {
        /// The hex as the modem printed it (with or without the service
        /// centre address).
        hex: String,
        /// The <length> the modem announced (+CMGR/+CMT/+CDS): the TPDU
        /// octets, which tells whether a service centre address leads.
        #[arg(long, value_name = "N")]
        length: Option<usize>,
    },
    /// Build the SMS-SUBMIT PDUs for a text as JSON (one per segment, with
    /// the <length> for AT+CMGS); exit 1 with the reason when impossible.
    Encode {
        /// The destination (+E.164 or national digits).
        #[arg(long, value_name = "NUMBER")]
        to: String,
        /// The text.
        #[arg(long)]
        text: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum DncrCommand {
    /// Upload a DNCR file (phone;dialer; lines, an empty dialer meaning all).
    Import {
        #[command(flatten)]
        remote: Remote,
        file: PathBuf,
    },
    /// Show the entries of a number, in any written form.
    Show {
        #[command(flatten)]
        remote: Remote,
        phone: String,
    },
    /// Remove a number from the list.
    Remove {
        #[command(flatten)]
        remote: Remote,
        phone: String,
        /// Only for this dialer.
        #[arg(long)]
        dialer: Option<String>,
    },
}

/// How to reach a running daemon.
#[derive(Debug, Clone, Args)]
pub struct Remote {
    /// The API's base URL (default: from [api] listen in the config).
    #[arg(long, value_name = "URL")]
    pub api: Option<String>,
    /// A bearer token (default: SMSGATE_TOKEN, else a token from the config).
    #[arg(
        long,
        env = "SMSGATE_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    pub token: Option<String>,
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Run => crate::daemon::run(cli.config),
        Command::CheckConfig { path } => check_config(path.unwrap_or(cli.config)),
        Command::Status { remote, json } => {
            with_client(&cli.config, &remote, Role::Viewer, |c| status(c, json))
        }
        Command::Reload { remote } => with_client(&cli.config, &remote, Role::Admin, reload),
        Command::Send {
            remote,
            dialer,
            to,
            text,
            priority,
            client_id,
        } => with_client(&cli.config, &remote, Role::Operator, |c| {
            let mut body = serde_json::json!({"dialer": dialer, "to": to, "text": text});
            if let Some(p) = priority {
                body["priority"] = p.into();
            }
            if let Some(id) = client_id {
                body["client_id"] = id.into();
            }
            let m = c.post_json("/api/v1/messages", &body)?;
            println!(
                "message {} {} ({}, {} part{}){}",
                m["id"],
                m["state_name"].as_str().unwrap_or("?"),
                m["encoding"].as_str().unwrap_or("?"),
                m["segments"],
                if m["segments"] == 1 { "" } else { "s" },
                if m["replayed"] == true {
                    "; already sent with this client id"
                } else {
                    ""
                }
            );
            Ok(())
        }),
        Command::Import { remote, file } => {
            with_client(&cli.config, &remote, Role::Operator, |c| {
                let r = c.upload("/api/v1/imports", &file)?;
                println!(
                    "import {}: {} lines, {} queued, {} with an impossible number (INVALID)",
                    r["import_id"], r["lines"], r["queued"], r["invalid"]
                );
                Ok(())
            })
        }
        Command::Pdu { command } => pdu(command),
        Command::Probe { gateway } => probe(&cli.config, gateway.as_deref()),
        Command::Ussd {
            gateway,
            port,
            code,
            wait_s,
        } => ussd(&cli.config, &gateway, port, &code, wait_s),
        Command::GenerateAssets { dir } => {
            match crate::cli_assets::write_assets(<Cli as clap::CommandFactory>::command(), &dir) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!(
                        "smsgate: cannot write the assets into {}: {e}",
                        dir.display()
                    );
                    ExitCode::FAILURE
                }
            }
        }
        Command::Dncr { command } => match command {
            DncrCommand::Import { remote, file } => {
                with_client(&cli.config, &remote, Role::Operator, |c| {
                    let r = c.upload("/api/v1/dncr", &file)?;
                    println!(
                        "DNCR import {}: {} lines, {} entries",
                        r["import_id"], r["lines"], r["entries"]
                    );
                    Ok(())
                })
            }
            DncrCommand::Show { remote, phone } => {
                with_client(&cli.config, &remote, Role::Viewer, |c| {
                    let r = c.get(&format!("/api/v1/dncr?phone={}", encode_query(&phone)))?;
                    let items = r["items"].as_array().cloned().unwrap_or_default();
                    if items.is_empty() {
                        println!("{phone} is not on the DNCR list");
                    }
                    for e in items {
                        println!(
                            "{}  dialer {}  (from {})",
                            e["key"].as_str().unwrap_or("?"),
                            e["dialer"].as_str().unwrap_or("(all)"),
                            e["source"].as_str().unwrap_or("?")
                        );
                    }
                    Ok(())
                })
            }
            DncrCommand::Remove {
                remote,
                phone,
                dialer,
            } => with_client(&cli.config, &remote, Role::Operator, |c| {
                let mut path = format!("/api/v1/dncr/{}", encode_query(&phone));
                if let Some(d) = dialer {
                    path.push_str(&format!("?dialer={}", encode_query(&d)));
                }
                let r = c.delete(&path)?;
                println!(
                    "removed {} entr{} of {}",
                    r["removed"],
                    if r["removed"] == 1 { "y" } else { "ies" },
                    r["key"].as_str().unwrap_or("?")
                );
                Ok(())
            }),
        },
    }
}

/// `smsgate pdu`: pure codec work, no config or daemon needed, so a
/// technician can paste what a modem printed.
fn pdu(command: PduCommand) -> ExitCode {
    let report = match &command {
        PduCommand::Decode { hex, length } => {
            smsgate_proto::sms::decode_report_with_length(hex, *length).map(serde_json::to_value)
        }
        PduCommand::Encode { to, text } => {
            smsgate_proto::sms::encode_report(to, text).map(serde_json::to_value)
        }
    };
    match report {
        Ok(Ok(json)) => match serde_json::to_string_pretty(&json) {
            Ok(text) => {
                println!("{text}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("smsgate: cannot print the report: {e}");
                ExitCode::FAILURE
            }
        },
        Ok(Err(e)) => {
            eprintln!("smsgate: cannot print the report: {e}");
            ExitCode::FAILURE
        }
        Err(e) => {
            let what = match command {
                PduCommand::Decode { .. } => "cannot decode the PDU",
                PduCommand::Encode { .. } => "cannot encode the message",
            };
            eprintln!("smsgate: {what}: {e}");
            ExitCode::FAILURE
        }
    }
}

fn check_config(path: PathBuf) -> ExitCode {
    match crate::runtime::load_config(&path) {
        Ok(c) => {
            println!(
                "{}: valid ({} gateways, {} dialers, {} campaigns, {} API tokens)",
                path.display(),
                c.gateways.len(),
                c.dialers.len(),
                c.campaigns.len(),
                c.api.tokens.len()
            );
            ExitCode::SUCCESS
        }
        Err(ConfigError::Invalid(d)) => {
            eprintln!("{d}");
            let n = d.problems.len();
            eprintln!(
                "{n} problem{} found; the file was not accepted",
                if n == 1 { "" } else { "s" }
            );
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}

/// A blocking HTTP client for one daemon.
pub struct Client {
    base: String,
    token: String,
    http: reqwest::blocking::Client,
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(
        "cannot reach smsgate at {base}: {reason} (is the daemon running? `systemctl status smsgate`)"
    )]
    Unreachable { base: String, reason: String },
    #[error("{0}")]
    Refused(String),
    #[error("{0}")]
    Setup(String),
}

impl Client {
    pub fn get(&self, path: &str) -> Result<serde_json::Value, ClientError> {
        self.call(self.http.get(format!("{}{path}", self.base)))
    }

    pub fn post_json(
        &self,
        path: &str,
        body: &serde_json::Value,
    ) -> Result<serde_json::Value, ClientError> {
        self.call(self.http.post(format!("{}{path}", self.base)).json(body))
    }

    pub fn delete(&self, path: &str) -> Result<serde_json::Value, ClientError> {
        self.call(self.http.delete(format!("{}{path}", self.base)))
    }

    /// Streams a file as the body of an upload; its name becomes ?filename=.
    pub fn upload(
        &self,
        path: &str,
        file: &std::path::Path,
    ) -> Result<serde_json::Value, ClientError> {
        let name = file
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
        let f = std::fs::File::open(file)
            .map_err(|e| ClientError::Setup(format!("cannot read {}: {e}", file.display())))?;
        let url = format!("{}{path}?filename={}", self.base, encode_query(&name));
        self.call(
            self.http
                .post(url)
                .header("content-type", "text/csv")
                .body(reqwest::blocking::Body::new(f)),
        )
    }

    fn call(
        &self,
        req: reqwest::blocking::RequestBuilder,
    ) -> Result<serde_json::Value, ClientError> {
        let resp = req
            .bearer_auth(&self.token)
            .send()
            .map_err(|e| ClientError::Unreachable {
                base: self.base.clone(),
                reason: plain_reqwest_error(&e),
            })?;
        let status = resp.status();
        let body: serde_json::Value = resp.json().unwrap_or(serde_json::Value::Null);
        if status.is_success() {
            return Ok(body);
        }
        // problem+json: say the detail, then each listed error.
        let mut msg = format!(
            "smsgate answered {}: {}",
            status.as_u16(),
            body["detail"].as_str().unwrap_or("no detail")
        );
        if let Some(errors) = body["errors"].as_array() {
            for e in errors {
                let line = e["line"]
                    .as_u64()
                    .map(|l| format!("line {l}: "))
                    .unwrap_or_default();
                let m = e["message"].as_str().unwrap_or_default();
                msg.push_str(&format!("\n  {line}{m}"));
            }
        }
        Err(ClientError::Refused(msg))
    }
}

fn plain_reqwest_error(e: &reqwest::Error) -> String {
    use std::error::Error;
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        s = format!("{s}: {inner}");
        src = inner.source();
    }
    s
}

/// Builds a client from --api/--token, or from the config file.
pub fn client(
    config_path: &std::path::Path,
    remote: &Remote,
    need: Role,
) -> Result<Client, ClientError> {
    let config = if remote.api.is_none() || remote.token.is_none() {
        Some(Config::load(config_path).map_err(|e| {
            ClientError::Setup(format!(
                "cannot read the daemon's address and token from {}: {e}\n(give --api and --token, or run with sudo)",
                config_path.display()
            ))
        })?)
    } else {
        None
    };
    let base = match (&remote.api, &config) {
        (Some(a), _) => a.trim_end_matches('/').to_string(),
        (None, Some(c)) => {
            let scheme = if c.api.tls.is_some() { "https" } else { "http" };
            let mut addr = c.api.listen;
            if addr.ip().is_unspecified() {
                addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
            }
            format!("{scheme}://{addr}")
        }
        (None, None) => unreachable_base(),
    };
    let token = match (&remote.token, &config) {
        (Some(t), _) => t.clone(),
        (None, Some(c)) => {
            // The weakest token that suffices, so a viewer command never
            // travels with the admin token when a viewer one exists.
            let mut ok: Vec<&config::ApiToken> =
                c.api.tokens.iter().filter(|t| t.role >= need).collect();
            ok.sort_by_key(|t| t.role);
            ok.first()
                .map(|t| t.secret.expose().to_string())
                .ok_or_else(|| {
                    ClientError::Setup(format!(
                        "no token with the {} role in {}; add one to [[api.tokens]] or give --token",
                        need.as_str(),
                        config_path.display()
                    ))
                })?
        }
        (None, None) => String::new(),
    };
    let tls = match config.as_ref().and_then(|c| c.api.tls.as_ref()) {
        Some(files) => crate::tls::pinned_to_pem_file(&files.cert).map_err(ClientError::Setup)?,
        None => crate::tls::client_config(&crate::tls::TlsVerify::System)
            .map_err(|e| ClientError::Setup(e.to_string()))?,
    };
    let http = reqwest::blocking::Client::builder()
        .use_preconfigured_tls(tls)
        .no_proxy()
        .connect_timeout(std::time::Duration::from_secs(5))
        .timeout(std::time::Duration::from_secs(600))
        .build()
        .map_err(|e| ClientError::Setup(e.to_string()))?;
    Ok(Client { base, token, http })
}

/// Percent-encodes a query or path value.
fn encode_query(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn unreachable_base() -> String {
    "http://127.0.0.1:8080".to_string()
}

fn with_client(
    config_path: &std::path::Path,
    remote: &Remote,
    need: Role,
    f: impl FnOnce(&Client) -> Result<(), ClientError>,
) -> ExitCode {
    let result = client(config_path, remote, need).and_then(|c| f(&c));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("smsgate: {e}");
            ExitCode::FAILURE
        }
    }
}

fn status(c: &Client, json: bool) -> Result<(), ClientError> {
    let s = c.get("/api/v1/status")?;
    let channels = c.get("/api/v1/channels")?;
    let dialers = c.get("/api/v1/dialers")?;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(
                &serde_json::json!({"status": s, "channels": channels["items"], "dialers": dialers["items"]})
            )
            .unwrap_or_default()
        );
        return Ok(());
    }
    println!(
        "smsgate {}  up {}  config {}",
        s["version"].as_str().unwrap_or("?"),
        human_duration(s["uptime_s"].as_u64().unwrap_or(0)),
        s["config_path"].as_str().unwrap_or("?")
    );
    println!("{}", s["status_line"].as_str().unwrap_or(""));
    println!();
    let mut rows = vec![vec![
        "CHANNEL".to_string(),
        "USABLE".into(),
        "SIGNAL".into(),
        "SENT".into(),
        "FAILED".into(),
        "QUEUED".into(),
        "WHY NOT".into(),
    ]];
    for ch in channels["items"].as_array().into_iter().flatten() {
        rows.push(vec![
            ch["id"].as_str().unwrap_or("?").to_string(),
            if ch["usable"].as_bool() == Some(true) {
                "yes"
            } else {
                "NO"
            }
            .into(),
            ch["health"]["signal"]
                .as_i64()
                .map_or("-".into(), |v| v.to_string()),
            ch["sent"].to_string(),
            ch["failed"].to_string(),
            ch["queued"].to_string(),
            ch["reason"].as_str().unwrap_or("").to_string(),
        ]);
    }
    print_table(&rows);
    println!();
    let mut rows = vec![
        [
            "DIALER",
            "STATUS",
            "IN SCHEDULE",
            "PROCESSED",
            "NOT PROCESSED",
            "OTHERS",
            "BLOCKED",
            "SENT",
            "DELIVERED",
            "FAILED",
            "PER MIN",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect::<Vec<_>>(),
    ];
    for d in dialers["items"].as_array().into_iter().flatten() {
        let status = match (d["status"].as_str(), d["stopped"].as_bool()) {
            (Some("active"), _) => "active".to_string(),
            (_, Some(true)) => "stopped".to_string(),
            _ => "disabled".to_string(),
        };
        rows.push(vec![
            d["name"].as_str().unwrap_or("?").to_string(),
            status,
            if d["in_schedule"] == true {
                "yes"
            } else {
                "no"
            }
            .to_string(),
            d["processed"].to_string(),
            d["not_processed"].to_string(),
            d["others"].to_string(),
            d["blocked"].to_string(),
            (d["sent"].as_i64().unwrap_or(0)
                + d["delivered"].as_i64().unwrap_or(0)
                + d["undelivered"].as_i64().unwrap_or(0))
            .to_string(),
            d["delivered"].to_string(),
            d["failed"].to_string(),
            d["rate_per_minute"].to_string(),
        ]);
    }
    print_table(&rows);
    if let Some(m) = s["messages"].as_object() {
        println!();
        let parts: Vec<String> = m.iter().map(|(k, v)| format!("{k} {v}")).collect();
        println!(
            "messages: {}",
            if parts.is_empty() {
                "none".into()
            } else {
                parts.join(", ")
            }
        );
    }
    Ok(())
}

fn reload(c: &Client) -> Result<(), ClientError> {
    let r = c.post_json("/api/v1/config/reload", &serde_json::json!({}))?;
    println!("config reloaded");
    for s in r["needs_restart"].as_array().into_iter().flatten() {
        println!(
            "  changed but needs a restart: {}",
            s.as_str().unwrap_or("?")
        );
    }
    Ok(())
}

pub fn print_table(rows: &[Vec<String>]) {
    let cols = rows.iter().map(|r| r.len()).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols)
        .map(|i| {
            rows.iter()
                .filter_map(|r| r.get(i))
                .map(|c| c.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    for r in rows {
        let line: Vec<String> = r
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<w$}", w = widths[i]))
            .collect();
        println!("{}", line.join("  ").trim_end());
    }
}

fn human_duration(s: u64) -> String {
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{}s", s / 60, s % 60),
        3600..=86_399 => format!("{}h{}m", s / 3600, (s % 3600) / 60),
        _ => format!("{}d{}h", s / 86_400, (s % 86_400) / 3600),
    }
}

/// Reads the config for a command that talks to gateways directly.
fn gateway_config(config_path: &std::path::Path) -> Result<Config, String> {
    crate::runtime::load_config(config_path)
        .map_err(|e| format!("cannot read {}: {e}", config_path.display()))
}

/// A current-thread runtime for the commands that talk to gateways.
fn small_runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))
}

fn dinstar_client(
    gw: &config::GatewayConfig,
) -> Result<crate::transport::dinstar::DinstarClient, String> {
    let config::GatewaySettings::Dinstar(s) = &gw.settings else {
        return Err(format!(
            "gateway {:?} is of kind {}; this command talks to kind dinstar",
            gw.name,
            gw.kind.as_str()
        ));
    };
    crate::transport::dinstar::client_config(&gw.name, s)
        .and_then(crate::transport::dinstar::DinstarClient::new)
        .map_err(|e| format!("gateway {:?}: {e}", gw.name))
}

/// `smsgate probe [GATEWAY]`.
fn probe(config_path: &std::path::Path, only: Option<&str>) -> ExitCode {
    let config = match gateway_config(config_path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("smsgate: {e}");
            return ExitCode::FAILURE;
        }
    };
    let chosen: Vec<&config::GatewayConfig> = match only {
        Some(name) => match config.gateway(name) {
            Some(g) => vec![g],
            None => {
                eprintln!("smsgate: no gateway {name:?} in {}", config_path.display());
                return ExitCode::FAILURE;
            }
        },
        None => config.gateways.iter().filter(|g| g.enabled).collect(),
    };
    if chosen.is_empty() {
        println!("no enabled gateway in {}", config_path.display());
        return ExitCode::SUCCESS;
    }
    // A Dinstar gateway is asked directly over its HTTP API. The others (a
    // modem holds its serial port exclusively, a DWG gateway dials in) are
    // seen through the running daemon, which holds them.
    let (direct, held): (Vec<&config::GatewayConfig>, Vec<&config::GatewayConfig>) = chosen
        .into_iter()
        .partition(|g| g.kind == config::GatewayKind::Dinstar);
    let mut ok = true;
    if !held.is_empty() {
        ok &= probe_through_daemon(config_path, &held);
    }
    if direct.is_empty() {
        return if ok {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        };
    }
    let chosen = direct;
    let rt = match small_runtime() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("smsgate: {e}");
            return ExitCode::FAILURE;
        }
    };
    for (i, gw) in chosen.iter().enumerate() {
        if i > 0 {
            println!();
        }
        let url = match &gw.settings {
            config::GatewaySettings::Dinstar(s) => s.url.clone(),
            _ => String::new(),
        };
        let client = match dinstar_client(gw) {
            Ok(c) => c,
            Err(e) => {
                println!("gateway {} ({url}): NOT USABLE: {e}", gw.name);
                ok = false;
                continue;
            }
        };
        let ports: Vec<u8> = (0..gw.ports.min(32))
            .filter_map(|p| u8::try_from(p).ok())
            .collect();
        // One request: a wrong password costs one refused login, never a
        // lock-out.
        match rt.block_on(client.get_port_info(&ports, &[])) {
            Ok(infos) => {
                println!("gateway {} ({url}): reachable, authentication OK", gw.name);
                let mut rows = vec![vec![
                    "PORT".to_string(),
                    "SIM".into(),
                    "IMSI".into(),
                    "NUMBER".into(),
                    "REGISTRATION".into(),
                    "SIGNAL".into(),
                    "TYPE".into(),
                ]];
                for p in &ports {
                    let Some(info) = infos.iter().find(|i| i.port == *p) else {
                        rows.push(vec![
                            p.to_string(),
                            "?".into(),
                            "-".into(),
                            "-".into(),
                            "not reported".into(),
                            "-".into(),
                            "-".into(),
                        ]);
                        continue;
                    };
                    let sim = if info.sim_missing() {
                        "no"
                    } else if info.reg.is_some() {
                        "yes"
                    } else {
                        "?"
                    };
                    rows.push(vec![
                        p.to_string(),
                        sim.into(),
                        info.imsi.clone().unwrap_or_else(|| "-".into()),
                        info.number.clone().unwrap_or_else(|| "-".into()),
                        info.reg
                            .as_ref()
                            .map_or("?".to_string(), |r| r.as_wire().to_string()),
                        info.signal.map_or("-".into(), |s| format!("{s}/31")),
                        info.module_type.clone().unwrap_or_else(|| "-".into()),
                    ]);
                }
                print_table(&rows);
            }
            Err(e @ crate::transport::dinstar::DinstarError::Auth { .. }) => {
                println!(
                    "gateway {} ({url}): REFUSES OUR PASSWORD: {e}; check user/password in the config (repeated attempts lock our address out)",
                    gw.name
                );
                ok = false;
            }
            Err(e) => {
                println!("gateway {} ({url}): UNREACHABLE: {e}", gw.name);
                ok = false;
            }
        }
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Prints the health the daemon sees for gateways it holds (modems, DWG,
/// sim). False when the daemon cannot be reached or a channel cannot send.
fn probe_through_daemon(
    config_path: &std::path::Path,
    gateways: &[&config::GatewayConfig],
) -> bool {
    let remote = Remote {
        api: None,
        token: None,
    };
    let channels = match client(config_path, &remote, Role::Viewer)
        .and_then(|c| c.get("/api/v1/channels"))
    {
        Ok(v) => v,
        Err(e) => {
            for g in gateways {
                println!(
                    "gateway {} (kind {}): NOT PROBED: the daemon holds it and cannot be asked: {e}",
                    g.name,
                    g.kind.as_str()
                );
            }
            return false;
        }
    };
    let mut ok = true;
    for g in gateways {
        let mine: Vec<&serde_json::Value> = channels["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|c| c["gateway"] == g.name.as_str())
            .collect();
        if mine.is_empty() {
            println!(
                "gateway {} (kind {}): NOT RUNNING in the daemon (disabled, or it failed to start: see the journal)",
                g.name,
                g.kind.as_str()
            );
            ok = false;
            continue;
        }
        let usable = mine.iter().filter(|c| c["usable"] == true).count();
        println!(
            "gateway {} (kind {}): {usable} of {} channels usable (as the daemon sees it)",
            g.name,
            g.kind.as_str(),
            mine.len()
        );
        let mut rows = vec![
            [
                "PORT",
                "USABLE",
                "SIM",
                "IMSI",
                "REGISTERED",
                "OPERATOR",
                "SIGNAL",
                "WHY NOT",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect::<Vec<_>>(),
        ];
        let text = |v: &serde_json::Value| match v {
            serde_json::Value::Null => "-".to_string(),
            serde_json::Value::Bool(b) => if *b { "yes" } else { "no" }.to_string(),
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        for c in &mine {
            let h = &c["health"];
            rows.push(vec![
                c["port"].to_string(),
                text(&c["usable"]),
                text(&h["sim"]),
                text(&h["imsi"]),
                text(&h["registered"]),
                text(&h["operator"]),
                h["signal"]
                    .as_i64()
                    .map_or("-".into(), |s| format!("{s}/31")),
                c["reason"].as_str().unwrap_or_default().to_string(),
            ]);
        }
        print_table(&rows);
        if usable == 0 {
            ok = false;
        }
    }
    ok
}

/// `smsgate ussd GATEWAY PORT CODE`.
fn ussd(
    config_path: &std::path::Path,
    gateway: &str,
    port: u8,
    code: &str,
    wait_s: u64,
) -> ExitCode {
    let run = || -> Result<String, String> {
        let config = gateway_config(config_path)?;
        let gw = config
            .gateway(gateway)
            .ok_or_else(|| format!("no gateway {gateway:?} in {}", config_path.display()))?;
        if u32::from(port) >= gw.ports {
            return Err(format!(
                "gateway {gateway:?} has ports 0 to {}",
                gw.ports.saturating_sub(1)
            ));
        }
        let client = dinstar_client(gw)?;
        let rt = small_runtime()?;
        rt.block_on(crate::transport::dinstar::run_ussd(
            &client,
            port,
            code,
            std::time::Duration::from_secs(wait_s.max(1)),
        ))
        .map_err(|e| format!("gateway {gateway:?} port {port}: {e}"))
    };
    match run() {
        Ok(reply) => {
            println!("{reply}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("smsgate: {e}");
            ExitCode::FAILURE
        }
    }
}
