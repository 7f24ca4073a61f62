//! WhatsApp's sending rules, the same on Twilio and on Meta's Cloud API:
//! the 24-hour customer-service window, the messaging limit, and the
//! template a business sends outside the window. Time comes in as unix
//! milliseconds: nothing here reads the clock.

use std::collections::{HashMap, VecDeque};

/// How long after a customer's last message free text may be sent.
pub const CUSTOMER_WINDOW_MS: i64 = 24 * 3600 * 1000;

/// A provider's pre-approved message: Twilio's ContentSid (`HX...`), or a
/// Meta template's name and language. Sent inside or outside the window.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MessageTemplate {
    /// Twilio: the ContentSid; Meta: the template's name.
    pub name: String,
    /// Meta: the template's language code (`es`, `en_US`). Twilio's
    /// content carries its own language, so it is not sent there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub language: Option<String>,
    /// The body's variables in order: Twilio's ContentVariables
    /// `{"1": ..., "2": ...}`, Meta's body parameters.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub variables: Vec<String>,
}

/// The most variables a template takes here.
pub const MAX_TEMPLATE_VARIABLES: usize = 100;
/// The longest variable, in characters (Meta's body limit).
pub const MAX_TEMPLATE_VARIABLE: usize = 1024;

impl MessageTemplate {
    /// Why the template cannot be sent by any provider, in plain words.
    pub fn check(&self) -> Result<(), String> {
        let name = self.name.trim();
        if name.is_empty() {
            return Err("template.name is empty".into());
        }
        if name.len() > 512 || name.chars().any(char::is_control) {
            return Err(
                "template.name must be at most 512 characters, without control characters".into(),
            );
        }
        if let Some(lang) = &self.language {
            let ok = (2..=15).contains(&lang.len())
                && lang
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
            if !ok {
                return Err(format!(
                    "template.language {lang:?} is not a language code such as \"es\" or \"en_US\""
                ));
            }
        }
        if self.variables.len() > MAX_TEMPLATE_VARIABLES {
            return Err(format!(
                "a template takes at most {MAX_TEMPLATE_VARIABLES} variables, found {}",
                self.variables.len()
            ));
        }
        for (i, v) in self.variables.iter().enumerate() {
            if v.trim().is_empty() {
                return Err(format!(
                    "variable {} is empty (providers refuse empty template parameters)",
                    i + 1
                ));
            }
            if v.chars().count() > MAX_TEMPLATE_VARIABLE {
                return Err(format!(
                    "variable {} is longer than {MAX_TEMPLATE_VARIABLE} characters",
                    i + 1
                ));
            }
        }
        Ok(())
    }

    /// What the conversation shows for it when the client gave no text.
    pub fn describe(&self) -> String {
        let mut s = format!("[template {}", self.name);
        if let Some(l) = &self.language {
            s.push_str(&format!(" ({l})"));
        }
        if !self.variables.is_empty() {
            s.push_str(": ");
            s.push_str(&self.variables.join(", "));
        }
        s.push(']');
        s
    }
}

/// Where one customer's window stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct WindowState {
    pub open: bool,
    /// The customer's last message, unix ms, when one is known.
    pub last_inbound_ms: Option<i64>,
    /// When the window closes (or closed), unix ms.
    pub closes_at_ms: Option<i64>,
}

/// Each customer's last message, per gateway: whether free text may go.
#[derive(Debug, Default, Clone)]
pub struct CustomerWindows {
    last: HashMap<String, i64>,
}

impl CustomerWindows {
    /// The customer `number` wrote at `at_ms`. An older message (a late
    /// poll) never moves the window back.
    pub fn inbound(&mut self, number: &str, at_ms: i64) {
        let e = self.last.entry(number.to_string()).or_insert(at_ms);
        *e = (*e).max(at_ms);
    }

    pub fn state(&self, number: &str, now_ms: i64) -> WindowState {
        match self.last.get(number) {
            Some(&at) => WindowState {
                open: now_ms < at + CUSTOMER_WINDOW_MS,
                last_inbound_ms: Some(at),
                closes_at_ms: Some(at + CUSTOMER_WINDOW_MS),
            },
            None => WindowState {
                open: false,
                last_inbound_ms: None,
                closes_at_ms: None,
            },
        }
    }

    /// Forgets windows closed before `now_ms`: memory stays bounded by
    /// the customers of one day.
    pub fn purge(&mut self, now_ms: i64) {
        self.last.retain(|_, at| now_ms < *at + CUSTOMER_WINDOW_MS);
    }

    pub fn len(&self) -> usize {
        self.last.len()
    }

    pub fn is_empty(&self) -> bool {
        self.last.is_empty()
    }
}

/// The messaging limit: how many distinct customers the business may
/// reach outside their window in any rolling 24 hours (Meta's tiers: 250,
/// 2,000, 10,000, 100,000). A customer reached again within the 24 hours
/// costs nothing more.
#[derive(Debug, Clone)]
pub struct MessagingLimit {
    limit: Option<u32>,
    /// Each customer counted, and when they were first counted in the
    /// current 24 hours.
    counted: HashMap<String, i64>,
    /// The same, in time order, for expiry.
    order: VecDeque<(i64, String)>,
}

