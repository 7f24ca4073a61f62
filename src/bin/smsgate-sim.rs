//! `smsgate-sim`: run a simulated gateway on its own, so a technician or the
//! portal's developers can try smsgate without hardware.
//!
//! ```text
//! smsgate-sim dinstar --listen 127.0.0.1:8090 --ports 8 --user admin --password admin \
//!     --push-url http://127.0.0.1:8080/api/v1/gateways/gw1/push
//! curl -X POST localhost:8090/sim/incoming -d '{"port":0,"from":"099123456","text":"hola"}' \
//!     -H 'content-type: application/json'
//! ```
#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use smsgate::simulator::dinstar::{DinstarSim, SimAuth};

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
    Dinstar(DinstarArgs),
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
