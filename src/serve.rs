//! `forlop serve` settings, layered as operators expect: defaults, then a TOML file
//! (`--config`), then `FORLOP_`-prefixed environment variables, then flags (clap merges the last
//! two). Secrets are never settings themselves: settings name the files that hold them.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use forlop_api::{Authenticator, HttpSettings};
use forlop_auth::{ClaimNames, KeySource, Verifier, VerifierConfig};
use forlop_vault::MasterKey;
use serde::Deserialize;

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthMode {
    /// Bearer JWTs, verified against `--jwks` and/or `--hs256-secret-file`.
    Jwt,
    /// Everyone is admin (actor `anonymous`); only on a loopback address.
    Off,
}

/// Every setting of `serve`. Flags and environment variables are optional so that a value
/// from the file shows through when neither is given.
#[derive(clap::Args, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ServeArgs {
    /// TOML file with any of these settings (keys as the flags, without dashes in front).
    #[arg(long, env = "FORLOP_CONFIG")]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// Data directory [default: data].
    #[arg(long, env = "FORLOP_DATA")]
    pub data: Option<PathBuf>,
    /// PostgreSQL event store shared by several nodes (`postgres://user@host:5432/db`; the
    /// access log and key table live there too). Without it: sled in --data, one node.
    #[arg(long, env = "FORLOP_STORE", hide_env_values = true)]
    pub store: Option<String>,
    /// PEM file of the CA that signs the PostgreSQL server's certificate, for TLS
    /// (`?sslmode=require` in --store); without it, the system's trusted roots.
    #[arg(long, env = "FORLOP_STORE_CA_FILE")]
    pub store_ca_file: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:8080].
    #[arg(long, env = "FORLOP_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Load the synthetic demo dataset into an empty store, create development keys in the data
    /// directory and print one token per role.
    #[arg(long, env = "FORLOP_DEMO")]
    #[serde(default)]
    pub demo: bool,
    /// Refuse to start when the data directory or the key file can be read by anyone but the
    /// service's user (group or other permission bits); without it, such files are named in a
    /// warning. forlop itself creates directories 0700 and files 0600.
    #[arg(long, env = "FORLOP_STRICT_PERMISSIONS")]
    #[serde(default)]
    pub strict_permissions: bool,
    /// `jwt` (default) or `off`.
    #[arg(long, env = "FORLOP_AUTH", value_enum)]
    pub auth: Option<AuthMode>,
    /// JSON Web Key Set file (RS256 and ES256 keys chosen by `kid`), as HelseID publishes, for
    /// closed networks; not with --oidc-issuer or --jwks-url.
    #[arg(long, env = "FORLOP_JWKS")]
    pub jwks: Option<PathBuf>,
    /// The identity provider's issuer URL (`https://helseid-sts.nhn.no`): its OpenID discovery
    /// document names the key set, fetched at start and kept current; its `issuer` is the
    /// tokens' required `iss` unless --issuer is given.
    #[arg(long, env = "FORLOP_OIDC_ISSUER")]
    pub oidc_issuer: Option<String>,
    /// The identity provider's key set URL (its `jwks_uri`), fetched at start and kept current.
    #[arg(long, env = "FORLOP_JWKS_URL")]
    pub jwks_url: Option<String>,
    /// PEM file of the CA that signs the identity provider's certificate; without it, the
    /// system's trusted roots.
    #[arg(long, env = "FORLOP_IDP_CA_FILE")]
    pub idp_ca_file: Option<PathBuf>,
    /// File holding an HS256 secret (at least 32 bytes), for development.
    #[arg(long, env = "FORLOP_HS256_SECRET_FILE")]
    pub hs256_secret_file: Option<PathBuf>,
    /// Required `iss` of every token.
    #[arg(long, env = "FORLOP_ISSUER")]
    pub issuer: Option<String>,
    /// Required `aud` of every token.
    #[arg(long, env = "FORLOP_AUDIENCE")]
    pub audience: Option<String>,
    /// Clock skew allowed on `exp` and `nbf` [default: 30].
    #[arg(long, env = "FORLOP_LEEWAY_SECONDS")]
    pub leeway_seconds: Option<u64>,
    /// Claim holding the role(s) [default: role].
    #[arg(long, env = "FORLOP_ROLE_CLAIM")]
    pub role_claim: Option<String>,
    /// Claim holding a clinician's service ids [default: services].
    #[arg(long, env = "FORLOP_SERVICES_CLAIM")]
    pub services_claim: Option<String>,
    /// Claim holding a patient's national id [default: pid].
    #[arg(long, env = "FORLOP_PID_CLAIM")]
    pub pid_claim: Option<String>,
    /// Master key file: 32 random bytes, base64 (`openssl rand -base64 32`).
    #[arg(long, env = "FORLOP_KEY_FILE")]
    pub key_file: Option<PathBuf>,
    /// Browser origins allowed besides the server's own (comma-separated; `*` for any).
    #[arg(long, env = "FORLOP_ALLOWED_ORIGINS", value_delimiter = ',')]
    pub allowed_origins: Option<Vec<String>>,
    /// Counts from 1 to this − 1 are hidden from analysts; larger ones are perturbed [default: 5].
    #[arg(long, env = "FORLOP_SUPPRESSION_THRESHOLD")]
    pub suppression_threshold: Option<u64>,
    /// A referral or episode a clinician recorded at their own service opens what other services
    /// recorded about the patient only with a reason (SELF_GRANTED) until a colleague acts on it
    /// or it is this many days old [default: 14].
    #[arg(long, env = "FORLOP_SELF_GRANT_DAYS")]
    pub self_grant_days: Option<u32>,
    /// Write a read-model checkpoint in the background every this many events (0: only at
    /// clean shutdown) [default: 100000].
    #[arg(long, env = "FORLOP_CHECKPOINT_EVERY")]
    pub checkpoint_every: Option<u64>,
    /// TOML file mapping service identifiers (RESH ids, organisation numbers) to care levels,
    /// for FHIR ingest at /fhir.
    #[arg(long, env = "FORLOP_FHIR_CARE_LEVELS")]
    pub fhir_care_levels: Option<PathBuf>,
    /// Seconds a FHIR resource waits for what it refers to before `GET /fhir/$unresolved`
    /// reports it [default: 900]. It keeps waiting after that; nothing is dropped.
    #[arg(long, env = "FORLOP_FHIR_HOLD_SECONDS")]
    pub fhir_hold_seconds: Option<u64>,
    /// Seconds a request may take before it is answered 408 [default: 60]. `POST /fhir/$import`
    /// streams without a total bound, but ends if its body stalls this long.
    #[arg(long, env = "FORLOP_REQUEST_TIMEOUT_SECONDS")]
    pub request_timeout_seconds: Option<u64>,
    /// sled's page cache for the event log, in MB (at least 16) [default: 1024]. It fills as the
    /// log is read: a start that replays the whole log (no checkpoint) or a subscription from
    /// position 0 takes up to this much memory.
    #[arg(long, env = "FORLOP_SLED_CACHE_MB")]
    pub sled_cache_mb: Option<u64>,
    /// Directory (another disk or a mounted share) into which everything committed is backed up
    /// continuously while serving: events, access records and the key table, about a second
    /// behind at most. `forlop backup verify` checks it; `forlop restore` restores from it.
    #[arg(long, env = "FORLOP_BACKUP_DIR")]
    pub backup_dir: Option<PathBuf>,
    /// Seconds a request's line and headers may take to arrive before the connection is closed
    /// (against clients that trickle them to hold connections open); also how long a kept-alive
    /// connection may sit idle [default: 10].
    #[arg(long, env = "FORLOP_HEADER_READ_TIMEOUT_SECONDS")]
    pub header_read_timeout_seconds: Option<u64>,
    /// Connections open at once (WebSockets included); one more is closed at once, unanswered,
    /// and counted in forlop_http_connections_refused_total [default: 10000].
    #[arg(long, env = "FORLOP_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,
    /// Serve /metrics on this address only (e.g. 127.0.0.1:9090 or a monitoring network's),
    /// instead of beside the API, whose /metrics then answers 404.
    #[arg(long, env = "FORLOP_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,
}

