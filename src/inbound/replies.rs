//! What the system answers a customer on its own, decided in the
//! transaction that stores the customer's message, so a crash leaves both
//! or neither: an opt-out or opt-in keyword changes the number's consent
//! (the DNCR lists, the ledger) and is confirmed once; a message outside
//! the campaign's schedule gets the out-of-hours message, once per
//! `[inbound] out_of_hours_every_s` per customer. Replies are queued on the
//! built-in dialers, pinned to the channel the customer wrote to, and go
//! out through the normal send path (DNCR, pacing, crash safety, states).

use smsgate_proto::consent::{self as keywords, Keyword};
use smsgate_proto::sms;

use crate::config::{CONSENT_DIALER, CampaignConfig, Config, OptOutScope, REPLIES_DIALER};
use crate::store::consent::{self, Action};
use crate::store::spool::{self, NewMessage, State};
use crate::store::{StoreError, interactions};
use rusqlite::Transaction;

/// A received message as the replies see it, once stored.
pub(super) struct Arrived<'a> {
    pub campaign: Option<&'a CampaignConfig>,
    pub interaction: Option<i64>,
    /// The sender in E.164; None for an alphanumeric sender, who cannot be
    /// answered nor opted out.
    pub number: Option<&'a str>,
    /// The sender as the gateway wrote it.
    pub sender: &'a str,
    pub gateway: &'a str,
    pub port: Option<u32>,
    pub text: &'a str,
}

/// What the replies did, for the journal and to wake the dialers.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(super) struct Responded {
    pub consent: Option<(Action, Vec<String>)>,
    pub out_of_hours: bool,
    /// The built-in dialers that got a message.
    pub queued: Vec<&'static str>,
    /// What was queued, for the metrics: out_of_hours,
    /// opt_out_confirmation, opt_in_confirmation.
    pub replies: Vec<&'static str>,
    /// A new interaction now waits for an agent.
    pub queued_for_agent: bool,
    /// A new interaction refused: acd_max_waiting were waiting.
    pub busy: bool,
}

/// Whether a campaign is closed at `now`: it has a schedule and the
/// schedule is not open. A campaign without one is always open.
pub fn out_of_hours(config: &Config, campaign: &CampaignConfig, now: jiff::Timestamp) -> bool {
    match &campaign.schedule {
        None => false,
        Some(name) => config.schedules.get(name).is_some_and(|s| !s.is_open(now)),
    }
}

pub(super) fn respond(
    tx: &Transaction<'_>,
    config: &Config,
    a: &Arrived<'_>,
    now: jiff::Timestamp,
) -> Result<Responded, StoreError> {
    let mut done = Responded::default();
    let Some(number) = a.number else {
        return Ok(done);
    };
    let opt_out: Vec<&str> = config
        .inbound
        .opt_out_keywords
        .iter()
        .chain(a.campaign.iter().flat_map(|c| &c.opt_out_keywords))
        .map(String::as_str)
        .collect();
    let opt_in: Vec<&str> = config
        .inbound
        .opt_in_keywords
        .iter()
        .chain(a.campaign.iter().flat_map(|c| &c.opt_in_keywords))
        .map(String::as_str)
        .collect();
    // A keyword's change of consent: the lists it changed, its
    // confirmation and the confirmation's name in the metrics.
    let (action, changed, reply, kind) = match keywords::keyword(a.text, &opt_out, &opt_in) {
        Some(Keyword::OptOut) => {
            let dialers = match config.inbound.opt_out_scope {
                OptOutScope::Global => Vec::new(),
                OptOutScope::Dialers => consent::dialers_that_texted(tx, number)?,
            };
            (
                Action::OptOut,
                consent::opt_out(tx, number, a.sender, &dialers, consent::KEYWORD_SOURCE)?,
                &config.inbound.opt_out_reply,
                "opt_out_confirmation",
            )
        }
        Some(Keyword::OptIn) => (
            Action::OptIn,
            consent::opt_in(tx, number)?,
            &config.inbound.opt_in_reply,
            "opt_in_confirmation",
        ),
        None => return out_of_hours_reply(tx, config, a, number, now, done),
    };
    // A keyword that changes nothing (a second STOP) is neither kept nor
    // confirmed again; a keyword never gets the out-of-hours message.
    if !changed.is_empty() {
        let lists: Vec<String> = changed.into_iter().filter(|d| !d.is_empty()).collect();
        ledger(tx, a, number, action, &lists)?;
        if let Some(text) = reply {
            queue(tx, a, number, CONSENT_DIALER, text, &mut done)?;
            done.replies.push(kind);
        }
        done.consent = Some((action, lists));
    }
    Ok(done)
}

