//! Files generated from the CLI definition for the .deb: manual pages and
//! shell completions.
//!
//! `smsgate generate-assets DIR` (a hidden subcommand) calls [`write_assets`]
//! with the real `clap::Command`; `packaging/build-deb.sh` runs it into
//! `target/assets`, and `[package.metadata.deb]` in Cargo.toml picks the files
//! up from there. Generating them from the binary keeps the man page and the
//! completions in step with the options the binary really accepts.

use std::fs;
use std::io::{self, Write};
use std::path::Path;

use clap_complete::Shell;

/// Extra sections appended to the top-level page `smsgate.1`: what clap
/// cannot know (files, exit status, the systemd side).
const MAIN_PAGE_EXTRA: &str = r#".SH "EXIT STATUS"
.TP
\fB0\fR
Success.
.TP
\fB78\fR
The configuration file is invalid (EX_CONFIG). The systemd unit does not
restart the daemon on this status (RestartPreventExitStatus=78).
.TP
\fBother\fR
Any other failure.
.SH FILES
.TP
\fI/etc/smsgate/smsgate.toml\fR
The configuration (gateways, channels, dialers, campaigns, API tokens). It is
owned by root, group smsgate, mode 0640, because it holds secrets.
.TP
\fI/var/lib/smsgate/\fR
The state directory: the message store (SQLite). Created by systemd
(StateDirectory=smsgate); kept when the package is removed, deleted on purge.
.TP
\fI/usr/share/doc/smsgate/examples/\fR
The annotated default configuration and a demo configuration that uses the
built-in simulators.
.TP
\fI/usr/lib/udev/rules.d/70-smsgate.rules\fR
Keeps ModemManager away from the GSM modems smsgate drives. Add local modems in
\fI/etc/udev/rules.d/71-smsgate-local.rules\fR.
.SH "SYSTEMD"
The daemon runs as the unit \fBsmsgate.service\fR, as the system user
\fBsmsgate\fR (member of \fBdialout\fR for the serial modems).
.PP
.nf
systemctl enable \-\-now smsgate
systemctl reload smsgate      # re\-read the configuration (SIGHUP)
systemctl status smsgate
journalctl \-u smsgate
.fi
.SH "SEE ALSO"
\fBsystemctl\fR(1), \fBjournalctl\fR(1), \fBsystemd.exec\fR(5)
"#;

/// Write the manual pages and shell completions for `cmd` under `dir`:
///
/// - `dir/smsgate.1` and one `dir/smsgate-<subcommand>.1` per visible
///   subcommand (nested ones too, git style);
/// - `dir/completions/smsgate.bash`, `dir/completions/_smsgate` (zsh) and
///   `dir/completions/smsgate.fish`.
///
/// Hidden subcommands (such as `generate-assets` itself) get no page.
/// Directories are created as needed; existing files are overwritten.
pub fn write_assets(cmd: clap::Command, dir: &Path) -> io::Result<()> {
    fs::create_dir_all(dir)?;
    let bin = cmd.get_name().to_owned();

    // Pages for the subcommands; this also writes a plain top-level page,
    // which is replaced below by the one with the extra sections.
    clap_mangen::generate_to(cmd.clone(), dir)?;

    let mut top = cmd.clone().disable_help_subcommand(true);
    top.build();
    let mut page = Vec::new();
    clap_mangen::Man::new(top).render(&mut page)?;
    page.extend_from_slice(MAIN_PAGE_EXTRA.as_bytes());
    write_file(&dir.join(format!("{bin}.1")), &page)?;

    let completions = dir.join("completions");
    fs::create_dir_all(&completions)?;
    for (shell, file) in [
        (Shell::Bash, format!("{bin}.bash")),
        (Shell::Zsh, format!("_{bin}")),
        (Shell::Fish, format!("{bin}.fish")),
    ] {
        let mut cmd = cmd.clone();
        let mut buf = Vec::new();
        clap_complete::generate(shell, &mut cmd, &bin, &mut buf);
        write_file(&completions.join(file), &buf)?;
    }
    Ok(())
}

fn write_file(path: &Path, data: &[u8]) -> io::Result<()> {
    let mut f = fs::File::create(path)?;
    f.write_all(data)?;
    f.flush()
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{Arg, Command};

    fn sample() -> Command {
        Command::new("smsgate")
            .about("test command")
            .version("1.2.3")
            .subcommand(
                Command::new("run")
                    .about("run the daemon")
                    .arg(Arg::new("config").long("config")),
            )
            .subcommand(Command::new("check-config").arg(Arg::new("FILE")))
            .subcommand(
                Command::new("generate-assets")
                    .hide(true)
                    .arg(Arg::new("DIR")),
            )
    }

    #[test]
    fn writes_pages_and_completions() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("assets");
        write_assets(sample(), &dir).unwrap();

        let main = fs::read_to_string(dir.join("smsgate.1")).unwrap();
        assert!(
            main.starts_with(".ie") || main.contains(".TH smsgate 1"),
            "{main}"
        );
        assert!(main.contains("/etc/smsgate/smsgate.toml"));
        assert!(main.contains("run"));
        assert!(dir.join("smsgate-run.1").is_file());
        assert!(dir.join("smsgate-check-config.1").is_file());
        assert!(!dir.join("smsgate-generate-assets.1").exists());

        let bash = fs::read_to_string(dir.join("completions/smsgate.bash")).unwrap();
        assert!(bash.contains("check-config"));
        assert!(dir.join("completions/_smsgate").is_file());
        assert!(dir.join("completions/smsgate.fish").is_file());
    }

    #[test]
    fn is_idempotent() {
        let tmp = tempfile::tempdir().unwrap();
        write_assets(sample(), tmp.path()).unwrap();
        let first = fs::read(tmp.path().join("smsgate.1")).unwrap();
        write_assets(sample(), tmp.path()).unwrap();
        assert_eq!(first, fs::read(tmp.path().join("smsgate.1")).unwrap());
    }
}
