//! Streaming imports into the store: bulk message files and DNCR lists.
//!
//! The file (staged whole by the API beforehand, so the writer never waits
//! on the network) is parsed on the calling (blocking) thread while the store's
//! writer inserts the rows as they come, inside one transaction: a file is
//! never held in memory, and an import is all or nothing. At the first
//! refused line the writer rolls back at once (other writes resume), while
//! parsing goes on to report every refused line.

use std::collections::BTreeMap;
use std::io::BufRead;
use std::sync::mpsc;

use serde::Serialize;

use super::DialerError;
use super::dncr_import::dncr_import;
use super::import::{ImportRules, LineError, bulk_import, check_file_name};
use crate::config::Config;
use crate::store::spool::{NewMessage, State};
use crate::store::{Store, StoreError, dncr, now_ms, spool};
use smsgate_proto::sms::phone;

/// At most this many refused lines are listed; the count covers them all.
pub const MAX_REPORTED_ERRORS: usize = 1000;
/// Batches in flight between the parser and the writer.
const PIPE: usize = 4;

#[derive(Debug, Clone, Serialize)]
pub struct ImportSummary {
    pub import_id: i64,
    pub filename: String,
    pub lines: u64,
    /// Messages queued (TO_PROCESS).
    pub queued: u64,
    /// Messages whose number cannot be a phone number (INVALID, "others").
    pub invalid: u64,
    /// Messages per dialer.
    pub dialers: BTreeMap<String, u64>,
}

