//! What a valid config can still get wrong about its surroundings: files
//! holding secrets that other users can read, and an API that sends tokens
//! over the network in clear. `check-config` prints these and the daemon
//! logs them at start and on reload; neither refuses the file.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use super::Config;

impl Config {
    /// Every warning, in plain words, each naming the file or key to fix.
    pub fn warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
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
        out
    }
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
