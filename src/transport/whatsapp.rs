//! WhatsApp's rules as a transport applies them before a send, shared by
//! Twilio's WhatsApp channel and Meta's Cloud API: free text only inside
//! the customer's 24-hour window, templates anywhere, and the messaging
//! limit on customers reached outside their window. The rules themselves
//! are pure code in `smsgate_proto::whatsapp_rules`; this keeps their
//! state for one gateway, seeded at start from what the store knows.

use std::sync::Mutex;
use std::time::Duration;

use smsgate_proto::whatsapp_rules::{CustomerWindows, MessagingLimit, WindowState};

use super::{BuildContext, Outbound, SendError};

/// One gateway's windows and messaging limit.
pub struct WhatsAppRules {
    gateway: String,
    windows: Mutex<CustomerWindows>,
    limit: Mutex<MessagingLimit>,
}

impl WhatsAppRules {
    /// `limit`: the gateway's `messaging_limit` (None: not enforced, still
    /// counted). The context's seeds say who wrote in and who was sent a
    /// template in the last 24 hours, so a restart forgets nothing.
    pub fn new(gateway: &str, limit: Option<u32>, ctx: &BuildContext) -> Self {
        let mut windows = CustomerWindows::default();
        for (number, at) in &ctx.last_inbound {
            windows.inbound(number, *at);
        }
        let mut counted = MessagingLimit::new(limit);
        for (number, at) in &ctx.templates_sent {
            counted.record(number, *at);
        }
        Self {
            gateway: gateway.to_string(),
            windows: Mutex::new(windows),
            limit: Mutex::new(counted),
        }
    }

    /// The customer `number` (E.164) wrote in now.
    pub fn inbound(&self, number: &str) {
        self.inbound_at(number, crate::now_ms());
    }

    /// The customer wrote at `at_ms`, as the provider dates the message
    /// (never later than now): a webhook retried for days must not open a
    /// window the customer's message no longer does.
    pub fn inbound_at(&self, number: &str, at_ms: i64) {
        let now = crate::now_ms();
        if let Ok(mut w) = self.windows.lock() {
            if w.len() > 10_000 {
                w.purge(now);
            }
            w.inbound(number, at_ms.min(now));
        }
    }

    pub fn window(&self, number: &str) -> WindowState {
        let now = crate::now_ms();
        self.windows
            .lock()
            .map(|w| w.state(number, now))
            .unwrap_or(WindowState {
                open: false,
                last_inbound_ms: None,
                closes_at_ms: None,
            })
    }

    pub fn usage(&self) -> (usize, Option<u32>) {
        let now = crate::now_ms();
        self.limit
            .lock()
            .map(|mut l| l.usage(now))
            .unwrap_or((0, None))
    }

    /// Whether `msg` may be sent now. Free text outside the window fails
    /// for good (the provider would refuse it: Meta 131047, Twilio 63016);
    /// a template to a customer not reached in the last 24 hours waits
    /// while the messaging limit is used up.
    pub fn check(&self, msg: &Outbound) -> Result<(), SendError> {
        let now = crate::now_ms();
        let window = self.window(&msg.to);
        if msg.template.is_none() {
            if window.open {
                return Ok(());
            }
            let since = match window.last_inbound_ms {
                Some(at) => format!("the customer last wrote {} h ago", (now - at) / 3_600_000),
                None => "the customer has not written to this number".into(),
            };
            return Err(SendError::Permanent {
                reason: format!(
                    "outside WhatsApp's 24-hour customer-service window ({since}): free text is refused; send a template"
                ),
            });
        }
        if window.open {
            return Ok(());
        }
        let Ok(mut limit) = self.limit.lock() else {
            return Ok(());
        };
        match limit.admit(&msg.to, now) {
            // Counted now, under the lock: channels sending at once would
            // each be admitted before any send counted, and go past the
            // limit. A send that then fails still counts (the safe side).
            Ok(()) => {
                limit.record(&msg.to, now);
                Ok(())
            }
            Err(wait_ms) => {
                let (used, cap) = limit.usage(now);
                let cap = cap.map_or_else(|| "?".into(), |c| c.to_string());
                tracing::warn!(gateway = %self.gateway, used, limit = %cap, retry_in_s = wait_ms / 1000, "WhatsApp messaging limit reached: templates to new customers wait");
                Err(SendError::Deferred {
                    reason: format!(
                        "WhatsApp messaging limit reached ({used} of {cap} customers outside their window in 24 h)"
                    ),
                    retry_in: Duration::from_millis(wait_ms.max(1000) as u64),
                })
            }
        }
    }

