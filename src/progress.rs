//! Progress bars for the long operator commands (seed, import, export). Drawn on stderr only
//! when it is a terminal; piped or in CI they stay quiet.

use indicatif::{ProgressBar, ProgressStyle};

/// A bar of `total` items of `what` (a spinner with a count when the total is unknown).
pub fn bar(total: Option<u64>, what: &str) -> ProgressBar {
    let bar = match total {
        Some(n) => ProgressBar::new(n),
        None => ProgressBar::new_spinner(),
    };
    let template = match total {
        Some(_) => format!("{{spinner}} {what} {{bar:40}} {{pos}}/{{len}} ({{per_sec}}, {{eta}} left)"),
        None => format!("{{spinner}} {what} {{pos}} ({{per_sec}})"),
    };
    if let Ok(style) = ProgressStyle::with_template(&template) {
        bar.set_style(style);
    }
    bar
}