impl ServeArgs {
    /// Fills what flags and environment left open from the `--config` file.
    pub fn layered(mut self) -> anyhow::Result<ServeArgs> {
        let Some(path) = self.config.clone() else { return Ok(self) };
        let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        let file: ServeArgs = toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        macro_rules! fill {
            ($($f:ident),+) => { $( if self.$f.is_none() { self.$f = file.$f; } )+ };
        }
        fill!(data, store, store_ca_file, listen, auth, jwks, hs256_secret_file, issuer, audience, leeway_seconds);
        fill!(role_claim, services_claim, pid_claim, key_file, allowed_origins, suppression_threshold, self_grant_days);
        fill!(checkpoint_every, fhir_care_levels, fhir_hold_seconds, request_timeout_seconds, sled_cache_mb);
        fill!(header_read_timeout_seconds, max_connections, metrics_listen, backup_dir);
        fill!(oidc_issuer, jwks_url, idp_ca_file);
        self.demo |= file.demo;
        self.strict_permissions |= file.strict_permissions;
        Ok(self)
    }

    /// Where the identity provider publishes its key set, if it is to be fetched.
    pub fn idp(&self) -> Option<forlop_auth::Location> {
        match (&self.oidc_issuer, &self.jwks_url) {
            (Some(issuer), _) => Some(forlop_auth::Location::Issuer(issuer.clone())),
            (None, Some(url)) => Some(forlop_auth::Location::JwksUrl(url.clone())),
            (None, None) => None,
        }
    }

