//! `[inbound]`: conversations' idle time, out-of-hours replies, opt-out
//! and opt-in keywords and their confirmations; and the keyword lists a
//! campaign adds.

use std::time::Duration;

use smsgate_proto::consent;
use toml::Spanned;

use super::super::raw::RawInbound;
use super::super::{InboundConfig, OptOutScope};
use super::Validator;
use super::dialers::MAX_CAMPAIGN_TEXT;

impl Validator<'_> {
    pub(super) fn inbound(&mut self, raw: RawInbound) -> InboundConfig {
        let mut seconds = |v: &Spanned<u64>, lo: u64, hi: u64, key: &str| {
            if (lo..=hi).contains(v.get_ref()) {
                *v.get_ref()
            } else {
                self.problem(
                    v.span(),
                    format!("[inbound] {key} must be between {lo} and {hi}"),
                );
                lo
            }
        };
        let interaction_idle_s = seconds(
            &raw.interaction_idle_s,
            60,
            30 * 86_400,
            "interaction_idle_s",
        );
        let out_of_hours_every_s = seconds(
            &raw.out_of_hours_every_s,
            0,
            30 * 86_400,
            "out_of_hours_every_s",
        );
        let reply_interval_ms = seconds(&raw.reply_interval_ms, 0, 3_600_000, "reply_interval_ms");
        let opt_out_scope = match raw.opt_out_scope.get_ref().as_str() {
            "dialers" => OptOutScope::Dialers,
            "global" => OptOutScope::Global,
            other => {
                self.problem(
                    raw.opt_out_scope.span(),
                    format!("[inbound] opt_out_scope {other:?} is not one of dialers, global"),
                );
                OptOutScope::Dialers
            }
        };
        let opt_out_keywords = match raw.opt_out_keywords {
            Some(list) => self.keywords(list, "opt_out_keywords"),
            None => consent::DEFAULT_OPT_OUT
                .iter()
                .map(|k| k.to_string())
                .collect(),
        };
        let opt_in_keywords = match raw.opt_in_keywords {
            Some(list) => self.keywords(list, "opt_in_keywords"),
            None => consent::DEFAULT_OPT_IN
                .iter()
                .map(|k| k.to_string())
                .collect(),
        };
        let opt_out_reply = self.reply(raw.opt_out_reply, "opt_out_reply");
        let opt_in_reply = self.reply(raw.opt_in_reply, "opt_in_reply");
        InboundConfig {
            interaction_idle: Duration::from_secs(interaction_idle_s),
            out_of_hours_every: Duration::from_secs(out_of_hours_every_s),
            reply_interval: Duration::from_millis(reply_interval_ms),
            opt_out_keywords,
            opt_in_keywords,
            opt_out_scope,
            opt_out_reply,
            opt_in_reply,
        }
    }

    /// A keyword list: each keyword must keep a letter or digit once folded
    /// (a keyword of punctuation would match every empty text).
    pub(super) fn keywords(&mut self, list: Vec<Spanned<String>>, key: &str) -> Vec<String> {
        let mut out = Vec::new();
        for k in list {
            let folded = consent::fold(k.get_ref());
            if folded.is_empty() || folded.len() > 64 {
                self.problem(
                    k.span(),
                    format!(
                        "{key}: {:?} must have 1 to 64 letters or digits (case, accents and punctuation are ignored when matching)",
                        k.get_ref()
                    ),
                );
                continue;
            }
            out.push(k.into_inner());
        }
        out
    }

    /// A confirmation text; empty means none is sent.
    fn reply(&mut self, text: Spanned<String>, key: &str) -> Option<String> {
        let chars = text.get_ref().chars().count();
        if text.get_ref().trim().is_empty() {
            return None;
        }
        if chars > MAX_CAMPAIGN_TEXT {
            self.problem(
                text.span(),
                format!(
                    "[inbound] {key} must be at most {MAX_CAMPAIGN_TEXT} characters (ten SMS parts); it has {chars}"
                ),
            );
        }
        Some(text.into_inner())
    }
}