/// Who imports a DNCR list and whether it is a national registry's (as
/// Uruguay's "No Llame"): the consent history of its numbers names both.
#[derive(Debug, Clone, Default)]
pub struct DncrOrigin {
    /// `api:<token name>`.
    pub who: Option<String>,
    pub registry: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct DncrSummary {
    pub import_id: i64,
    pub filename: String,
    /// The national registry the list is, when the upload said so.
    pub registry: Option<String>,
    pub lines: u64,
    pub entries: u64,
}

/// Rows travel in batches: one hand-over between threads per batch, not
/// per row.
const BATCH: usize = 4096;

enum Pipe<T> {
    Rows(Vec<T>),
    Done(u64),
    Abort,
}

/// Collects refused lines, keeping the first few hundred for the report.
#[derive(Default)]
struct Refused {
    errors: Vec<LineError>,
    count: u64,
}

impl Refused {
    fn add(&mut self, e: LineError) {
        self.count += 1;
        if self.errors.len() < MAX_REPORTED_ERRORS {
            self.errors.push(e);
        }
    }
}

/// Imports a bulk message file (`dialer;destination;message;priority`).
/// Blocking: run it on a blocking thread.
pub fn import_messages(
    store: &Store,
    config: &Config,
    filename: &str,
    reader: impl BufRead,
) -> Result<ImportSummary, DialerError> {
    check_file_name(filename)?;
    let rules = rules(config);
    let country = config.daemon.default_country.clone();
    let (tx, rx) = mpsc::sync_channel::<Pipe<NewMessage>>(PIPE);
    let name = filename.to_string();
    let progress = store.writer_progress();
    let writer = store.write_detached(move |t| {
        let import_id = dncr::begin_import(t, "messages", &name)?;
        let now = now_ms();
        let mut summary = ImportSummary {
            import_id,
            filename: name,
            lines: 0,
            queued: 0,
            invalid: 0,
            dialers: BTreeMap::new(),
        };
        loop {
            match rx.recv() {
                Ok(Pipe::Rows(rows)) => {
                    spool::insert_many(t, &rows, import_id, now)?;
                    progress();
                    for m in rows {
                        if m.state == State::Invalid {
                            summary.invalid += 1;
                        } else {
                            summary.queued += 1;
                        }
                        match summary.dialers.get_mut(&m.dialer) {
                            Some(n) => *n += 1,
                            None => {
                                summary.dialers.insert(m.dialer, 1);
                            }
                        }
                    }
                }
                Ok(Pipe::Done(lines)) => {
                    summary.lines = lines;
                    dncr::finish_import(t, import_id, lines, summary.queued + summary.invalid)?;
                    return Ok(summary);
                }
                Ok(Pipe::Abort) | Err(_) => {
                    return Err(StoreError::Conflict("import refused".into()));
                }
            }
        }
    })?;

    let rows = bulk_import(reader, &rules, |d| config.user_dialer(d).is_some());
    let to_row = |row: super::import::ImportRow| {
        let number = phone::normalise(&row.destination, &country).ok();
        let plan = smsgate_proto::sms::plan(&row.message);
        NewMessage {
            state: if number.is_some() {
                State::ToProcess
            } else {
                State::Invalid
            },
            number: number.map(|n| n.into_string()),
            dialer: row.dialer,
            destination: row.destination,
            text: row.message,
            template: row
                .template
                .as_ref()
                .and_then(|t| serde_json::to_string(t).ok()),
            priority: i64::from(row.priority),
            client_id: None,
            import_id: None,
            encoding: plan.encoding.as_str(),
            segments: plan.segments as u32,
        }
    };
    feed(rows, tx, writer, to_row)
}

/// Imports a DNCR list (`phone;dialer;`, an empty dialer meaning all).
/// Blocking: run it on a blocking thread.
pub fn import_dncr(
    store: &Store,
    config: &Config,
    filename: &str,
    origin: DncrOrigin,
    reader: impl BufRead,
) -> Result<DncrSummary, DialerError> {
    check_file_name(filename)?;
    let rules = rules(config);
    let (tx, rx) = mpsc::sync_channel::<Pipe<super::dncr_import::DncrRow>>(PIPE);
    let name = filename.to_string();
    let progress = store.writer_progress();
    let writer = store.write_detached(move |t| {
        let import_id = dncr::begin_import(t, "dncr", &name)?;
        dncr::describe_import(
            t,
            import_id,
            origin.who.as_deref(),
            origin.registry.as_deref(),
        )?;
        // The entries' source names the registry, else the file.
        let source = match &origin.registry {
            Some(r) => format!("registry:{r}"),
            None => name.clone(),
        };
        let mut entries = 0u64;
        loop {
            match rx.recv() {
                Ok(Pipe::Rows(rows)) => {
                    entries += dncr::upsert_batch(
                        t,
                        rows.iter()
                            .map(|r| (r.key.as_str(), r.dialer.as_deref(), r.phone.as_str())),
                        &source,
                        import_id,
                    )?;
                    progress();
                }
                Ok(Pipe::Done(lines)) => {
                    dncr::finish_import(t, import_id, lines, entries)?;
                    return Ok(DncrSummary {
                        import_id,
                        filename: name,
                        registry: origin.registry,
                        lines,
                        entries,
                    });
                }
                Ok(Pipe::Abort) | Err(_) => {
                    return Err(StoreError::Conflict("import refused".into()));
                }
            }
        }
    })?;
    let country = config.daemon.default_country.clone();
    let rows = dncr_import(reader, &rules, &country, |d| {
        config.user_dialer(d).is_some()
    })
    .keys_later();
    let to_row = |mut row: super::dncr_import::DncrRow| {
        row.key = phone::dncr_key(&row.phone, &country);
        row
    };
    feed(rows, tx, writer, to_row)
}

/// Something a parser yields for one line, with its line number.
trait Numbered {
    fn line(&self) -> u64;
}

impl Numbered for super::import::ImportRow {
    fn line(&self) -> u64 {
        self.line
    }
}

impl Numbered for super::dncr_import::DncrRow {
    fn line(&self) -> u64 {
        self.line
    }
}

/// Drives a parser: accepted rows go to the writer in batches; at the first
/// refused line the writer is told to roll back, and parsing goes on to
/// collect every refused line.
fn feed<R: Numbered + Send, T: Send, S>(
    parsed: impl Iterator<Item = Result<R, LineError>>,
    tx: mpsc::SyncSender<Pipe<T>>,
    writer: tokio::sync::oneshot::Receiver<Result<S, StoreError>>,
    to_row: impl Fn(R) -> T + Sync,
) -> Result<S, DialerError> {
    let mut refused = Refused::default();
    let mut lines = 0u64;
    let mut piping = true;
    let mut read_error = None;
    let mut raw = Vec::with_capacity(BATCH);
    let mut batch = Vec::new();
    for item in parsed {
        match item {
            Ok(r) => {
                lines = r.line();
                if !piping {
                    continue;
                }
                raw.push(r);
                if raw.len() == BATCH {
                    let rows = convert(&to_row, std::mem::take(&mut raw));
                    if tx.send(Pipe::Rows(rows)).is_err() {
                        piping = false;
                    }
                }
            }
            Err(e) => {
                lines = e.line;
                if e.rule.code() == "read_error" {
                    read_error = Some(e.message.clone());
                }
                if piping {
                    let _ = tx.send(Pipe::Abort);
                    piping = false;
                }
                refused.add(e);
            }
        }
    }
    if piping {
        batch = convert(&to_row, raw);
    }
    finish(tx, writer, piping, batch, lines, refused, read_error)
}

/// Turns a batch of accepted lines into rows for the writer. The work is
/// costly (phone-number parsing, segment planning), so each batch is shared
/// with a second thread: the import runs on two cores while the writer
/// inserts on a third, or shares them.
fn convert<R: Send, T: Send>(f: &(impl Fn(R) -> T + Sync), raw: Vec<R>) -> Vec<T> {
    if raw.len() < 64 {
        return raw.into_iter().map(f).collect();
    }
    let mut first = raw;
    let second = first.split_off(first.len() / 2);
    std::thread::scope(|scope| {
        let helper = scope.spawn(|| second.into_iter().map(f).collect::<Vec<T>>());
        let mut rows: Vec<T> = first.into_iter().map(f).collect();
        match helper.join() {
            Ok(rest) => rows.extend(rest),
            // The conversion is pure code on parsed text; a panic there is
            // a bug, and the import must not go on without those rows.
            Err(panic) => std::panic::resume_unwind(panic),
        }
        rows
    })
}

fn rules(config: &Config) -> ImportRules {
    ImportRules {
        forbidden: config.imports.forbidden_characters.clone(),
        text_limits: config
            .dialers
            .iter()
            .filter_map(|d| {
                super::limits::text_limit(config, d).map(|limit| (d.name.clone(), limit))
            })
            .collect(),
        ..ImportRules::default()
    }
}

#[allow(clippy::too_many_arguments)]
fn finish<T, S>(
    tx: mpsc::SyncSender<Pipe<T>>,
    writer: tokio::sync::oneshot::Receiver<Result<S, StoreError>>,
    piping: bool,
    batch: Vec<T>,
    lines: u64,
    refused: Refused,
    read_error: Option<String>,
) -> Result<S, DialerError> {
    if piping && !batch.is_empty() {
        let _ = tx.send(Pipe::Rows(batch));
    }
    if piping {
        let message = if lines == 0 {
            Pipe::Abort
        } else {
            Pipe::Done(lines)
        };
        let _ = tx.send(message);
    }
    drop(tx);
    let committed = writer.blocking_recv().map_err(|_| StoreError::Closed)?;
    if let Some(reason) = read_error {
        if reason.contains("length limit exceeded") {
            return Err(DialerError::TooLarge);
        }
        return Err(DialerError::Read(reason));
    }
    if refused.count > 0 {
        return Err(DialerError::Lines {
            errors: refused.errors,
            count: refused.count,
        });
    }
    if lines == 0 {
        return Err(DialerError::Empty);
    }
    Ok(committed?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dialer_through_a_dinstar_gateway_or_a_group_holding_one_gets_its_text_limit() {
        let text = r#"
[[gateway]]
name = "gw1"
kind = "dinstar"
ports = 4
url = "http://127.0.0.1:9"
user = "admin"
password = "secret"

[[gateway]]
name = "sim1"
kind = "sim"
ports = 2

[[channel_group]]
name = "main"
primary = ["sim1:0"]
fallback = ["gw1:0.1"]

[[dialer]]
name = "direct"
provider = "gw1"

[[dialer]]
name = "grouped"
provider = "main"

[[dialer]]
name = "simulated"
provider = "sim1"
"#;
        let config = Config::from_source(std::path::Path::new("t.toml"), text).unwrap();
        let limits = rules(&config).text_limits;
        assert_eq!(limits.get("direct"), Some(&(670, "gw1".to_string())));
        assert_eq!(limits.get("grouped"), Some(&(670, "gw1".to_string())));
        assert_eq!(limits.get("simulated"), None);
    }
}