impl MessagingLimit {
    /// `None`: no limit is enforced (the usage is still counted).
    pub fn new(limit: Option<u32>) -> Self {
        Self {
            limit,
            counted: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    fn expire(&mut self, now_ms: i64) {
        while let Some((at, _)) = self.order.front() {
            if now_ms < at + CUSTOMER_WINDOW_MS {
                break;
            }
            if let Some((at, n)) = self.order.pop_front() {
                if self.counted.get(&n) == Some(&at) {
                    self.counted.remove(&n);
                }
            }
        }
    }

    /// Whether a business-initiated message to `number` may go now: Err
    /// holds how many ms until a place frees.
    pub fn admit(&mut self, number: &str, now_ms: i64) -> Result<(), i64> {
        self.expire(now_ms);
        if self.counted.contains_key(number) {
            return Ok(());
        }
        match self.limit {
            Some(l) if self.counted.len() >= l as usize => {
                let oldest = self.order.front().map_or(now_ms, |(at, _)| *at);
                Err((oldest + CUSTOMER_WINDOW_MS - now_ms).max(1))
            }
            _ => Ok(()),
        }
    }

    /// A business-initiated message to `number` went at `at_ms`.
    pub fn record(&mut self, number: &str, at_ms: i64) {
        self.expire(at_ms);
        if self.counted.contains_key(number) {
            return;
        }
        // Seeds at start may come in any order: keep `order` sorted.
        let pos = self.order.partition_point(|(t, _)| *t <= at_ms);
        self.order.insert(pos, (at_ms, number.to_string()));
        self.counted.insert(number.to_string(), at_ms);
    }

    /// Customers counted in the last 24 hours, and the limit.
    pub fn usage(&mut self, now_ms: i64) -> (usize, Option<u32>) {
        self.expire(now_ms);
        (self.counted.len(), self.limit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: i64 = 3600 * 1000;

    #[test]
    fn the_window_is_open_for_24_hours_after_the_last_message() {
        let mut w = CustomerWindows::default();
        assert!(!w.state("+1", 0).open, "never wrote: closed");
        w.inbound("+1", 10 * H);
        assert!(w.state("+1", 10 * H).open);
        assert!(w.state("+1", 34 * H - 1).open);
        assert!(!w.state("+1", 34 * H).open, "24 h later it closes");
        w.inbound("+1", 5 * H);
        assert_eq!(
            w.state("+1", 0).last_inbound_ms,
            Some(10 * H),
            "late older message"
        );
        w.inbound("+1", 30 * H);
        assert!(w.state("+1", 50 * H).open, "a new message reopens it");
        w.purge(60 * H);
        assert_eq!(w.len(), 0);
    }

    #[test]
    fn the_limit_counts_distinct_customers_per_rolling_day() {
        let mut l = MessagingLimit::new(Some(2));
        assert_eq!(l.admit("+1", 0), Ok(()));
        l.record("+1", 0);
        l.record("+2", H);
        assert_eq!(l.admit("+1", 2 * H), Ok(()), "already counted");
        assert_eq!(l.admit("+3", 2 * H), Err(22 * H), "full until +1 expires");
        assert_eq!(l.admit("+3", 24 * H), Ok(()), "+1 expired");
        l.record("+3", 24 * H);
        assert_eq!(l.usage(24 * H), (2, Some(2)));
        assert_eq!(l.admit("+4", 24 * H), Err(H));
        let mut none = MessagingLimit::new(None);
        for i in 0..1000 {
            none.record(&format!("+{i}"), 0);
        }
        assert_eq!(none.admit("+x", 0), Ok(()));
        assert_eq!(none.usage(0), (1000, None));
    }

    #[test]
    fn seeds_out_of_order_expire_in_time_order() {
        let mut l = MessagingLimit::new(Some(2));
        l.record("+2", 5 * H);
        l.record("+1", H);
        assert_eq!(l.admit("+3", 6 * H), Err(19 * H));
        assert_eq!(l.admit("+3", 25 * H), Ok(()));
    }

    #[test]
    fn templates_are_checked_before_they_are_queued() {
        let ok = MessageTemplate {
            name: "order_update".into(),
            language: Some("es".into()),
            variables: vec!["Ana".into(), "1234".into()],
        };
        assert_eq!(ok.check(), Ok(()));
        assert_eq!(ok.describe(), "[template order_update (es): Ana, 1234]");
        let bad = |t: MessageTemplate| t.check().unwrap_err();
        assert!(
            bad(MessageTemplate {
                name: " ".into(),
                ..ok.clone()
            })
            .contains("empty")
        );
        assert!(
            bad(MessageTemplate {
                language: Some("es es".into()),
                ..ok.clone()
            })
            .contains("language")
        );
        assert!(
            bad(MessageTemplate {
                variables: vec!["".into()],
                ..ok.clone()
            })
            .contains("variable 1")
        );
    }
}
