//! The command line's shape (clap): every subcommand and option. The man
//! pages and completions are generated from it (`assets`).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::config;

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
