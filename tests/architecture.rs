//! The invariants of ARCHITECTURE.md that can be read off the source tree: which crate may
//! depend on which, where sled and the web stack are used, how long a file may be, and that no
//! two modules of a crate import each other.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Longer files say why at their top, in a module doc line starting with this.
const LONG_FILE_REASON: &str = "//! Long because";
const LONG_FILE_LINES: usize = 600;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every crate's package name and its normal dependencies (not dev-dependencies).
fn dependencies() -> BTreeMap<String, BTreeSet<String>> {
    let mut crates = BTreeMap::new();
    let mut manifests = vec![root().join("Cargo.toml")];
    for entry in std::fs::read_dir(root().join("crates")).expect("crates/") {
        manifests.push(entry.expect("crates/ entry").path().join("Cargo.toml"));
    }
    for manifest in manifests {
        let text = std::fs::read_to_string(&manifest).unwrap_or_else(|e| panic!("{}: {e}", manifest.display()));
        let doc: toml::Table = text.parse().unwrap_or_else(|e| panic!("{}: {e}", manifest.display()));
        let name = doc["package"]["name"].as_str().expect("package.name").to_string();
        let deps =
            doc.get("dependencies").and_then(|d| d.as_table()).map(|d| d.keys().cloned().collect()).unwrap_or_default();
        crates.insert(name, deps);
    }
    crates
}

fn forlop_deps(deps: &BTreeSet<String>) -> BTreeSet<&str> {
    deps.iter().filter(|d| d.starts_with("forlop-")).map(String::as_str).collect()
}

#[test]
fn given_the_crates_when_their_dependencies_are_read_then_each_depends_only_on_the_layers_below_it() {
    let crates = dependencies();
    let of = |name: &str| crates.get(name).unwrap_or_else(|| panic!("no crate {name}"));
    assert_eq!(forlop_deps(of("forlop-domain")), BTreeSet::new(), "the domain depends on no other forlop crate");
    assert_eq!(
        forlop_deps(of("forlop-projections")),
        BTreeSet::from(["forlop-domain"]),
        "projections depend only on the domain"
    );
    for pure in ["forlop-domain", "forlop-projections"] {
        for io in ["tokio", "sled", "tokio-postgres", "axum", "async-graphql", "reqwest"] {
            assert!(!of(pure).contains(io), "{pure} is pure and synchronous, but depends on {io}");
        }
    }
    for (name, deps) in &crates {
        if deps.contains("sled") {
            assert!(
                ["forlop-store", "forlop-fhir", "forlop-bench"].contains(&name.as_str()),
                "only the store, the FHIR adapter's index and the bench's raw baseline use sled, not {name}"
            );
        }
        for web in ["axum", "async-graphql", "tower-http"] {
            if deps.contains(web) {
                assert_eq!(
                    name, "forlop-api",
                    "only the api crate knows HTTP and GraphQL, but {name} depends on {web}"
                );
            }
        }
    }
    for core in ["forlop-engine", "forlop-fhir", "forlop-auth", "forlop-store", "forlop-backup"] {
        for adapter in ["forlop-api", "forlop-fhir"] {
            if core != adapter {
                assert!(!of(core).contains(adapter), "{core} must not depend on the adapter {adapter}");
            }
        }
    }
    assert!(!of("forlop-auth").contains("forlop-engine"), "auth knows nothing of the engine");
    assert!(!of("forlop-backup").contains("forlop-engine"), "backup reads the stores through their traits only");
}

