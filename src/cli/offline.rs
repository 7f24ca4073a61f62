//! The subcommands that need no running daemon: `check-config`, `pdu`
//! (pure codec work on what a modem printed), and `probe` and `ussd`, which
//! talk to the gateways directly (or, for the gateways the daemon holds,
//! ask it).

use std::path::PathBuf;
use std::process::ExitCode;

use crate::config::{self, Config, ConfigError, Role};

use super::client::client;
use super::schema::{PduCommand, Remote};
use super::status::print_table;

/// `smsgate pdu`: pure codec work, no config or daemon needed, so a
/// technician can paste what a modem printed.
pub(super) fn pdu(command: PduCommand) -> ExitCode {
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

pub(super) fn check_config(path: PathBuf) -> ExitCode {
    match crate::runtime::load_config(&path) {
        Ok(c) => {
            println!(
                "{}: valid ({} gateways, {} dialers, {} campaigns, {} API tokens)",
                path.display(),
                c.gateways.len(),
                c.dialers.iter().filter(|d| !d.system).count(),
                c.campaigns.len(),
                c.api.tokens.len()
            );
            for w in c.warnings() {
                eprintln!("warning: {w}");
            }
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
pub(super) fn probe(config_path: &std::path::Path, only: Option<&str>) -> ExitCode {
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
pub(super) fn ussd(
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
