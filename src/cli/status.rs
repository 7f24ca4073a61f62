//! `smsgate status` and `smsgate reload`: the daemon at a glance, as
//! tables (or JSON), through its API.

use super::client::{Client, ClientError};

pub(super) fn status(c: &Client, json: bool) -> Result<(), ClientError> {
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

pub(super) fn reload(c: &Client) -> Result<(), ClientError> {
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
