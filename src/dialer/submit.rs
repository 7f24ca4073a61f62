//! Submitting a message to a dialer: the one domain entry point behind the
//! API's single sends (the seed's "Envío de mensaje único"), and the rules
//! every way in shares (the imports check the same text limit). It checks
//! the dialer, the text (at most ten SMS parts, and what the dialer's
//! gateways take), the priority, the client id and the number; stores the
//! message (a reused client id with the same content replays the first);
//! and wakes the dialer.

use smsgate_proto::sms::{self, MAX_SEGMENTS, phone};

use super::DialerError;
use super::Dialers;
use super::importer::{self, ImportSummary};
use super::limits::{self, text_limit};
use crate::config::{Config, MAX_PRIORITY, MIN_PRIORITY};
use crate::gateways::Gateways;
use crate::runtime::Shared;
use crate::store::StoreError;
use crate::store::spool::{self, Inserted, Message, NewMessage, State};

pub(super) const MAX_CLIENT_ID: usize = 128;

/// One message for one dialer, as a caller hands it in.
#[derive(Debug, Clone)]
pub struct Submission {
    pub dialer: String,
    /// The destination as written; normalised to E.164 with the daemon's
    /// default country.
    pub to: String,
    pub text: String,
    /// The dialer's own priority when None.
    pub priority: Option<i64>,
    /// The caller's idempotency key.
    pub client_id: Option<String>,
    /// A provider's template (WhatsApp), sent instead of the text; the
    /// text, when given, is what the conversation shows.
    pub template: Option<smsgate_proto::whatsapp_rules::MessageTemplate>,
}

/// The message as stored; `replayed` when the client id was seen before
/// with the same content (nothing new will be sent).
#[derive(Debug, Clone)]
pub struct Submitted {
    pub message: Message,
    pub replayed: bool,
}

/// Checks, stores and queues one message, then wakes its dialer.
pub async fn submit(
    shared: &Shared,
    dialers: &Dialers,
    gateways: &Gateways,
    s: Submission,
) -> Result<Submitted, DialerError> {
    let config = shared.config();
    let new = check(&config, s)?;
    check_window(&config, gateways, &new)?;
    let inserted = shared.store.write(move |tx| spool::insert(tx, &new)).await;
    let submitted = match inserted {
        Ok(Inserted::New(message)) => Submitted {
            message,
            replayed: false,
        },
        Ok(Inserted::Replayed(message)) => Submitted {
            message,
            replayed: true,
        },
        Err(StoreError::Conflict(detail)) => return Err(DialerError::ClientIdReused(detail)),
        Err(e) => return Err(DialerError::Store(e)),
    };
    if !submitted.replayed {
        dialers.wake(&submitted.message.dialer);
    }
    Ok(submitted)
}

/// A whole file of messages (the seed's bulk load), read on a blocking
/// thread: all of it or none (see `importer`). Wakes every dialer that got
/// messages.
pub async fn import(
    shared: &Shared,
    dialers: &Dialers,
    filename: String,
    body: impl std::io::BufRead + Send + 'static,
) -> Result<ImportSummary, DialerError> {
    let config = shared.config();
    let store = shared.store.clone();
    let summary = tokio::task::spawn_blocking(move || {
        importer::import_messages(&store, &config, &filename, body)
    })
    .await
    .map_err(|_| DialerError::Read("the import task ended unexpectedly".into()))??;
    tracing::info!(
        import = summary.import_id,
        file = %summary.filename,
        lines = summary.lines,
        queued = summary.queued,
        invalid = summary.invalid,
        "messages imported"
    );
    for d in summary.dialers.keys() {
        dialers.wake(d);
    }
    Ok(summary)
}

/// Free text to a customer whose WhatsApp window is closed on every
/// gateway the dialer may use would only fail later: refuse it now. A
/// gateway that is not running cannot say; the send path decides then.
fn check_window(config: &Config, gateways: &Gateways, m: &NewMessage) -> Result<(), DialerError> {
    if m.template.is_some() || m.state != State::ToProcess {
        return Ok(());
    }
    let (Some(dialer), Some(number)) = (config.user_dialer(&m.dialer), m.number.as_deref()) else {
        return Ok(());
    };
    if !limits::whatsapp(config, dialer).0 {
        return Ok(());
    }
    let mut last: Option<i64> = None;
    for g in limits::gateways(config, dialer) {
        let Some(window) = gateways.transport(&g.name).and_then(|t| t.window(number)) else {
            return Ok(());
        };
        if window.open {
            return Ok(());
        }
        last = last.max(window.last_inbound_ms);
    }
    let since = match last {
        Some(at) => format!(
            "the customer last wrote {} h ago",
            (crate::now_ms() - at).max(0) / 3_600_000
        ),
        None => "the customer has not written to it".into(),
    };
    Err(DialerError::OutsideWindow {
        number: number.to_string(),
        dialer: dialer.name.clone(),
        since,
    })
}

/// The message a submission makes, or the first rule it breaks.
fn check(config: &Config, s: Submission) -> Result<NewMessage, DialerError> {
    let Some(dialer) = config.user_dialer(&s.dialer) else {
        return Err(DialerError::UnknownDialer {
            name: s.dialer,
            known: config
                .dialers
                .iter()
                .filter(|d| !d.system)
                .map(|d| d.name.clone())
                .collect(),
        });
    };
    if let Some(t) = &s.template {
        t.check().map_err(DialerError::BadTemplate)?;
        if !limits::whatsapp(config, dialer).1 {
            return Err(DialerError::TemplateNeedsWhatsApp {
                dialer: dialer.name.clone(),
            });
        }
    }
    let text = match (&s.template, s.text.is_empty()) {
        (Some(t), true) => t.describe(),
        (None, true) => return Err(DialerError::EmptyText),
        (_, false) => s.text,
    };
    let plan = sms::plan(&text);
    if plan.segments > MAX_SEGMENTS {
        return Err(DialerError::TooManyParts {
            segments: plan.segments,
            encoding: plan.encoding.as_str(),
        });
    }
    // A Dinstar gateway takes at most 670 characters whatever the encoding
    // (reference §5): refuse now rather than fail the message later.
    if let Some((max, gateway)) = text_limit(config, dialer) {
        let length = smsgate_proto::dinstar::wire::text_length(&text);
        if length > max {
            return Err(DialerError::TooLong {
                length,
                max,
                dialer: dialer.name.clone(),
                gateway,
            });
        }
    }
    let priority = s.priority.unwrap_or(dialer.priority);
    if !(MIN_PRIORITY..=MAX_PRIORITY).contains(&priority) {
        return Err(DialerError::BadPriority(priority));
    }
    if let Some(cid) = &s.client_id {
        if cid.is_empty() || cid.len() > MAX_CLIENT_ID || cid.chars().any(char::is_control) {
            return Err(DialerError::BadClientId);
        }
    }
    let number = phone::normalise(&s.to, &config.daemon.default_country).map_err(|e| {
        DialerError::InvalidNumber {
            to: s.to.clone(),
            reason: e.to_string(),
        }
    })?;
    Ok(NewMessage {
        dialer: dialer.name.clone(),
        destination: s.to.trim().to_string(),
        number: Some(number.into_string()),
        text,
        template: s
            .template
            .as_ref()
            .and_then(|t| serde_json::to_string(t).ok()),
        priority,
        client_id: s.client_id,
        import_id: None,
        encoding: plan.encoding.as_str(),
        segments: plan.segments as u32,
        state: State::ToProcess,
    })
}
