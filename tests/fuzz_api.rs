//! The REST API fuzzed from its own OpenAPI document by schemathesis (PyPI), through
//! `scripts/fuzz-api.sh` on the binary this build made: no 5xx, only documented statuses,
//! content types, headers and bodies, and no operation that works without the token.
//! Fails (does not skip) when schemathesis is missing: `.ci/run` installs it.

use std::process::Command;

#[test]
fn schemathesis_finds_no_server_error_or_undocumented_response() {
    let version = Command::new("schemathesis").arg("--version").output();
    let installed = version.as_ref().is_ok_and(|out| out.status.success());
    assert!(
        installed,
        "schemathesis is not installed (python3 -m pip install schemathesis): {version:?}"
    );
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/fuzz-api.sh");
    let out = Command::new("bash")
        .arg(script)
        .arg(env!("CARGO_BIN_EXE_computer-use-server"))
        .env("NO_COLOR", "1")
        .output()
        .expect("run scripts/fuzz-api.sh");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "schemathesis found problems:\n{report}"
    );
    assert!(report.contains("No issues found"), "{report}");
}