/// The campaign's out-of-hours message, when the campaign is closed now
/// and the customer has not had it within `out_of_hours_every_s`.
fn out_of_hours_reply(
    tx: &Transaction<'_>,
    config: &Config,
    a: &Arrived<'_>,
    number: &str,
    now: jiff::Timestamp,
    mut done: Responded,
) -> Result<Responded, StoreError> {
    let (Some(campaign), Some(interaction)) = (a.campaign, a.interaction) else {
        return Ok(done);
    };
    let Some(text) = &campaign.out_of_hours_message else {
        return Ok(done);
    };
    if !out_of_hours(config, campaign, now) {
        return Ok(done);
    }
    let every = config.inbound.out_of_hours_every.as_millis() as i64;
    let last = interactions::last_out_of_hours(tx, &campaign.name, number)?;
    if last.is_some_and(|at| now.as_millisecond() - at < every) {
        return Ok(done);
    }
    queue(tx, a, number, REPLIES_DIALER, text, &mut done)?;
    interactions::set_out_of_hours(tx, interaction)?;
    done.out_of_hours = true;
    done.replies.push("out_of_hours");
    Ok(done)
}

/// Puts a new interaction in its campaign's queue for an agent, or, when
/// `acd_max_waiting` are waiting already, refuses it (counted) and sends
/// the campaign's busy message back the way out-of-hours replies go.
/// Only a customer who opened the interaction with a message that was
/// neither a keyword nor answered as out of hours waits for an agent.
pub(super) fn enqueue(
    tx: &Transaction<'_>,
    a: &Arrived<'_>,
    opened: bool,
    mut done: Responded,
) -> Result<Responded, StoreError> {
    let (Some(campaign), Some(interaction)) = (a.campaign, a.interaction) else {
        return Ok(done);
    };
    crate::store::acd::customer_wrote(tx, interaction, crate::store::now_ms())?;
    if !opened || done.out_of_hours || done.consent.is_some() {
        return Ok(done);
    }
    let taken =
        crate::store::acd::enqueue(tx, interaction, &campaign.name, campaign.acd_max_waiting)?;
    done.queued_for_agent = taken == crate::store::acd::Enqueued::Waiting;
    if taken == crate::store::acd::Enqueued::Busy {
        done.busy = true;
        if let (Some(text), Some(number)) = (&campaign.busy_message, a.number) {
            queue(tx, a, number, REPLIES_DIALER, text, &mut done)?;
            done.replies.push("busy");
        }
    }
    Ok(done)
}

fn ledger(
    tx: &Transaction<'_>,
    a: &Arrived<'_>,
    number: &str,
    action: Action,
    lists: &[String],
) -> Result<(), StoreError> {
    consent::record(
        tx,
        &consent::Change {
            number,
            action,
            dialers: lists,
            source: consent::KEYWORD_SOURCE,
            who: Some(number),
            detail: Some(a.text),
            campaign: a.campaign.map(|c| c.name.as_str()),
            interaction: a.interaction,
        },
    )
}