    pub fn data(&self) -> PathBuf {
        self.data.clone().unwrap_or_else(|| PathBuf::from("data"))
    }

    pub fn listen(&self) -> SocketAddr {
        self.listen.unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 8080)))
    }

    /// The event log's page cache in bytes, if one was asked for.
    pub fn sled_cache_bytes(&self) -> anyhow::Result<Option<u64>> {
        match self.sled_cache_mb {
            Some(mb) if mb < MIN_SLED_CACHE_MB => {
                anyhow::bail!("--sled-cache-mb must be at least {MIN_SLED_CACHE_MB} (got {mb})")
            }
            Some(mb) => Ok(Some(mb.saturating_mul(1024 * 1024))),
            None => Ok(None),
        }
    }
}

/// Paths under the data directory (and the key file) that someone other than the service's user
/// may read or write: each with its mode, e.g. `data/db (0644)`. A missing path is not loose.
pub fn loose_permissions(args: &ServeArgs) -> Vec<String> {
    use std::os::unix::fs::PermissionsExt;
    let mut loose = Vec::new();
    let mut pending = vec![args.data()];
    pending.extend(args.key_file.clone());
    while let Some(path) = pending.pop() {
        // symlink_metadata: a link is judged by itself, and never followed out of the directory.
        let Ok(meta) = std::fs::symlink_metadata(&path) else { continue };
        let mode = meta.permissions().mode() & 0o777;
        if !meta.file_type().is_symlink() && mode & 0o077 != 0 {
            loose.push(format!("{} ({mode:04o})", path.display()));
        }
        if meta.is_dir() {
            if let Ok(entries) = std::fs::read_dir(&path) {
                pending.extend(entries.flatten().map(|e| e.path()));
            }
        }
    }
    loose.sort();
    loose
}

/// Below this sled's cache holds too few pages to keep a tree's upper levels.
const MIN_SLED_CACHE_MB: u64 = 16;

/// Where the identity provider's last good key set is kept, under the data directory.
pub const IDP_CACHE_DIR: &str = "idp";

/// Names of the development files `serve --demo` creates in the data directory.
pub const DEMO_SECRET: &str = "dev-hs256.secret";
pub const DEMO_MASTER_KEY: &str = "master.key";
pub const DEMO_ISSUER: &str = "forlop-demo";
pub const DEMO_AUDIENCE: &str = "forlop";

/// Writes `contents` to `path` with mode 0600 unless it exists; returns the file's contents.
fn private_file(path: &Path, contents: impl FnOnce() -> String) -> anyhow::Result<()> {
    if path.exists() {
        return Ok(());
    }
    std::fs::create_dir_all(path.parent().unwrap_or(Path::new(".")))?;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path).with_context(|| format!("creating {}", path.display()))?;
    std::io::Write::write_all(&mut file, contents().as_bytes())?;
    file.sync_all()?;
    Ok(())
}

/// Under `--demo`: development secret, master key, issuer and audience, unless given.
pub fn demo_defaults(args: &mut ServeArgs) -> anyhow::Result<()> {
    let data = args.data();
    std::fs::create_dir_all(&data)?;
    if args.hs256_secret_file.is_none() && args.jwks.is_none() && args.idp().is_none() {
        let path = data.join(DEMO_SECRET);
        private_file(&path, || {
            use rand::Rng;
            rand::thread_rng().sample_iter(rand::distributions::Alphanumeric).take(48).map(char::from).collect()
        })?;
        args.hs256_secret_file = Some(path);
    }
    dev_master_key(args)?;
    args.issuer.get_or_insert_with(|| DEMO_ISSUER.into());
    args.audience.get_or_insert_with(|| DEMO_AUDIENCE.into());
    Ok(())
}

