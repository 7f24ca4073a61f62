//! What a valid config can still get wrong about its surroundings: files
//! holding secrets that other users can read, an API that sends tokens
//! over the network in clear, and a DWG listener anyone can reach. `check-config` prints these and the daemon
//! logs them at start and on reload; neither refuses the file.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use super::{Config, GatewaySettings};

impl Config {
    /// Every warning, in plain words, each naming the file or key to fix.
    pub fn warnings(&self) -> Vec<String> {
        let mut out = self.notes.clone();
        if !self.path.as_os_str().is_empty() {
            mode_warning(
                &self.path,
                "the config file (it holds the API tokens)",
                &mut out,
            );
        }
        for f in &self.secret_files {
            mode_warning(f, "a secret file", &mut out);
        }
        let ip = self.api.listen.ip();
        if !ip.is_loopback() && self.api.tls.is_none() {
            out.push(format!(
                "[api] listen = \"{}\" reaches beyond this machine without TLS: bearer tokens and messages cross the network in clear; set tls_cert and tls_key, or listen on 127.0.0.1",
                self.api.listen
            ));
        }
        for g in &self.gateways {
            if let GatewaySettings::Http(s) = &g.settings {
                let callbacks =
                    s.inbound.is_some() || s.reports.as_ref().is_some_and(|r| r.id_field.is_some());
                if g.enabled && callbacks && s.push_allow.is_empty() {
                    out.push(format!(
                        "[[gateway]] {:?}: [gateway.inbound] or [gateway.reports] expects the provider's callbacks, but push_allow is empty: every callback is refused (403); set push_allow = [\"<the provider's addresses>\"]",
                        g.name
                    ));
                }
                continue;
            }
            let GatewaySettings::DinstarDwg(s) = &g.settings else {
                continue;
            };
            if g.enabled && !s.listen.ip().is_loopback() && s.allow.is_empty() {
                out.push(format!(
                    "[[gateway]] {:?}: listen = \"{}\" takes connections from any address and allow is empty: whoever reaches the port can try passwords and, with the right one, inject messages; set allow = [\"<the gateway's address>\"]",
                    g.name, s.listen
                ));
            }
        }
        if let Some(stop) = unit_stop_timeout(UNIT_FILES, DROP_IN_DIRS) {
            let drain = self.daemon.drain_timeout;
            if drain + STOP_MARGIN > stop {
                out.push(format!(
                    "[daemon] drain_timeout_s = {} leaves less than {} s before systemd's TimeoutStopSec={} s kills smsgate mid-drain; lower drain_timeout_s or raise TimeoutStopSec in a drop-in (systemctl edit smsgate)",
                    drain.as_secs(),
                    STOP_MARGIN.as_secs(),
                    stop.as_secs()
                ));
            }
        }
        out
    }
}

/// What a stop takes beyond the drain: closing the store, a last checkpoint.
const STOP_MARGIN: Duration = Duration::from_secs(5);

/// Where systemd reads the unit, most important first, and its drop-ins.
const UNIT_FILES: &[&str] = &[
    "/etc/systemd/system/smsgate.service",
    "/usr/lib/systemd/system/smsgate.service",
    "/lib/systemd/system/smsgate.service",
];
const DROP_IN_DIRS: &[&str] = &[
    "/usr/lib/systemd/system/smsgate.service.d",
    "/run/systemd/system/smsgate.service.d",
    "/etc/systemd/system/smsgate.service.d",
];

/// The installed unit's stop timeout (`TimeoutStopSec=`, or `TimeoutSec=`),
/// drop-ins applied in systemd's order; None when no unit is installed
/// (a development machine) or it says `infinity`.
fn unit_stop_timeout(units: &[&str], drop_in_dirs: &[&str]) -> Option<Duration> {
    let unit = units.iter().find_map(|p| std::fs::read_to_string(p).ok())?;
    let mut texts = vec![unit];
    for dir in drop_in_dirs {
        let mut confs: Vec<_> = std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "conf"))
            .collect();
        confs.sort();
        texts.extend(confs.iter().filter_map(|p| std::fs::read_to_string(p).ok()));
    }
    let mut found = None;
    for text in &texts {
        for line in text.lines().map(str::trim) {
            let value = line
                .strip_prefix("TimeoutStopSec=")
                .or_else(|| line.strip_prefix("TimeoutSec="));
            if let Some(v) = value {
                found = Some(v.trim().to_string());
            }
        }
    }
    // systemd's default when the unit says nothing.
    parse_timespan(found.as_deref().unwrap_or("90s"))
}

/// A systemd time span as units write it: "30", "30s", "1min 30s", "2m".
fn parse_timespan(s: &str) -> Option<Duration> {
    if s.eq_ignore_ascii_case("infinity") {
        return None;
    }
    let mut total = 0u64;
    let mut number = String::new();
    let mut unit = String::new();
    let mut flush = |number: &mut String, unit: &mut String| -> Option<()> {
        if number.is_empty() {
            return if unit.is_empty() { Some(()) } else { None };
        }
        let n: u64 = number.parse().ok()?;
        let factor = match unit.as_str() {
            "" | "s" | "sec" | "second" | "seconds" => 1,
            "m" | "min" | "minute" | "minutes" => 60,
            "h" | "hr" | "hour" | "hours" => 3600,
            "ms" | "msec" => 0,
            _ => return None,
        };
        total += n * factor;
        number.clear();
        unit.clear();
        Some(())
    };
    for c in s.chars() {
        if c.is_ascii_digit() {
            if !unit.is_empty() {
                flush(&mut number, &mut unit)?;
            }
            number.push(c);
        } else if c.is_ascii_alphabetic() {
            unit.push(c);
        } else if c == ' ' {
            flush(&mut number, &mut unit)?;
        } else {
            return None;
        }
    }
    flush(&mut number, &mut unit)?;
    Some(Duration::from_secs(total))
}

