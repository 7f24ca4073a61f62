//! A conversation written out for download (the seed's "Grabaciones"):
//! plain text to read, JSON to process, CSV for a spreadsheet.
//!
//! The CSV is opened by people in Excel or LibreOffice, and its cells hold
//! what customers wrote: a text starting with `=`, `+`, `-` or `@` (or a
//! tab or carriage return, which some spreadsheets strip before looking)
//! would be run as a formula (OWASP "CSV injection"). Such a cell is
//! prefixed with a single quote, which spreadsheets show as text and which
//! a reader of the file can see was added.

use serde::Serialize;

/// One message of a conversation.
#[derive(Debug, Clone, Serialize)]
pub struct Line {
    /// Unix ms.
    #[serde(skip)]
    pub at_ms: i64,
    /// RFC 3339, UTC.
    pub at: String,
    /// `in` (from the customer) or `out`.
    pub direction: String,
    /// `customer`, `system`, or `agent:<id>`.
    pub sender: String,
    pub channel: Option<String>,
    pub text: String,
    /// The delivery state of an outbound message.
    pub state: Option<String>,
}

/// A whole conversation.
#[derive(Debug, Clone, Serialize)]
pub struct Recording {
    pub id: i64,
    pub campaign: String,
    pub customer: String,
    pub agent: Option<String>,
    pub started: String,
    pub closed: Option<String>,
    pub messages: Vec<Line>,
}

/// Unix ms as RFC 3339 in UTC, to the millisecond.
pub fn rfc3339(ms: i64) -> String {
    match jiff::Timestamp::from_millisecond(ms) {
        Ok(t) => format!("{t:.3}"),
        Err(_) => ms.to_string(),
    }
}

/// A spreadsheet cell that cannot run as a formula.
pub fn safe_cell(text: &str) -> std::borrow::Cow<'_, str> {
    match text.chars().next() {
        Some('=' | '+' | '-' | '@' | '\t' | '\r') => format!("'{text}").into(),
        _ => text.into(),
    }
}

impl Recording {
    pub fn to_text(&self) -> String {
        let mut out = format!(
            "Interaction {} · campaign {} · customer {}\nStarted {}{}{}\n\n",
            self.id,
            self.campaign,
            self.customer,
            self.started,
            self.closed
                .as_deref()
                .map(|c| format!(" · closed {c}"))
                .unwrap_or_default(),
            self.agent
                .as_deref()
                .map(|a| format!(" · agent {a}"))
                .unwrap_or_default(),
        );
        for m in &self.messages {
            let arrow = if m.direction == "in" { "<-" } else { "->" };
            out.push_str(&format!("[{}] {arrow} {}", m.at, m.sender));
            if let Some(s) = &m.state {
                out.push_str(&format!(" ({s})"));
            }
            out.push_str(": ");
            // Continuation lines indented, so a message of several lines
            // cannot pass for a message of its own.
            out.push_str(&m.text.replace('\n', "\n    "));
            out.push('\n');
        }
        out
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|_| "{}".into())
    }

    pub fn to_csv(&self) -> String {
        let mut w = csv::WriterBuilder::new()
            .quote_style(csv::QuoteStyle::Necessary)
            .from_writer(Vec::new());
        let header = [
            "interaction",
            "campaign",
            "customer",
            "time",
            "direction",
            "sender",
            "channel",
            "state",
            "text",
        ];
        let _ = w.write_record(header);
        let id = self.id.to_string();
        for m in &self.messages {
            let row = [
                id.as_str(),
                &self.campaign,
                &self.customer,
                &m.at,
                &m.direction,
                &m.sender,
                m.channel.as_deref().unwrap_or(""),
                m.state.as_deref().unwrap_or(""),
                &m.text,
            ];
            let _ = w.write_record(row.iter().map(|c| safe_cell(c).into_owned()));
        }
        String::from_utf8(w.into_inner().unwrap_or_default()).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Recording {
        Recording {
            id: 7,
            campaign: "ventas".into(),
            customer: "+59899111222".into(),
            agent: None,
            started: rfc3339(0),
            closed: None,
            messages: vec![
                Line {
                    at_ms: 0,
                    at: rfc3339(0),
                    direction: "in".into(),
                    sender: "customer".into(),
                    channel: Some("gw:0".into()),
                    text: "=HYPERLINK(\"http://x\";\"ñ 👍\")".into(),
                    state: None,
                },
                Line {
                    at_ms: 1,
                    at: rfc3339(1),
                    direction: "out".into(),
                    sender: "system".into(),
                    channel: Some("gw:0".into()),
                    text: "Fuera de horario,\nvuelva mañana".into(),
                    state: Some("DELIVERED".into()),
                },
            ],
        }
    }

    #[test]
    fn formula_cells_are_neutralised_and_the_rest_kept() {
        assert_eq!(safe_cell("=1+1"), "'=1+1");
        assert_eq!(safe_cell("+598"), "'+598");
        assert_eq!(safe_cell("-2"), "'-2");
        assert_eq!(safe_cell("@SUM(A1)"), "'@SUM(A1)");
        assert_eq!(safe_cell("hola = chau"), "hola = chau");
        let csv = sample().to_csv();
        let mut r = csv::Reader::from_reader(csv.as_bytes());
        let rows: Vec<csv::StringRecord> = r.records().map(Result::unwrap).collect();
        assert_eq!(rows.len(), 2);
        assert_eq!(&rows[0][8], "'=HYPERLINK(\"http://x\";\"ñ 👍\")");
        // The customer's number starts with + and is neutralised too.
        assert_eq!(&rows[0][2], "'+59899111222");
        assert_eq!(&rows[1][8], "Fuera de horario,\nvuelva mañana");
    }

    #[test]
    fn text_form_shows_every_message_with_its_sender() {
        let t = sample().to_text();
        assert!(t.contains("<- customer: =HYPERLINK"), "{t}");
        assert!(
            t.contains("-> system (DELIVERED): Fuera de horario,\n    vuelva mañana"),
            "{t}"
        );
        assert!(t.starts_with("Interaction 7 · campaign ventas · customer +59899111222"));
    }
}
