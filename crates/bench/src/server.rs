//! The `forlop` binary the bench runs as a child process (`serve`, `import-fhir`), so that what
//! it measures there is the shipped server's own start-up, memory and exit.

use std::path::{Path, PathBuf};

#[derive(Debug, Clone)]
pub struct Forlop(PathBuf);

impl Forlop {
    /// `--forlop`, or the `forlop` beside this executable (`target/release/forlop` next to
    /// `target/release/forlop-bench`).
    pub fn locate(flag: Option<&Path>) -> anyhow::Result<Forlop> {
        let path = match flag {
            Some(path) => path.to_owned(),
            None => std::env::current_exe()?.with_file_name(format!("forlop{}", std::env::consts::EXE_SUFFIX)),
        };
        anyhow::ensure!(
            path.is_file(),
            "no forlop binary at {}: build it beside forlop-bench (`cargo build --release --workspace`) or name it with --forlop",
            path.display()
        );
        Ok(Forlop(path))
    }

    /// `forlop SUBCOMMAND`, to add arguments to and run.
    pub fn command(&self, subcommand: &str) -> std::process::Command {
        let mut command = std::process::Command::new(&self.0);
        command.arg(subcommand);
        command
    }
}
