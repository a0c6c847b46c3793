//! `convmsg --version`: the package version and the git revision `build.rs` baked in.

use std::process::Command;

#[test]
fn version_prints_the_package_version_and_the_git_revision() {
    let out = Command::new(env!("CARGO_BIN_EXE_convmsg")).arg("--version").output().unwrap();
    assert!(out.status.success());
    let printed = String::from_utf8(out.stdout).unwrap();
    let revision = env!("CONVMSG_GIT_REVISION");
    assert_eq!(printed.trim(), format!("convmsg {} ({revision})", env!("CARGO_PKG_VERSION")));
    // When built from a git checkout (without an override), it is the checkout's HEAD.
    let head = Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned());
    match head {
        Some(head) if std::env::var_os("CONVMSG_GIT_REVISION").is_none() => assert_eq!(revision, head),
        _ => assert!(!revision.is_empty()),
    }
}
