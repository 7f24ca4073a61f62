//! The command line. Subcommands that act on a running daemon reach it
//! through its API, with the address and a token read from the config file
//! (or given with --api and --token).

pub mod assets;
mod client;
mod offline;
mod schema;
mod status;

use std::process::ExitCode;

use clap::Parser;

use crate::config::Role;

pub use client::{Client, ClientError, client};
pub use schema::{Cli, Command, DncrCommand, PduCommand, Remote};
pub use status::print_table;

use client::{encode_query, with_client};
use offline::{check_config, pdu, probe, ussd};
use status::{reload, status};

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
            match assets::write_assets(<Cli as clap::CommandFactory>::command(), &dir) {
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