/// Under `--demo` or `--auth off` (development on loopback): a master key in the data directory,
/// created on first start, unless `--key-file` names one.
pub fn dev_master_key(args: &mut ServeArgs) -> anyhow::Result<()> {
    if args.key_file.is_none() {
        let path = args.data().join(DEMO_MASTER_KEY);
        private_file(&path, || MasterKey::generate().to_base64() + "\n")?;
        args.key_file = Some(path);
    }
    Ok(())
}

/// Everything `serve` needs, checked: refuses to start with one clear line naming what is missing.
pub struct Resolved {
    pub auth: Authenticator,
    pub master: MasterKey,
    pub hs256_secret: Option<Vec<u8>>,
}

pub async fn resolve(args: &ServeArgs) -> anyhow::Result<Resolved> {
    let mode = args.auth.unwrap_or(AuthMode::Jwt);
    if mode == AuthMode::Off && !args.listen().ip().is_loopback() {
        bail!("--auth off serves everyone as admin; it needs a loopback --listen address, not {}", args.listen());
    }
    if args.oidc_issuer.is_some() && args.jwks_url.is_some() {
        bail!("--oidc-issuer and --jwks-url both name the identity provider's key set; give one");
    }
    if args.jwks.is_some() && args.idp().is_some() {
        bail!("--jwks (a key set file) and --oidc-issuer/--jwks-url (the identity provider's) exclude each other; give one");
    }
    if args.idp_ca_file.is_some() && args.idp().is_none() {
        bail!("--idp-ca-file is the identity provider's CA; it needs --oidc-issuer or --jwks-url");
    }
    // Everything missing is named at once: one start to learn what a configuration lacks.
    let mut missing = Vec::new();
    if args.key_file.is_none() {
        missing.push("--key-file (FORLOP_KEY_FILE): the master key that protects national ids");
    }
    if mode == AuthMode::Jwt {
        if args.jwks.is_none() && args.hs256_secret_file.is_none() && args.idp().is_none() {
            missing.push(
                "a verification key: --oidc-issuer URL, --jwks-url URL, --jwks FILE or --hs256-secret-file FILE (or --auth off on loopback)",
            );
        }
        if args.issuer.is_none() && args.oidc_issuer.is_none() {
            missing.push("--issuer (FORLOP_ISSUER)");
        }
        if args.audience.is_none() {
            missing.push("--audience (FORLOP_AUDIENCE)");
        }
    }
    if !missing.is_empty() {
        bail!("missing {}", missing.join("; "));
    }
    let master = match &args.key_file {
        Some(path) => MasterKey::load(path).with_context(|| format!("master key {}", path.display()))?,
        None => bail!("missing --key-file (FORLOP_KEY_FILE): the master key that protects national ids"),
    };
    let hs256_secret = match &args.hs256_secret_file {
        Some(path) => {
            let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
            Some(bytes.trim_ascii().to_vec())
        }
        None => None,
    };
    let auth = match mode {
        AuthMode::Off => {
            if !args.listen().ip().is_loopback() {
                bail!(
                    "--auth off serves everyone as admin; it needs a loopback --listen address, not {}",
                    args.listen()
                );
            }
            Authenticator::Off
        }
        AuthMode::Jwt => {
            // Checked before anything is fetched: a plain-http provider is refused, never asked.
            let source = match args.idp() {
                Some(location) => Some(
                    forlop_auth::JwksSource::new(forlop_auth::JwksSourceOptions {
                        location,
                        ca_file: args.idp_ca_file.clone(),
                        cache_dir: args.data().join(IDP_CACHE_DIR),
                    })
                    .map_err(anyhow::Error::msg)?,
                ),
                None => None,
            };
            let mut keys = Vec::new();
            if let Some(path) = &args.jwks {
                let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
                keys.push(KeySource::Jwks(text));
            }
            if let Some(secret) = &hs256_secret {
                keys.push(KeySource::Hs256Secret(secret.clone()));
            }
            if keys.is_empty() && source.is_none() {
                bail!("missing a verification key: give --oidc-issuer URL, --jwks-url URL, --jwks FILE or --hs256-secret-file FILE (or --auth off on loopback)");
            }
            // The provider's set, before the port is bound: a node that cannot verify any token
            // does not start (unless it kept the last good set).
            let initial = match &source {
                Some(source) => Some(source.initial().await.map_err(anyhow::Error::msg)?),
                None => None,
            };
            let issuer = args.issuer.clone().or_else(|| initial.as_ref().and_then(|i| i.issuer.clone()));
            let Some(issuer) = issuer else { bail!("missing --issuer (FORLOP_ISSUER)") };
            let Some(audience) = args.audience.clone() else { bail!("missing --audience (FORLOP_AUDIENCE)") };
            let defaults = ClaimNames::default();
            let config = VerifierConfig {
                issuer,
                audience,
                leeway_seconds: args.leeway_seconds.unwrap_or(30),
                claims: ClaimNames {
                    role: args.role_claim.clone().unwrap_or(defaults.role),
                    services: args.services_claim.clone().unwrap_or(defaults.services),
                    pid: args.pid_claim.clone().unwrap_or(defaults.pid),
                },
            };
            let verifier = match (source, initial) {
                (Some(source), Some(initial)) => source.verifier(config, initial, keys),
                _ => Verifier::new(config, keys),
            };
            Authenticator::Jwt(verifier.context("verification keys")?)
        }
    };
    Ok(Resolved { auth, master, hs256_secret })
}