/// The `.rs` files git would track: everything under `src/`, `crates/` and `tests/`.
fn sources() -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else { return };
        for entry in entries {
            let path = entry.expect("dir entry").path();
            if path.is_dir() {
                if !path.ends_with("node_modules") && !path.ends_with("target") {
                    walk(&path, out);
                }
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    let mut out = Vec::new();
    for top in ["src", "crates", "tests"] {
        walk(&root().join(top), &mut out);
    }
    out.sort();
    out
}

#[test]
fn given_every_source_file_when_counted_then_none_is_longer_than_600_lines_without_a_reason_at_its_top() {
    let mut long = Vec::new();
    for path in sources() {
        let text = std::fs::read_to_string(&path).expect("source file");
        let lines = text.lines().count();
        let head: Vec<&str> = text.lines().take_while(|l| l.starts_with("//!")).collect();
        if lines > LONG_FILE_LINES && !head.iter().any(|l| l.starts_with(LONG_FILE_REASON)) {
            long.push(format!("{} ({lines} lines)", path.strip_prefix(root()).unwrap_or(&path).display()));
        }
    }
    assert!(
        long.is_empty(),
        "files over {LONG_FILE_LINES} lines without a `{LONG_FILE_REASON}` line at their top: {long:#?}"
    );
}

/// A crate's modules (by path, `a::b`) and the modules each names through `crate::` or `super::`.
fn module_imports(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut files = BTreeMap::new();
    let mut stack = vec![src.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("source dir") {
            let path = entry.expect("dir entry").path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let rel = path.strip_prefix(src).expect("under src").with_extension("");
                let mut parts: Vec<String> = rel.iter().map(|p| p.to_string_lossy().into_owned()).collect();
                if matches!(parts.last().map(String::as_str), Some("mod" | "lib" | "main")) {
                    parts.pop();
                }
                files.insert(parts.join("::"), path);
            }
        }
    }
    let modules: BTreeSet<String> = files.keys().cloned().collect();
    let mut graph = BTreeMap::new();
    for (module, path) in &files {
        let text = std::fs::read_to_string(path).expect("source file");
        // A module's own unit tests may use anything.
        let code = text.split("#[cfg(test)]\nmod tests").next().unwrap_or(&text);
        let parent: Vec<&str> = module.split("::").filter(|p| !p.is_empty()).collect();
        let mut names = BTreeSet::new();
        for (prefix, base) in [("crate::", Vec::new()), ("super::", parent[..parent.len().saturating_sub(1)].to_vec())]
        {
            for (at, _) in code.match_indices(prefix) {
                if code[..at].ends_with(|c: char| c.is_alphanumeric() || c == '_' || c == ':') {
                    continue;
                }
                let rest = &code[at + prefix.len()..];
                let path: Vec<&str> = rest
                    .split(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
                    .next()
                    .unwrap_or("")
                    .split("::")
                    .filter(|p| !p.is_empty())
                    .collect();
                let full: Vec<&str> = base.iter().copied().chain(path).collect();
                if let Some(target) = (1..=full.len()).rev().map(|k| full[..k].join("::")).find(|m| modules.contains(m))
                {
                    let related = target == *module
                        || module.starts_with(&format!("{target}::"))
                        || target.starts_with(&format!("{module}::"));
                    if !related && !module.is_empty() {
                        names.insert(target);
                    }
                }
            }
        }
        graph.insert(module.clone(), names);
    }
    graph
}

/// A cycle through `start`, if there is one.
fn cycle_through(graph: &BTreeMap<String, BTreeSet<String>>, start: &str) -> Option<Vec<String>> {
    let mut stack = vec![(start.to_string(), vec![start.to_string()])];
    let mut seen = BTreeSet::new();
    while let Some((at, path)) = stack.pop() {
        for next in graph.get(&at).into_iter().flatten() {
            if next == start {
                return Some(path.iter().cloned().chain([start.to_string()]).collect());
            }
            if seen.insert(next.clone()) {
                stack.push((next.clone(), path.iter().cloned().chain([next.clone()]).collect()));
            }
        }
    }
    None
}

#[test]
fn given_every_crate_when_its_modules_imports_are_read_then_no_two_modules_import_each_other() {
    let mut srcs = vec![root().join("src")];
    for entry in std::fs::read_dir(root().join("crates")).expect("crates/") {
        srcs.push(entry.expect("crates/ entry").path().join("src"));
    }
    let mut cycles = Vec::new();
    for src in srcs {
        let graph = module_imports(&src);
        let mut reported = BTreeSet::new();
        for module in graph.keys() {
            if reported.contains(module) {
                continue;
            }
            if let Some(cycle) = cycle_through(&graph, module) {
                reported.extend(cycle.iter().cloned());
                cycles.push(format!("{}: {}", src.strip_prefix(root()).unwrap_or(&src).display(), cycle.join(" → ")));
            }
        }
    }
    assert!(cycles.is_empty(), "import cycles between modules: {cycles:#?}");
}