fn mode_warning(path: &Path, what: &str, out: &mut Vec<String>) {
    let Ok(meta) = std::fs::metadata(path) else {
        return;
    };
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o007 != 0 {
        out.push(format!(
            "{} is {what} and other users can {} it (mode {mode:04o}); run: chmod o-rwx {}",
            path.display(),
            if mode & 0o002 != 0 {
                "read or change"
            } else {
                "read"
            },
            path.display()
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dwg_config(keys: &str) -> Result<Config, super::super::ConfigError> {
        let text = format!(
            "[daemon]\nstate_dir = \"/tmp/x\"\n[[gateway]]\nname = \"dwg1\"\nkind = \"dinstar-dwg\"\nports = 4\nuser = \"u\"\npassword = \"p\"\n{keys}\n"
        );
        Config::from_source(Path::new(""), &text)
    }

    fn dwg_warnings(keys: &str) -> Vec<String> {
        dwg_config(keys)
            .unwrap()
            .warnings()
            .into_iter()
            .filter(|w| w.contains("dwg1"))
            .collect()
    }

    #[test]
    fn a_dwg_listener_beyond_loopback_without_allow_is_warned_about() {
        let w = dwg_warnings("listen = \"0.0.0.0:9000\"");
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(w[0].contains("and allow is empty"), "{w:?}");
        assert!(dwg_warnings("listen = \"[::]:9000\"").len() == 1);
        assert!(dwg_warnings("listen = \"0.0.0.0:9000\"\nallow = [\"192.168.1.50\"]").is_empty());
        assert!(dwg_warnings("listen = \"127.0.0.1:9000\"").is_empty());
    }

    #[test]
    fn dwg_allow_takes_addresses_and_networks() {
        let c = dwg_config(
            "listen = \"0.0.0.0:9000\"\nallow = [\"192.168.1.50\", \"10.0.0.0/8\", \"2001:db8::/32\", \"::ffff:172.16.0.1\"]",
        )
        .unwrap();
        let super::super::GatewaySettings::DinstarDwg(s) = &c.gateways[0].settings else {
            panic!("dwg settings");
        };
        let ip = |s: &str| s.parse::<std::net::IpAddr>().unwrap();
        assert!(s.allow.contains(ip("192.168.1.50")));
        assert!(!s.allow.contains(ip("192.168.1.51")));
        assert!(s.allow.contains(ip("10.200.3.4")));
        assert!(s.allow.contains(ip("2001:db8:1::7")));
        assert!(!s.allow.contains(ip("2001:db9::1")));
        // A v4 peer on a dual-stack socket, and a v4-mapped entry.
        assert!(s.allow.contains(ip("::ffff:192.168.1.50")));
        assert!(s.allow.contains(ip("172.16.0.1")));
        assert_eq!(
            s.allow.to_string(),
            "192.168.1.50, 10.0.0.0/8, 2001:db8::/32, 172.16.0.1"
        );
    }

    #[test]
    fn dwg_allow_entries_are_checked_where_written() {
        let err = dwg_config(
            "listen = \"0.0.0.0:9000\"\nallow = [\"192.168.1.50\", \"gateway.local\",\n  \"192.168.1.50/24\"]",
        )
        .expect_err("refused")
        .to_string();
        // Line 10 holds the list; "gateway.local" starts at column 26.
        assert!(
            err.contains(":10:26: allow: \"gateway.local\" is not an IP address"),
            "{err}"
        );
        assert!(
            err.contains(":11:3: allow: \"192.168.1.50/24\" has bits set past its prefix: write 192.168.1.0/24"),
            "{err}"
        );
        let err = dwg_config("listen = \"0.0.0.0:9000\"\npush_allow = [\"192.0.2.1\"]")
            .expect_err("refused")
            .to_string();
        assert!(
            err.contains("`push_allow` is a key of gateway kind dinstar"),
            "{err}"
        );
    }

    #[test]
    fn time_spans_as_units_write_them() {
        assert_eq!(parse_timespan("30s"), Some(Duration::from_secs(30)));
        assert_eq!(parse_timespan("30"), Some(Duration::from_secs(30)));
        assert_eq!(parse_timespan("1min 30s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_timespan("2m"), Some(Duration::from_secs(120)));
        assert_eq!(parse_timespan("infinity"), None);
        assert_eq!(parse_timespan("soon"), None);
    }

    #[test]
    fn the_last_stop_timeout_wins_drop_ins_included() {
        let dir = tempfile::tempdir().unwrap();
        let unit = dir.path().join("smsgate.service");
        std::fs::write(&unit, "[Service]\nTimeoutStopSec=30s\n").unwrap();
        let drop_ins = dir.path().join("smsgate.service.d");
        std::fs::create_dir(&drop_ins).unwrap();
        let u = unit.to_str().unwrap();
        let d = drop_ins.to_str().unwrap();
        assert_eq!(unit_stop_timeout(&[u], &[d]), Some(Duration::from_secs(30)));
        std::fs::write(
            drop_ins.join("50-stop.conf"),
            "[Service]\nTimeoutStopSec=2min\n",
        )
        .unwrap();
        assert_eq!(
            unit_stop_timeout(&[u], &[d]),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            unit_stop_timeout(&["/nonexistent/smsgate.service"], &[d]),
            None
        );
    }
}