    /// `msg` was accepted: a template outside the window counts against
    /// the messaging limit.
    pub fn sent(&self, msg: &Outbound) {
        if msg.template.is_none() {
            return;
        }
        let now = crate::now_ms();
        if self.window(&msg.to).open {
            return;
        }
        if let Ok(mut l) = self.limit.lock() {
            l.record(&msg.to, now);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use smsgate_proto::whatsapp_rules::MessageTemplate;

    use super::*;
    use crate::transport::Events;

    fn ctx(last_inbound: Vec<(String, i64)>, templates_sent: Vec<(String, i64)>) -> BuildContext {
        BuildContext {
            events: Events::channel().0,
            stop: Default::default(),
            awaiting: Vec::new(),
            inbound_mark: None,
            default_country: "UY".into(),
            last_inbound,
            templates_sent,
        }
    }

    fn msg(to: &str, template: bool) -> Outbound {
        Outbound {
            message_id: 1,
            port: 0,
            to: to.into(),
            text: "hola".into(),
            reference: 1,
            template: template.then(|| {
                Arc::new(MessageTemplate {
                    name: "hello".into(),
                    language: Some("es".into()),
                    variables: vec![],
                })
            }),
        }
    }

    #[test]
    fn free_text_needs_the_window_and_templates_the_limit() {
        let now = crate::now_ms();
        let rules = WhatsAppRules::new(
            "wa",
            Some(1),
            &ctx(
                vec![("+59899000001".into(), now - 3_600_000)],
                vec![("+59899000009".into(), now - 3_600_000)],
            ),
        );
        assert!(
            rules.check(&msg("+59899000001", false)).is_ok(),
            "in window"
        );
        let e = rules.check(&msg("+59899000002", false)).unwrap_err();
        assert!(matches!(e, SendError::Permanent { .. }), "{e}");
        assert!(e.to_string().contains("24-hour"), "{e}");
        assert!(
            rules.check(&msg("+59899000001", true)).is_ok(),
            "template in window"
        );
        assert!(
            rules.check(&msg("+59899000009", true)).is_ok(),
            "already counted today"
        );
        let e = rules.check(&msg("+59899000003", true)).unwrap_err();
        assert!(
            matches!(e, SendError::Deferred { .. }),
            "limit of 1 used by the seed: {e}"
        );
        rules.inbound("+59899000003");
        assert!(
            rules.check(&msg("+59899000003", false)).is_ok(),
            "wrote in: open"
        );
        assert_eq!(rules.usage(), (1, Some(1)));
    }

    /// Channels sending at once: the second new customer is deferred even
    /// though the first one's send has not come back yet.
    #[test]
    fn admitted_templates_count_before_their_send_returns() {
        let rules = WhatsAppRules::new("wa", Some(1), &ctx(vec![], vec![]));
        assert!(rules.check(&msg("+59899000001", true)).is_ok());
        let e = rules.check(&msg("+59899000002", true)).unwrap_err();
        assert!(matches!(e, SendError::Deferred { .. }), "{e}");
        assert!(
            rules.check(&msg("+59899000001", true)).is_ok(),
            "the same customer again costs nothing"
        );
    }

    #[test]
    fn a_message_dated_long_ago_opens_no_window() {
        let rules = WhatsAppRules::new("wa", None, &ctx(vec![], vec![]));
        let now = crate::now_ms();
        rules.inbound_at("+59899000001", now - 25 * 3_600_000);
        assert!(!rules.window("+59899000001").open);
        rules.inbound_at("+59899000002", now + 3_600_000);
        let w = rules.window("+59899000002");
        assert!(
            w.open && w.last_inbound_ms <= Some(crate::now_ms()),
            "{w:?}"
        );
    }
}
