//! Opening a session: waking the modem, the start-up sequence, the SIM and
//! network checks, and the health they add up to. Its own file because it
//! is the modem's configuration dialogue (PIN handling, PDU mode, CNMI
//! choice), separate from moving messages; the periodic poll reruns it.

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};

use super::super::framing::FinalResult;
use super::{Broken, ESC, Session, cops_operator, creg_stat, csq_rssi};
use crate::transport::PortHealth;

impl<T: AsyncRead + AsyncWrite + Send + 'static> Session<'_, T> {
    /// ESC closes a prompt a crash left open (Telit); CR ends any partial
    /// line; then `AT` until the modem answers (SIM800 autobaud locks on the
    /// first `AT`).
    pub(super) async fn wake_up(&mut self) -> Result<(), Broken> {
        self.write(&[ESC, b'\r']).await?;
        let t = self.timeout().min(Duration::from_secs(2));
        for _ in 0..5 {
            match self.command("AT", t).await {
                Ok(r) if r.result.is_some() => return Ok(()),
                Ok(_) | Err(Broken::Timeout(..)) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(Broken::NoAnswer)
    }

    /// The start-up sequence (at-modems.md §1.2).
    pub(super) async fn setup(&mut self) -> Result<(), Broken> {
        let t = self.timeout();
        // Echo off; the codec drops echoes anyway.
        self.command("ATE0", t).await?;
        // Numeric +CME/+CMS errors; the codec also maps the words of
        // +CMEE=2 back to numbers.
        self.command("AT+CMEE=1", t).await?;
        if let Ok(r) = self.command("AT+CGMI", t).await {
            let v = r.lines.first().cloned();
            if let Ok(mut i) = self.m.info.lock() {
                i.manufacturer = v;
            }
        }
        if let Ok(r) = self.command("AT+CGMM", t).await {
            let v = r.lines.first().cloned();
            if let Ok(mut i) = self.m.info.lock() {
                i.model = v;
            }
        }
        self.check_sim().await?;
        if !self.sim_ready {
            self.publish_health();
            return Ok(());
        }
        self.check_network().await?;
        // PDU mode is required; a modem still booting refuses it (SIM800
        // before "SMS Ready"): try again at the next poll.
        let r = self.command("AT+CMGF=0", t).await?;
        if !r.ok() {
            tracing::warn!(gateway = %self.m.name, port = 0u32, answer = %r.result_text(), "the modem refuses PDU mode (AT+CMGF=0); trying again later");
            self.needs_setup = true;
            self.sim_reason = "the modem refuses PDU mode".into();
            self.publish_health();
            return Ok(());
        }
        // Service 0: +CMT/+CDS need no AT+CNMA.
        self.command("AT+CSMS=0", t).await?;
        // Read, write and receive on the SIM when the modem allows it.
        let r = self.command("AT+CPMS=\"SM\",\"SM\",\"SM\"", t).await?;
        self.read_mem = r.ok().then(|| "SM".to_string());
        // New messages as +CMTI (stored, so nothing is lost if we are slow);
        // status reports directly as +CDS (ds=1; Quectel's +CDSI names the
        // wrong memory, asterisk-chan-quectel PR#75), else stored as +CDSI,
        // else none. With no CNMI at all, the SIM is listed at every poll.
        self.no_cnmi = true;
        for cnmi in ["2,1,0,1,0", "2,1,0,2,0", "2,1,0,0,0", "2,1"] {
            if self.command(&format!("AT+CNMI={cnmi}"), t).await?.ok() {
                self.no_cnmi = false;
                break;
            }
        }
        if self.no_cnmi {
            tracing::warn!(gateway = %self.m.name, port = 0u32, "the modem takes no AT+CNMI setting; received messages are found by polling");
        }
        if let Some(smsc) = self.m.settings.smsc.clone() {
            let toa = if smsc.starts_with('+') { 145 } else { 129 };
            let r = self
                .command(&format!("AT+CSCA=\"{smsc}\",{toa}"), t)
                .await?;
            if !r.ok() {
                tracing::warn!(gateway = %self.m.name, port = 0u32, answer = %r.result_text(), "the modem refused the configured SMSC");
            }
        }
        if let Ok(r) = self.command("AT+CIMI", t).await {
            self.imsi = r
                .lines
                .iter()
                .find(|l| l.chars().all(|c| c.is_ascii_digit()) && l.len() >= 6)
                .cloned();
        }
        self.needs_setup = false;
        self.sim_reason.clear();
        self.list_stored().await?;
        self.publish_health();
        Ok(())
    }

    pub(super) async fn check_sim(&mut self) -> Result<(), Broken> {
        let t = self.timeout().max(Duration::from_secs(1));
        for attempt in 0..3 {
            let r = self.command_early("AT+CPIN?", t * 3, "+CPIN:").await?;
            let state = r
                .value("+CPIN:")
                .map(|v| v.trim_matches('"').to_ascii_uppercase());
            match (state.as_deref(), &r.result) {
                (Some("READY"), _) => {
                    self.sim_ready = true;
                    self.sim_reason.clear();
                    return Ok(());
                }
                (Some("SIM PIN"), _) => {
                    self.sim_ready = false;
                    let Some(pin) = self.m.settings.pin.clone() else {
                        self.sim_reason = "the SIM asks for a PIN and none is configured".into();
                        return Ok(());
                    };
                    if self.m.pin_refused {
                        self.sim_reason = "the SIM refused the configured PIN; it is not sent again until the config changes".into();
                        return Ok(());
                    }
                    tracing::info!(gateway = %self.m.name, port = 0u32, "sending the SIM PIN");
                    let cmd = format!("AT+CPIN=\"{}\"", pin.expose());
                    let r = self.command_secret(&cmd, t * 3).await?;
                    if !r.ok() {
                        // Never retry a PIN (TinyGSM #189): each try counts.
                        self.m.pin_refused = true;
                        tracing::error!(gateway = %self.m.name, port = 0u32, answer = %r.result_text(), "the SIM refused the PIN; not sending it again");
                        self.sim_reason = "the SIM refused the configured PIN".into();
                        return Ok(());
                    }
                    // The SIM needs a moment after the PIN.
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                }
                (Some(other), _) => {
                    self.sim_ready = false;
                    self.sim_reason = format!("the SIM is locked ({other}); it needs a technician");
                    tracing::error!(gateway = %self.m.name, port = 0u32, state = %other, "SIM locked");
                    return Ok(());
                }
                (None, Some(FinalResult::Cme(c))) if c.code == Some(14) && attempt < 2 => {
                    // SIM busy: retry after a moment (python-gsmmodem #11).
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
                (None, Some(FinalResult::Cme(c))) => {
                    self.sim_ready = false;
                    self.sim_reason = match c.code {
                        Some(10) => "no SIM card".into(),
                        Some(13) | Some(15) => "SIM failure".into(),
                        _ => format!("the SIM cannot be read (+CME ERROR: {c})"),
                    };
                    return Ok(());
                }
                _ => {
                    self.sim_ready = false;
                    self.sim_reason = format!("the SIM state cannot be read ({})", r.result_text());
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    pub(super) async fn check_network(&mut self) -> Result<(), Broken> {
        let t = self.timeout();
        let r = self.command("AT+CREG?", t).await?;
        self.registered = r
            .value("+CREG:")
            .and_then(creg_stat)
            .map(|s| s == 1 || s == 5);
        let r = self.command("AT+CSQ", t).await?;
        self.signal = r.value("+CSQ:").and_then(csq_rssi);
        let r = self.command("AT+COPS?", t).await?;
        let operator = r.value("+COPS:").and_then(cops_operator);
        let changed = self
            .m
            .info
            .lock()
            .map(|mut i| {
                let changed = i.operator != operator;
                i.operator = operator.clone();
                changed
            })
            .unwrap_or(false);
        if changed {
            tracing::info!(gateway = %self.m.name, port = 0u32, operator = ?operator, "operator");
        }
        Ok(())
    }

    pub(super) fn publish_health(&mut self) {
        let (usable, reason) = if !self.sim_ready || !self.sim_reason.is_empty() {
            (false, self.sim_reason.clone())
        } else if self.registered == Some(false) {
            (false, "not registered on the network".to_string())
        } else {
            (true, String::new())
        };
        let h = PortHealth {
            usable,
            reason,
            sim: Some(self.sim_ready),
            imsi: self.imsi.clone(),
            number: None,
            registered: self.registered,
            signal: self.signal,
            operator: self.m.info.lock().ok().and_then(|i| i.operator.clone()),
        };
        self.m.set_health(h);
    }
}
