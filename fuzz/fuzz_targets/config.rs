//! The config loader (`Config::from_source`): any text, as the file
//! `/nonexistent/smsgate.toml`, is a config or a list of problems, never a
//! panic; every problem is placed on a line of the text, and an invalid
//! file always says at least one thing.
//!
//! The loader reads secret files a config names (`token_file`,
//! `password_file`, `pin_file`, `secret_file`): a text naming any key that
//! ends in `_file` is skipped, so the fuzzer never reads files.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use smsgate::config::{Config, ConfigError};

fuzz_target!(|text: &str| {
    if let Ok(table) = text.parse::<toml::Table>()
        && names_a_file(&toml::Value::Table(table))
    {
        return;
    }
    match Config::from_source(Path::new("/nonexistent/smsgate.toml"), text) {
        Ok(config) => {
            for d in &config.dialers {
                let _ = config.dialer(&d.name);
            }
        }
        Err(ConfigError::Invalid(diagnostics)) => {
            assert!(!diagnostics.problems.is_empty());
            let lines = text.matches('\n').count() + 1;
            for p in &diagnostics.problems {
                assert!(p.line >= 1 && p.line <= lines, "line {} of {lines}", p.line);
                assert!(p.column >= 1);
            }
            let _ = diagnostics.to_string();
        }
        Err(e) => panic!("no file is read: {e}"),
    }
});

fn names_a_file(v: &toml::Value) -> bool {
    match v {
        toml::Value::Table(t) => t
            .iter()
            .any(|(k, v)| k.ends_with("_file") || names_a_file(v)),
        toml::Value::Array(a) => a.iter().any(names_a_file),
        _ => false,
    }
}