pub fn http_settings(
    args: &ServeArgs,
    auth: Authenticator,
    explorer_token: Option<String>,
    metrics: Option<forlop_api::MetricsRenderer>,
    degraded: Option<forlop_api::DegradedProbe>,
) -> anyhow::Result<HttpSettings> {
    Ok(HttpSettings {
        auth,
        allowed_origins: allowed_origins(args)?,
        explorer_token,
        metrics,
        fhir: Some(forlop_api::FhirConfig {
            dir: args.data().join("fhir"),
            care_levels: care_levels(&args.fhir_care_levels)?,
            hold: args.fhir_hold_seconds.map_or(forlop_fhir::ingest::DEFAULT_HOLD, std::time::Duration::from_secs),
        }),
        request_timeout: args
            .request_timeout_seconds
            .map_or(forlop_api::DEFAULT_REQUEST_TIMEOUT, |s| std::time::Duration::from_secs(s.max(1))),
        metrics_listen: args.metrics_listen,
        header_read_timeout: positive("--header-read-timeout-seconds", args.header_read_timeout_seconds)?
            .map_or(forlop_api::DEFAULT_HEADER_READ_TIMEOUT, std::time::Duration::from_secs),
        max_connections: positive("--max-connections", args.max_connections)?
            .unwrap_or(forlop_api::DEFAULT_MAX_CONNECTIONS),
        degraded,
    })
}

/// A setting that must be at least 1, when given: 0 would refuse every connection.
fn positive<T: PartialEq + Default + Copy>(flag: &str, value: Option<T>) -> anyhow::Result<Option<T>> {
    if value == Some(T::default()) {
        bail!("{flag} must be at least 1");
    }
    Ok(value)
}

/// Every `--allowed-origins` entry must be an origin as browsers send it, or it would never match.
fn allowed_origins(args: &ServeArgs) -> anyhow::Result<Vec<String>> {
    let origins = args.allowed_origins.clone().unwrap_or_default();
    let wrong: Vec<String> = origins.iter().filter_map(|o| forlop_api::origin_problem(o)).collect();
    if !wrong.is_empty() {
        bail!("--allowed-origins: {}", wrong.join("; "));
    }
    Ok(origins.iter().map(|o| o.trim().to_owned()).collect())
}

/// The FHIR care-level mapping, or an empty one (every service then unmapped, and named so).
pub fn care_levels(path: &Option<PathBuf>) -> anyhow::Result<forlop_fhir::CareLevels> {
    match path {
        Some(p) => Ok(forlop_fhir::CareLevels::load(p)?),
        None => Ok(forlop_fhir::CareLevels::default()),
    }
}

/// One development token per role, valid for 30 days, for the demo's printout. The clinician
/// works at every service in the demo; the patient's national id is synthetic.
pub fn demo_tokens(
    secret: &[u8],
    issuer: &str,
    audience: &str,
    services: &[uuid::Uuid],
) -> anyhow::Result<Vec<(&'static str, String)>> {
    let now = chrono::Utc::now().timestamp();
    let mut out = Vec::new();
    for role in ["admin", "auditor", "analyst", "integration", "clinician", "patient"] {
        let mut claims = serde_json::json!({
            "iss": issuer, "aud": audience, "sub": format!("demo-{role}"), "name": format!("Demo {role}"),
            "role": role, "iat": now, "exp": now + 30 * 24 * 3600,
        });
        if role == "clinician" {
            claims["services"] = serde_json::json!(services);
            claims["helseid://claims/hpr/hpr_number"] = serde_json::json!("9144889");
        }
        if role == "patient" {
            claims["pid"] = serde_json::json!(DEMO_PATIENT_PID);
        }
        out.push((role, forlop_auth::mint_hs256(secret, &claims)?));
    }
    Ok(out)
}

