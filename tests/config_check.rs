//! `smsgate check-config` on the shipped files and on broken ones.

mod common;

use std::process::Command;

fn check(path: &std::path::Path) -> (i32, String, String) {
    let out = Command::new(common::bin())
        .arg("check-config")
        .arg(path)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

fn shipped(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("config")
        .join(name)
}

#[test]
fn the_shipped_configs_pass() {
    for name in ["smsgate.toml", "demo.toml"] {
        let (code, out, err) = check(&shipped(name));
        assert_eq!(code, 0, "{name}: {out}{err}");
        assert!(out.contains("valid"), "{out}");
    }
}

/// Writes `text` to a file and checks it; returns (code, stderr).
fn check_text(text: &str) -> (i32, String, std::path::PathBuf, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, text).unwrap();
    let (code, _, err) = check(&path);
    (code, err, path, dir)
}

const BASE: &str = r#"[daemon]
state_dir = "/tmp/x"

[[gateway]]
name = "gw1"
kind = "sim"
ports = 4

[[dialer]]
name = "campsms"
provider = "gw1"
dial = "0.3"
"#;

#[test]
fn an_unknown_key_is_located_and_gets_a_suggestion() {
    let text = BASE.replace("dial = \"0.3\"", "dial = \"0.3\"\nintervl_ms = 1000");
    let (code, err, path, _d) = check_text(&text);
    assert_eq!(code, 1, "{err}");
    let want = format!(
        "{}:13:1: unknown key `intervl_ms` in [[dialer]]; did you mean `interval_ms`?",
        path.display()
    );
    assert!(err.contains(&want), "expected {want:?} in:\n{err}");
}

#[test]
fn a_wrong_type_is_located() {
    let text = BASE.replace("ports = 4", "ports = \"four\"");
    let (code, err, path, _d) = check_text(&text);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains(&format!(
            "{}:7:9: wrong type in [[gateway]]",
            path.display()
        )),
        "{err}"
    );
}

#[test]
fn a_dangling_reference_names_both_places() {
    let text = BASE.replace("provider = \"gw1\"", "provider = \"gw2\"");
    let (code, err, path, _d) = check_text(&text);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains(&format!(
            "{}:11:12: dialer \"campsms\" names gateway or channel group \"gw2\", which is not defined; did you mean \"gw1\"?",
            path.display()
        )),
        "{err}"
    );
}

#[test]
fn every_problem_is_listed_not_only_the_first() {
    let text = format!(
        "{BASE}\n[[gateway]]\nname = \"gw1\"\nkind = \"sim\"\nports = 600\n\n[[dialer]]\nname = \"d2\"\nprovider = \"gw1\"\ndial = \"0.9\"\n"
    );
    let (code, err, _p, _d) = check_text(&text);
    assert_eq!(code, 1);
    assert!(err.contains("a second gateway is named \"gw1\""), "{err}");
    assert!(
        err.contains("the first gateway named \"gw1\" is here"),
        "{err}"
    );
    assert!(err.contains("ports must be between 1 and 512"), "{err}");
    assert!(
        err.contains("dial string \"0.9\": port 4 does not exist on this gateway"),
        "{err}"
    );
    assert!(err.contains("4 problems found"), "{err}");
}

#[test]
fn syntax_errors_and_unreadable_files_are_reported_plainly() {
    let (code, err, path, _d) = check_text("[daemon\nstate_dir = 1\n");
    assert_eq!(code, 1);
    assert!(err.starts_with(&format!("{}:1:", path.display())), "{err}");
    assert!(err.contains("TOML syntax error"), "{err}");
    let (code, _, err) = check(std::path::Path::new("/nonexistent/smsgate.toml"));
    assert_eq!(code, 1);
    assert!(
        err.contains("cannot read /nonexistent/smsgate.toml"),
        "{err}"
    );
}