/// Queues a system reply to the customer on the channel they wrote to, in
/// their conversation when there is one.
fn queue(
    tx: &Transaction<'_>,
    a: &Arrived<'_>,
    number: &str,
    dialer: &'static str,
    text: &str,
    done: &mut Responded,
) -> Result<(), StoreError> {
    let pin = interactions::pin_name(a.gateway, a.port);
    let channel = interactions::channel_name(a.gateway, a.port);
    let plan = sms::plan(text);
    let message = NewMessage {
        dialer: dialer.to_string(),
        destination: number.to_string(),
        number: Some(number.to_string()),
        text: text.to_string(),
        priority: crate::config::MIN_PRIORITY,
        client_id: None,
        import_id: None,
        encoding: plan.encoding.as_str(),
        segments: plan.segments as u32,
        state: State::ToProcess,
        template: None,
    };
    let id = spool::insert_pinned(tx, &message, &pin, a.interaction)?;
    if let Some(interaction) = a.interaction {
        interactions::record_outbound(tx, interaction, "system", &channel, id, &message)?;
    }
    if !done.queued.contains(&dialer) {
        done.queued.push(dialer);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(windows: &str) -> Config {
        let text = format!(
            r#"
[[gateway]]
name = "gw"
kind = "sim"
ports = 2

[schedule.office]
time_zone = "Europe/Madrid"
{windows}

[[campaign]]
name = "ventas"
provider = "gw"
did_ports = ["gw:0"]
schedule = "office"
out_of_hours_message = "Cerrado"

[[campaign]]
name = "siempre"
provider = "gw"
did_ports = ["gw:1"]
"#
        );
        Config::from_source(std::path::Path::new("t.toml"), &text).unwrap()
    }

    fn at(s: &str) -> jiff::Timestamp {
        s.parse().unwrap()
    }

    /// The window's first instant is in hours, its end is not; a campaign
    /// without a schedule is never out of hours.
    #[test]
    fn the_schedule_edges_decide_out_of_hours() {
        let c = config(
            "[[schedule.office.window]]\ndays = \"mon-sun\"\nfrom = \"09:00\"\nto = \"18:00\"",
        );
        let ventas = c.campaign("ventas").unwrap();
        let siempre = c.campaign("siempre").unwrap();
        // 2026-12-07 is a Monday; Madrid is UTC+1 in winter.
        for (t, closed) in [
            ("2026-12-07T07:59:59Z", true),
            ("2026-12-07T08:00:00Z", false),
            ("2026-12-07T16:59:59.999Z", false),
            ("2026-12-07T17:00:00Z", true),
        ] {
            assert_eq!(out_of_hours(&c, ventas, at(t)), closed, "{t}");
            assert!(!out_of_hours(&c, siempre, at(t)), "{t}");
        }
    }

    /// On the days the clocks change, the window is wall-clock time: it
    /// opens at 09:00 summer time after the spring change and 09:00
    /// winter time after the autumn one; a window ending at a time that
    /// does not exist (02:30 on 29 March) ends at 03:30 summer time.
    #[test]
    fn out_of_hours_follows_daylight_saving_changes() {
        let c = config(
            "[[schedule.office.window]]\ndays = \"mon-sun\"\nfrom = \"09:00\"\nto = \"18:00\"\n\
             [[schedule.office.exception]]\ndate = \"2026-03-29\"\nranges = [{ from = \"00:00\", to = \"02:30\" }, { from = \"09:00\", to = \"18:00\" }]",
        );
        let v = c.campaign("ventas").unwrap();
        for (t, closed) in [
            // Sunday 29 March 2026: 02:00 CET becomes 03:00 CEST (UTC+2).
            ("2026-03-29T01:29:59Z", false),
            ("2026-03-29T01:30:00Z", true),
            ("2026-03-29T06:59:59Z", true),
            ("2026-03-29T07:00:00Z", false),
            ("2026-03-29T15:59:59Z", false),
            ("2026-03-29T16:00:00Z", true),
            // Saturday 28 March: still winter time (UTC+1).
            ("2026-03-28T07:59:59Z", true),
            ("2026-03-28T08:00:00Z", false),
            // Sunday 25 October 2026: 03:00 CEST becomes 02:00 CET.
            ("2026-10-24T06:59:59Z", true),
            ("2026-10-24T07:00:00Z", false),
            ("2026-10-25T07:59:59Z", true),
            ("2026-10-25T08:00:00Z", false),
            ("2026-10-25T17:00:00Z", true),
        ] {
            assert_eq!(out_of_hours(&c, v, at(t)), closed, "{t}");
        }
    }
}
