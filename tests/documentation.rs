//! Every binary documents itself from its own flags (issue 11): `--man` is a man page that
//! groff renders without a warning and that names the flags, and `--completions bash` is a
//! script bash loads and that completes the flags.

use std::process::Command;
use std::time::Duration;

use testkit::{require_tool, run_ok, workspace_binary};

const LIMIT: Duration = Duration::from_secs(30);
const BINARIES: [(&str, &str); 5] = [
    ("clock1", "--port"),
    ("clock2", "--max-clients"),
    ("netcat1", "ADDRESS"),
    ("clockwall", "--timeout"),
    ("ftpd", "--stall-timeout"),
];

#[test]
fn every_man_page_renders_cleanly_and_names_its_flags_issue_11() {
    require_tool("groff", "groff-base");
    for (name, flag) in BINARIES {
        let binary = workspace_binary(name);
        let script = format!(
            "'{}' --man | groff -man -Tascii -ww -P -cbou",
            binary.display()
        );
        let mut render = Command::new("sh");
        render.args(["-c", &script]);
        let output = run_ok(render, LIMIT);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.trim().is_empty(), "{name}: groff warned: {stderr}");
        let page = String::from_utf8_lossy(&output.stdout);
        assert!(page.contains(name) && page.contains(flag), "{name}: {page}");
    }
}

#[test]
fn bash_completes_every_binarys_flags_issue_11() {
    require_tool("bash", "bash");
    for (name, flag) in BINARIES
        .into_iter()
        .filter(|(_, flag)| flag.starts_with("--"))
    {
        let binary = workspace_binary(name);
        let partial = &flag[..5];
        let script = format!(
            "source <('{}' --completions bash) && COMP_WORDS=({name} {partial}) && COMP_CWORD=1 \
             && _{name} {name} {partial} {name} && printf '%s\\n' \"${{COMPREPLY[@]}}\"",
            binary.display()
        );
        let mut complete = Command::new("bash");
        complete.args(["-c", &script]);
        let output = run_ok(complete, LIMIT);
        let offered = String::from_utf8_lossy(&output.stdout);
        assert!(
            offered.lines().any(|word| word == flag),
            "{name}: completing {partial} offered {offered:?}"
        );
    }
}