#[test]
fn secrets_come_from_files_and_never_show_in_errors() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("portal.token"),
        "a-very-secret-token-value-123\n",
    )
    .unwrap();
    let text = format!(
        "{BASE}\n[api]\n[[api.tokens]]\nname = \"portal\"\ntoken_file = \"portal.token\"\nrole = \"admin\"\n[[api.tokens]]\nname = \"p2\"\ntoken = \"short\"\nrole = \"root\"\n"
    );
    let path = dir.path().join("s.toml");
    std::fs::write(&path, text).unwrap();
    let (code, _, err) = check(&path);
    assert_eq!(code, 1);
    assert!(
        err.contains("role must be admin, supervisor, operator, viewer or agent, found \"root\""),
        "{err}"
    );
    assert!(err.contains("shorter than 16 characters"), "{err}");
    assert!(!err.contains("a-very-secret"), "{err}");
    assert!(!err.contains("\"short\""), "a secret was echoed: {err}");
}

/// An agent's token names its agent, and only an agent's token does;
/// the id is one an agent can have. Campaign keys of the ACD are
/// checked in range.
#[test]
fn agent_tokens_and_acd_keys_are_checked() {
    let t = |name: &str, role: &str, agent: &str| {
        format!(
            "[[api.tokens]]\nname = \"{name}\"\ntoken = \"{name}-0123456789abcdef\"\nrole = \"{role}\"\n{agent}"
        )
    };
    let text = format!(
        "{BASE}\n{}{}{}{}{}[[campaign]]\nname = \"c\"\nprovider = \"gw1\"\nshort_abandon_s = 90000\nbusy_message = \"\"\n",
        t("ok", "agent", "agent = \"ana\"\n"),
        t("sup", "supervisor", ""),
        t("noagent", "agent", ""),
        t("notagent", "viewer", "agent = \"ana\"\n"),
        t("badid", "agent", "agent = \"ana maría\"\n"),
    );
    let (code, err, _p, _d) = check_text(&text);
    assert_eq!(code, 1);
    for needle in [
        "token \"noagent\" has the agent role: give the agent it is with `agent = \"<id>\"`",
        "`agent` belongs only to a token with role = \"agent\"",
        "agent must be an agent id",
        "short_abandon_s must be between 0 and 86400",
        "busy_message must be 1 to 1530 characters",
    ] {
        assert!(err.contains(needle), "{needle}: {err}");
    }
    assert!(!err.contains("\"ok\""), "{err}");
    assert!(!err.contains("\"sup\""), "{err}");
}

#[test]
fn run_refuses_a_bad_config_with_exit_78() {
    let (_, _, path, _d) = check_text("[daemon]\nbogus = 1\n");
    let out = Command::new(common::bin())
        .args(["run", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(78));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("unknown key `bogus` in [daemon]"), "{err}");
}

/// The examples in config/smsgate.toml (lines "#key = value") are real: with
/// their "#" removed, the file still passes.
#[test]
fn the_documented_examples_are_valid_when_uncommented() {
    let text = std::fs::read_to_string(shipped("smsgate.toml")).unwrap();
    let mut out = String::new();
    let mut uncommented = 0;
    for line in text.lines() {
        let example = line.strip_prefix('#').filter(|rest| {
            let first = rest.chars().next().unwrap_or(' ');
            first == '[' || (first.is_ascii_lowercase() && rest.contains(" = "))
        });
        match example {
            Some(rest) => {
                out.push_str(rest);
                uncommented += 1;
            }
            None => out.push_str(line),
        }
        out.push('\n');
    }
    assert!(uncommented > 40, "only {uncommented} example lines found");
    let dir = tempfile::tempdir().unwrap();
    let tls_dir = dir.path();
    // The examples name TLS files in /etc/smsgate; point them here.
    std::fs::write(tls_dir.join("api.crt"), "x").unwrap();
    std::fs::write(tls_dir.join("api.key"), "x").unwrap();
    // And the http providers' secret files.
    for secret in [
        "quality.password",
        "aggregator.token",
        "yeastar.password",
        "whatsapp.token",
        "whatsapp.app_secret",
        "whatsapp.verify_token",
        "twilio.token",
        "twilio-key.secret",
    ] {
        let file = tls_dir.join(secret);
        std::fs::write(&file, "example-secret\n").unwrap();
        out = out.replace(
            &format!("/etc/smsgate/{secret}"),
            &file.display().to_string(),
        );
    }
    let out = out
        .replace(
            "/etc/smsgate/api.crt",
            &tls_dir.join("api.crt").display().to_string(),
        )
        .replace(
            "/etc/smsgate/api.key",
            &tls_dir.join("api.key").display().to_string(),
        );
    let path = dir.path().join("uncommented.toml");
    std::fs::write(&path, &out).unwrap();
    let (code, stdout, err) = check(&path);
    assert_eq!(code, 0, "{err}\n---\n{out}");
    assert!(
        stdout.contains("10 gateways, 1 dialers, 1 campaigns, 1 API tokens"),
        "{stdout}"
    );
}