/// A synthetic national id (month + 80) for the demo patient token: it names no real person.
pub const DEMO_PATIENT_PID: &str = "31929956780";

/// Installs the Prometheus recorder for `/metrics` (once per process). Latencies are histograms
/// with buckets from 0.1 ms to 10 s, so they aggregate across nodes.
pub fn install_metrics() -> Option<forlop_api::MetricsRenderer> {
    use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
    let seconds = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0];
    let sizes = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0];
    let builder = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &seconds)
        .and_then(|b| b.set_buckets_for_metric(Matcher::Suffix("_size".into()), &sizes));
    let handle = match builder.and_then(|b| b.install_recorder()) {
        Ok(h) => h,
        Err(e) => {
            tracing::warn!(error = %e, "metrics recorder not installed; /metrics disabled");
            return None;
        }
    };
    forlop_api::metrics::describe();
    let upkeep = handle.clone();
    std::thread::Builder::new()
        .name("forlop-metrics-upkeep".into())
        .spawn(move || loop {
            std::thread::sleep(std::time::Duration::from_secs(5));
            upkeep.run_upkeep();
        })
        .ok()?;
    Some(forlop_api::MetricsRenderer(std::sync::Arc::new(move || handle.render())))
}

/// The demo's one patient with a (synthetic) national id, so the demo patient token's
/// `myAccessLog` shows who read their record. Recorded with fixed event ids: a restart adds nothing.
pub async fn demo_patient(engine: &forlop_engine::Engine) -> anyhow::Result<()> {
    use forlop_domain::events::{EpisodeStarted, PatientRegistered, ReferralReceived};
    use forlop_domain::{CareLevel, Command, Gender, ReferralSource};
    use uuid::Uuid;
    let service = {
        let model = engine.model();
        let mut municipal: Vec<_> = model
            .services
            .values()
            .filter(|s| s.care_level == CareLevel::Municipal)
            .map(|s| (s.name.clone(), s.id))
            .collect();
        municipal.sort();
        municipal.first().map(|(_, id)| *id)
    };
    let Some(service) = service else { return Ok(()) };
    let caller = forlop_engine::Caller::server(
        forlop_auth::Principal { sub: "forlop-demo".into(), ..forlop_auth::Principal::anonymous_admin() },
        "demo",
    );
    let patient = Uuid::from_u128(0xdeb0_0000_0000_4000_8000_0000_0000_0001);
    let referral = Uuid::from_u128(0xdeb0_0000_0000_4000_8000_0000_0000_0002);
    let at = chrono::DateTime::parse_from_rfc3339("2026-01-05T09:00:00Z")?.to_utc();
    let steps = [
        (
            Command::RegisterPatient(PatientRegistered {
                patient_id: patient,
                birth_year: 1999,
                gender: Gender::Female,
                national_id: None,
            }),
            Some(forlop_domain::national_id::NationalId::parse(DEMO_PATIENT_PID)?),
            0xdeb1,
        ),
        (
            Command::ReceiveReferral {
                patient_id: patient,
                event: ReferralReceived {
                    referral_id: referral,
                    service_id: service,
                    source: ReferralSource::SelfReferral,
                    received_at: at,
                },
            },
            None,
            0xdeb2,
        ),
        (
            Command::StartEpisode {
                patient_id: patient,
                event: EpisodeStarted {
                    episode_id: Uuid::from_u128(0xdeb0_0000_0000_4000_8000_0000_0000_0003),
                    service_id: service,
                    referral_id: None,
                    started_at: at,
                    acute: false,
                },
            },
            None,
            0xdeb3,
        ),
    ];
    for (command, national_id, event) in steps {
        let options = forlop_engine::RecordOptions { event_id: Some(Uuid::from_u128(event)), expected_version: None };
        engine.record(&caller, command, national_id, options).await?;
    }
    eprintln!("forlop: demo patient {patient} holds the synthetic national id in the patient token");
    Ok(())
}
