//! `smsgate status` and `smsgate reload`: the daemon at a glance, as
//! tables (or JSON), through its API.

use super::client::{Client, ClientError};

pub(super) fn status(c: &Client, json: bool) -> Result<(), ClientError> {
    let s = c.get("/api/v1/status")?;
    let channels = c.get("/api/v1/channels")?;
    let dialers = c.get("/api/v1/dialers")?;
    let campaigns = c.get("/api/v1/campaigns")?;
    let webhooks = c.get("/api/v1/webhooks")?;
    let whatsapp = c.get("/api/v1/whatsapp")?;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "status": s, "channels": channels["items"], "dialers": dialers["items"],
                "campaigns": campaigns["items"], "unrouted": campaigns["unrouted"],
                "webhooks": webhooks["items"], "whatsapp": whatsapp["gateways"],
            }))
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
    inbound_tables(&campaigns, &webhooks);
    whatsapp_table(&whatsapp);
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

/// Campaigns (open conversations, received, in schedule) and webhooks
/// (failing, backlog, dead letters), each table only when there are some.
fn inbound_tables(campaigns: &serde_json::Value, webhooks: &serde_json::Value) {
    let items = |v: &serde_json::Value| v["items"].as_array().cloned().unwrap_or_default();
    let campaigns_list = items(campaigns);
    if !campaigns_list.is_empty() {
        println!();
        let mut rows = vec![
            ["CAMPAIGN", "ENABLED", "IN SCHEDULE", "OPEN", "RECEIVED"]
                .iter()
                .map(|s| s.to_string())
                .collect::<Vec<_>>(),
        ];
        for c in &campaigns_list {
            let yes = |b: bool| if b { "yes" } else { "no" }.to_string();
            rows.push(vec![
                c["name"].as_str().unwrap_or("?").to_string(),
                yes(c["enabled"] == true),
                yes(c["in_schedule"] == true),
                c["open_interactions"].to_string(),
                c["received"].to_string(),
            ]);
        }
        print_table(&rows);
        println!("unrouted received: {}", campaigns["unrouted"]);
    }
    let webhooks_list = items(webhooks);
    if !webhooks_list.is_empty() {
        println!();
        let mut rows = vec![
            ["WEBHOOK", "STATE", "BACKLOG", "DEAD LETTERS", "LAST ERROR"]
                .iter()
                .map(|s| s.to_string())
                .collect::<Vec<_>>(),
        ];
        for w in &webhooks_list {
            rows.push(vec![
                w["name"].as_str().unwrap_or("?").to_string(),
                if w["failing"] == true {
                    format!(
                        "FAILING since {}",
                        w["failing_since"].as_str().unwrap_or("?")
                    )
                } else {
                    "ok".to_string()
                },
                w["backlog"].to_string(),
                w["dead_letters"].to_string(),
                w["last_error"].as_str().unwrap_or("").to_string(),
            ]);
        }
        print_table(&rows);
    }
}

/// WhatsApp gateways: how much of the messaging limit the last 24 hours
/// used (templates to new customers wait once it is full).
fn whatsapp_table(whatsapp: &serde_json::Value) {
    let gateways = whatsapp["gateways"].as_array().cloned().unwrap_or_default();
    if gateways.is_empty() {
        return;
    }
    println!();
    let mut rows = vec![
        ["WHATSAPP GATEWAY", "RUNNING", "MESSAGING LIMIT (24 h)"]
            .iter()
            .map(|s| s.to_string())
            .collect::<Vec<_>>(),
    ];
    for g in &gateways {
        let limit = &g["messaging_limit"];
        let used = limit["used"].as_u64().unwrap_or(0);
        let cell = match limit["limit"].as_u64() {
            Some(l) if used >= l => {
                format!("{used} of {l} customers: FULL, templates to new customers wait")
            }
            Some(l) => format!("{used} of {l} customers"),
            None if limit.is_null() => "-".to_string(),
            None => format!("{used} customers (no limit set)"),
        };
        rows.push(vec![
            g["gateway"].as_str().unwrap_or("?").to_string(),
            if g["running"] == true { "yes" } else { "no" }.to_string(),
            cell,
        ]);
    }
    print_table(&rows);
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
