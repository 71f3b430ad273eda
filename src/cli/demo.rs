//! `gjeldsbro demo` hands over to the test kit's `gjeldsbro-demo`: the demo
//! needs the lender simulators and the synthetic population, which the
//! production binary must not carry (`cargo tree -p gjeldsbro` shows no
//! `gjeldsbro-loadtest`). From a source checkout under `cargo run` (as the
//! README's `cargo run --release -- demo`), cargo builds and starts it; beside
//! an installed `gjeldsbro-demo`, that one runs; otherwise the command says
//! where the demo lives.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::CliError;

/// The program that runs the demo, with its arguments before the caller's.
fn demo_command() -> Result<Command, CliError> {
    let exe = std::env::current_exe().ok();
    // `cargo run` tells the program it starts which cargo and which package
    // it came from; then cargo builds the demo in the same profile.
    if let (Some(cargo), Some(dir)) = (
        std::env::var_os("CARGO"),
        std::env::var_os("CARGO_MANIFEST_DIR"),
    ) {
        let manifest = PathBuf::from(dir).join("Cargo.toml");
        if manifest.is_file() {
            let mut cmd = Command::new(cargo);
            // Not --quiet: the first run builds the test kit, which takes a
            // while, and cargo's progress shows it is not hung.
            cmd.arg("run");
            if exe.as_deref().is_some_and(built_in_release) {
                cmd.arg("--release");
            }
            cmd.arg("--manifest-path").arg(manifest).args([
                "-p",
                "gjeldsbro-loadtest",
                "--bin",
                "gjeldsbro-demo",
                "--",
            ]);
            return Ok(cmd);
        }
    }
    if let Some(beside) = exe
        .as_deref()
        .and_then(Path::parent)
        .map(|d| d.join("gjeldsbro-demo"))
        .filter(|p| p.is_file())
    {
        return Ok(Command::new(beside));
    }
    Err(CliError::Message(
        "the demo is not part of this binary (it carries no lender simulators); \
         from a source checkout run `cargo run --release -- demo`"
            .into(),
    ))
}

/// Whether the running binary sits in cargo's release output.
fn built_in_release(exe: &Path) -> bool {
    exe.parent()
        .and_then(Path::file_name)
        .is_some_and(|d| d == "release")
}

/// Replaces this process with the demo (so Ctrl-C reaches the demo alone), or
/// runs it and returns its exit status where `exec` is not available.
pub fn hand_over(args: Vec<OsString>) -> Result<std::process::ExitCode, CliError> {
    let mut cmd = demo_command()?;
    cmd.args(args);
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt;
        let e = cmd.exec();
        Err(CliError::Message(format!("cannot start the demo: {e}")))
    }
    #[cfg(not(unix))]
    {
        let status = cmd
            .status()
            .map_err(|e| CliError::Message(format!("cannot start the demo: {e}")))?;
        Ok(std::process::ExitCode::from(
            status.code().unwrap_or(1).clamp(0, 255) as u8,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_release_profile_is_recognised_by_the_output_folder() {
        assert!(built_in_release(Path::new("/w/target/release/gjeldsbro")));
        assert!(!built_in_release(Path::new("/w/target/debug/gjeldsbro")));
        assert!(!built_in_release(Path::new("/usr/bin/gjeldsbro")));
    }
}
