//! Compiles `proto/` into Rust without a system `protoc` (protox parses the files in
//! pure Rust) and writes the encoded descriptor set that server reflection serves.
//! Also bakes the git revision into `CONVMSG_GIT_REVISION` for `convmsg --version`:
//! the variable of that name when set (container builds have no `.git`), else
//! `git rev-parse --short HEAD`, else `unknown`.

use std::{env, fs, path::PathBuf, process::Command};

use prost::Message;

const PROTOS: &[&str] = &[
    "proto/convmsg/v1/conversation_messages.proto",
    "proto/convmsg/v1/messaging_admin.proto",
    "proto/convmsg/v1/status_events.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rustc-env=CONVMSG_GIT_REVISION={}", git_revision());
    for proto in PROTOS {
        println!("cargo:rerun-if-changed={proto}");
    }
    let fds = protox::Compiler::new(["proto"])?
        .include_imports(true)
        .include_source_info(true)
        .open_files(PROTOS)?
        .file_descriptor_set();
    let out = PathBuf::from(env::var("OUT_DIR")?);
    fs::write(out.join("convmsg_descriptor.bin"), fds.encode_to_vec())?;
    tonic_prost_build::configure().build_client(true).build_server(true).compile_fds(fds)?;
    Ok(())
}

/// The revision to report, and the `rerun-if` lines that keep it right: the override
/// variable, and the files a commit or checkout changes (HEAD, the branch's ref, the
/// packed refs) — only those, so unrelated edits do not rerun this script.
fn git_revision() -> String {
    println!("cargo:rerun-if-env-changed=CONVMSG_GIT_REVISION");
    if let Ok(revision) = env::var("CONVMSG_GIT_REVISION") {
        let revision = revision.trim();
        if !revision.is_empty() {
            return revision.to_owned();
        }
    }
    // `--git-path` resolves worktrees (HEAD in the worktree's dir, refs in the common dir).
    for file in ["HEAD", "packed-refs"] {
        watch(git(&["rev-parse", "--git-path", file]));
    }
    if let Some(reference) = git(&["symbolic-ref", "-q", "HEAD"]) {
        watch(git(&["rev-parse", "--git-path", &reference]));
    }
    git(&["rev-parse", "--short", "HEAD"]).unwrap_or_else(|| "unknown".to_owned())
}

/// Reruns the script when `path` changes; a missing file is not watched (Cargo would
/// rerun on every build).
fn watch(path: Option<String>) {
    if let Some(path) = path.filter(|p| std::path::Path::new(p).exists()) {
        println!("cargo:rerun-if-changed={path}");
    }
}

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    let text = String::from_utf8(out.stdout).ok()?.trim().to_owned();
    (out.status.success() && !text.is_empty()).then_some(text)
}
