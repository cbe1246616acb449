//! The machine and code a run measured: CPU model, cores, memory and kernel (from /proc on
//! Linux), and the git commit of the working directory.

use serde_json::{json, Value};

#[derive(Debug, Clone)]
pub struct Machine {
    pub cpu: String,
    pub cores: usize,
    pub ram_bytes: u64,
    pub kernel: String,
}

impl Machine {
    pub fn this() -> Machine {
        let proc = |file: &str| std::fs::read_to_string(file).unwrap_or_default();
        let cpu = proc("/proc/cpuinfo")
            .lines()
            .find(|l| l.starts_with("model name"))
            .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
            .unwrap_or_else(|| "unknown CPU".into());
        let ram_kb: u64 = proc("/proc/meminfo")
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:")?.trim().strip_suffix(" kB")?.trim().parse().ok())
            .unwrap_or(0);
        let kernel = proc("/proc/sys/kernel/osrelease").trim().to_owned();
        Machine {
            cpu,
            cores: std::thread::available_parallelism().map_or(0, |n| n.get()),
            ram_bytes: ram_kb * 1024,
            kernel: if kernel.is_empty() { std::env::consts::OS.to_owned() } else { format!("Linux {kernel}") },
        }
    }

    /// `2 x Intel(R) Xeon(R) …`: the JSON's `machine` key and the printed table's header.
    pub fn short(&self) -> String {
        format!("{} x {}", self.cores, self.cpu)
    }

    /// `2 × Intel(R) Xeon(R) …, 24 GiB RAM, Linux 6.8.0`.
    pub fn description(&self) -> String {
        let gib = self.ram_bytes as f64 / (1u64 << 30) as f64;
        format!("{} × {}, {gib:.0} GiB RAM, {}", self.cores, self.cpu, self.kernel)
    }

    pub fn json(&self) -> Value {
        json!({
            "description": self.description(),
            "cpu": self.cpu,
            "cores": self.cores,
            "ram_bytes": self.ram_bytes,
            "kernel": self.kernel,
        })
    }
}

/// The commit checked out in the working directory (`+` when it has changes), if it is a git
/// work tree.
pub fn git_commit() -> Option<String> {
    let git = |args: &[&str]| {
        let out = std::process::Command::new("git").args(args).stderr(std::process::Stdio::null()).output().ok()?;
        out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
    };
    let commit = git(&["rev-parse", "HEAD"])?;
    let changed = git(&["status", "--porcelain", "--untracked-files=no"]).is_some_and(|s| !s.is_empty());
    Some(if changed { format!("{commit}+") } else { commit })
}
