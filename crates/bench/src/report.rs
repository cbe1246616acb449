//! What a run prints (the figures, and each target against its baseline of the same run) and
//! the JSON it writes with `--out`: every figure by key, a few counts, and the `run` object
//! (date, machine, commit, flags).

use serde_json::{json, Map, Value};

use crate::args::RunArgs;
use crate::figures::Store;
use crate::machine::Machine;

/// A figure measured: its key, value and what it measured in this run.
pub type Row = (&'static str, f64, String);

/// The figures of a run, in the order measured, and the counts written beside them.
#[derive(Debug, Default)]
pub struct Figures {
    pub rows: Vec<Row>,
    pub extra: Map<String, Value>,
}

impl Figures {
    pub fn push(&mut self, key: &'static str, value: f64, what: impl Into<String>) {
        self.rows.push((key, value, what.into()));
    }
}

/// Prints the figures as a table, then the targets they meet or miss, and writes them as JSON
/// to `--out`. `details` goes into the `run` object (the PostgreSQL server's version).
pub fn report(args: &RunArgs, store: Store, figures: &Figures, details: Option<Value>) -> anyhow::Result<()> {
    let machine = Machine::this();
    let mut out = figures.extra.clone();
    for (k, v, _) in &figures.rows {
        out.insert((*k).into(), json!(v));
    }
    out.insert("machine".into(), json!(machine.short()));
    let values = Value::Object(out.clone());
    println!("forlop-bench on {}", machine.short());
    println!("{:<30} {:>14}  what", "figure", "value");
    for (k, v, what) in &figures.rows {
        println!("{k:<30} {v:>14.2}  {what}");
    }
    let mut first = true;
    for figure in crate::figures::of(store) {
        let Some(value) = values[figure.key].as_f64() else { continue };
        let verdict = figure.target.verdict(value, &values, false);
        if verdict.met.is_some() {
            println!("{} {} {}", if first { "targets:" } else { "        " }, figure.key, verdict.text);
            first = false;
        }
    }
    let mut run = json!({
        "date": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "store": store.name(),
        "machine": machine.json(),
        "commit": crate::machine::git_commit(),
        "flags": flags(std::env::args().skip(2)),
    });
    if let Some(details) = details {
        run[store.name()] = details;
    }
    out.insert("run".into(), run);
    if let Some(path) = &args.out {
        std::fs::write(path, serde_json::to_string_pretty(&out)?)?;
        eprintln!("bench: wrote {}", path.display());
    }
    Ok(())
}

/// The flags of the run as given, the PostgreSQL URL (which may hold a password) left out.
fn flags(args: impl Iterator<Item = String>) -> Vec<String> {
    let mut out = Vec::new();
    let mut hide_next = false;
    for arg in args {
        if hide_next {
            out.push("…".into());
            hide_next = false;
        } else if arg.starts_with("--store=") {
            out.push("--store=…".into());
        } else {
            hide_next = arg == "--store";
            out.push(arg);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_store_url_is_not_recorded() {
        let args = ["--store", "postgres://u:secret@h/db", "--out", "x.json", "--store=postgres://u:s@h"];
        let flags = super::flags(args.iter().map(|s| s.to_string()));
        assert_eq!(flags, ["--store", "…", "--out", "x.json", "--store=…"]);
    }
}