#[test]
fn channel_groups_are_checked() {
    let text = format!(
        "{BASE}\n[[gateway]]\nname = \"gw2\"\nkind = \"sim\"\nports = 2\n\n[[channel_group]]\nname = \"grp\"\nprimary = [\"gw1:0.3\"]\nfallback = [\"gw2:5\", \"nope\"]\n\n[[dialer]]\nname = \"d2\"\nprovider = \"grp\"\ndial = \"0.1\"\n"
    );
    let (code, err, _p, _d) = check_text(&text);
    assert_eq!(code, 1);
    assert!(err.contains("port 5 does not exist"), "{err}");
    assert!(
        err.contains("channel group \"grp\" names gateway \"nope\", which is not defined"),
        "{err}"
    );
    assert!(err.contains("sends through channel group \"grp\", whose channels are named in the group; remove `dial`"), "{err}");
}

#[test]
fn the_reconcile_grace_must_outlast_the_timeout() {
    let dinstar = |extra: &str| {
        format!(
            "{BASE}\n[[gateway]]\nname = \"gw2\"\nkind = \"dinstar\"\nports = 8\nurl = \"http://192.0.2.1\"\nuser = \"admin\"\npassword = \"p\"\ntimeout_ms = 10000\n{extra}\n"
        )
    };
    let (code, err, path, _d) = check_text(&dinstar("reconcile_grace_ms = 10000"));
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains(&format!(
            "{}:22:22: reconcile_grace_ms must be longer than timeout_ms (10000 ms)",
            path.display()
        )),
        "{err}"
    );
    let (code, err, _p, _d) = check_text(&dinstar(
        "reconcile_grace_ms = 60000\nreconcile_patience_s = 60",
    ));
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("reconcile_patience_s must be longer than reconcile_grace_ms (60000 ms)"),
        "{err}"
    );
    let (code, err, _p, _d) = check_text(&dinstar("timeout_ms = 0"));
    assert_eq!(code, 1, "{err}");
    let (code, err, _p, _d) = check_text(&dinstar(
        "reconcile_grace_ms = 30000\nreconcile_patience_s = 3600",
    ));
    assert_eq!(code, 0, "{err}");
    // A key of another kind is refused by name.
    let text = BASE.replace("ports = 4", "ports = 4\nreconcile_grace_ms = 5000");
    let (code, err, _p, _d) = check_text(&text);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("reconcile_grace_ms"), "{err}");
}

/// Campaigns: a DID-port two campaigns claim is an error at the second
/// claim, naming the first; a port the gateway lacks, an unknown strategy
/// and a threshold out of range are located too; the old key `did` is
/// still read, with a warning that names `did_ports`.
#[test]
fn campaign_did_ports_are_checked_and_the_old_key_is_warned_about() {
    let text = format!(
        r#"{BASE}
[[campaign]]
name = "ventas"
provider = "gw1"
did_ports = ["gw1:0", "+59899123456"]

[[campaign]]
name = "soporte"
provider = "gw1"
did_ports = ["gw1:1", "099 123 456", "gw1:9"]
strategy = "fastest"
abandon_s = 0
"#
    );
    let (code, err, path, _dir) = check_text(&text);
    assert_ne!(code, 0);
    let at = |needle: &str| {
        let line = text.lines().position(|l| l.contains(needle)).unwrap() + 1;
        format!("{}:{line}:", path.display())
    };
    assert!(
        err.contains(&at("\"gw1:1\", \"099 123 456\""))
            && err.contains("\"099 123 456\" is already a DID-port of campaign \"ventas\""),
        "{err}"
    );
    assert!(err.contains("campaign \"ventas\" claims it here"), "{err}");
    assert!(
        err.contains("\"gw1:9\": gateway \"gw1\" has ports 0 to 3"),
        "{err}"
    );
    assert!(
        err.contains("strategy \"fastest\" is not one of round_robin, fewest_active, longest_idle"),
        "{err}"
    );
    assert!(
        err.contains("abandon_s must be between 1 and 86400"),
        "{err}"
    );

    let old = format!(
        r#"{BASE}
[[campaign]]
name = "ventas"
provider = "gw1"
did = ["gw1:0"]
"#
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.toml");
    std::fs::write(&path, &old).unwrap();
    let (code, out, err) = check(&path);
    assert_eq!(code, 0, "{out}{err}");
    let line = old.lines().position(|l| l.starts_with("did =")).unwrap() + 1;
    let all = format!("{out}{err}");
    assert!(
        all.contains(&format!("{}:{line}:", path.display()))
            && all.contains("`did` is now called `did_ports`"),
        "{all}"
    );
}

/// A webhook's URL never carries credentials, its secret is required and
/// its kinds are patterns: each problem at its place, all at once, and the
/// secret itself is never printed.
#[test]
fn webhook_problems_are_located_and_the_secret_never_printed() {
    let text = format!(
        "{BASE}
[[webhook]]
name = \"portal\"
url = \"https://user:pw@portal.example/hooks\"
secret = \"s3cret-value-0123456789\"

[[webhook]]
name = \"second\"
url = \"https://portal.example/hooks?api_token=abc\"
events = [\"message.*\", \"Bad Kind\"]

[[webhook]]
name = \"third\"
url = \"http://127.0.0.1:9000/\"
secret = \"short\"
dead_letter_after_s = 0
"
    );
    let (code, err, path, _d) = check_text(&text);
    assert_eq!(code, 1, "{err}");
    let p = path.display();
    for want in [
        format!("{p}:16:7: webhook \"portal\": url carries a user name or password"),
        format!(
            "{p}:21:7: webhook \"second\": url has a query parameter \"api_token\" that looks like a secret"
        ),
        format!("{p}:22:24: webhook \"second\": \"Bad Kind\" is not an event kind"),
        format!("{p}:20:8: the webhook's secret is missing"),
        format!("{p}:25:8: webhook \"third\": the secret is shorter than 16 characters"),
        format!("{p}:28:23: webhook \"third\": dead_letter_after_s must be between 1 and 2592000"),
    ] {
        assert!(err.contains(&want), "expected {want:?} in:\n{err}");
    }
    assert!(!err.contains("s3cret-value"), "{err}");
}

/// `[inbound]` and a campaign's keyword lists: every problem at once, each
/// at its place; a keyword of punctuation alone would match an empty text.
#[test]
fn inbound_settings_and_keywords_are_checked() {
    let text = format!(
        "{BASE}\n[inbound]\ninteraction_idle_s = 5\nopt_out_scope = \"everyone\"\nopt_out_keywords = [\"STOP\", \"!!\"]\nopt_in_reply = \"{long}\"\n\n[[campaign]]\nname = \"ventas\"\nprovider = \"gw1\"\ndid_ports = [\"gw1:0\"]\nopt_in_keywords = [\"...\"]\n",
        long = "x".repeat(1531)
    );
    let (code, err, path, _d) = check_text(&text);
    assert_eq!(code, 1, "{err}");
    let p = path.display();
    for want in [
        format!("{p}:15:22: [inbound] interaction_idle_s must be between 60 and 2592000"),
        format!("{p}:16:17: [inbound] opt_out_scope \"everyone\" is not one of dialers, global"),
        format!("{p}:17:29: opt_out_keywords: \"!!\" must have 1 to 64 letters or digits"),
        format!("{p}:18:16: [inbound] opt_in_reply must be at most 1530 characters"),
        format!("{p}:24:20: opt_in_keywords: \"...\" must have 1 to 64 letters or digits"),
    ] {
        assert!(err.contains(&want), "expected {want:?} in:\n{err}");
    }
}
