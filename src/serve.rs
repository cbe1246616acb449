//! `forlop serve` settings, layered as operators expect: defaults, then a TOML file
//! (`--config`), then `FORLOP_`-prefixed environment variables, then flags (clap merges the last
//! two, figment lays them over the file). Secrets are never settings themselves: settings name
//! the files that hold them.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{bail, Context};
use figment::providers::{Format, Serialized, Toml};
use figment::Figment;
use forlop_api::{Authenticator, HttpSettings};
use forlop_auth::{ClaimNames, KeySource, Verifier, VerifierConfig};
use forlop_vault::MasterKey;
use serde::{Deserialize, Serialize};

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthMode {
    /// Bearer JWTs, verified against `--jwks` and/or `--hs256-secret-file`.
    Jwt,
    /// Everyone is admin (actor `anonymous`); only on a loopback address.
    Off,
}

/// Every setting of `serve`. Flags and environment variables are optional so that a value
/// from the file shows through when neither is given.
#[derive(clap::Args, Debug, Default, Deserialize, Serialize)]
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
    /// The settings in force: the `--config` file, then the environment, then flags (clap
    /// has already merged the last two), through figment, so that every key works in every
    /// layer without a list of keys to keep up to date. Unknown keys in the file are refused.
    pub fn layered(self) -> anyhow::Result<ServeArgs> {
        let Some(path) = self.config.clone() else { return Ok(self) };
        if !path.is_file() {
            bail!("reading {}: no such file", path.display());
        }
        let given = given_settings(&self)?;
        let layered: ServeArgs = Figment::new()
            .merge(Toml::file_exact(&path))
            .merge(Serialized::defaults(given))
            .extract()
            .map_err(|e| anyhow::anyhow!("{e}"))
            .with_context(|| format!("parsing {}", path.display()))?;
        Ok(ServeArgs { config: self.config, ..layered })
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

/// The settings flags and environment gave, as a map: unset options and `false` switches
/// are left out, so that they do not hide the file's values.
fn given_settings(args: &ServeArgs) -> anyhow::Result<serde_json::Map<String, serde_json::Value>> {
    let serde_json::Value::Object(mut map) = serde_json::to_value(args)? else {
        bail!("settings did not serialise to a map")
    };
    map.retain(|_, v| !(v.is_null() || *v == serde_json::Value::Bool(false)));
    Ok(map)
}

/// Below this sled's cache holds too few pages to keep a tree's upper levels.
const MIN_SLED_CACHE_MB: u64 = 16;

/// Where the identity provider's last good key set is kept, under the data directory.
pub const IDP_CACHE_DIR: &str = "idp";

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

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{Args, Parser};

    #[derive(Parser)]
    struct Serve {
        #[command(flatten)]
        args: ServeArgs,
    }

    /// Two values for a key, as a flag or environment variable would give them, chosen by the
    /// key's name; a key of a new kind fails the test below until it has a case here.
    fn samples(key: &str, switch: bool) -> [&'static str; 2] {
        if switch {
            ["true", "true"]
        } else if key.ends_with("listen") {
            ["127.0.0.1:4101", "127.0.0.1:4102"]
        } else if key == "auth" {
            ["off", "jwt"]
        } else if ["seconds", "mb", "every", "days", "threshold", "connections"].iter().any(|s| key.ends_with(s)) {
            ["41", "42"]
        } else {
            ["https://a.example", "https://b.example"]
        }
    }

    fn in_force(cli: &[&str]) -> serde_json::Value {
        let parsed = Serve::try_parse_from(std::iter::once("serve").chain(cli.iter().copied()))
            .unwrap_or_else(|e| panic!("{cli:?}: {e}"));
        serde_json::to_value(parsed.args.layered().unwrap_or_else(|e| panic!("{cli:?}: {e:#}"))).unwrap()
    }

    /// What the settings hold for `key` once set to `value`, as JSON.
    fn expected(value: &str, switch: bool, list: bool) -> serde_json::Value {
        match value.parse::<u64>() {
            _ if switch => serde_json::Value::Bool(true),
            _ if list => serde_json::json!([value]),
            Ok(n) => n.into(),
            Err(_) => value.into(),
        }
    }

    /// Every key of `serve` works from the file and from its flag over the file, and has its
    /// `FORLOP_` variable (which clap reads into the same layer as the flag, below it; the
    /// end-to-end startup test shows one over the file): the layers are not a list that a new
    /// key can be left out of.
    #[test]
    fn every_setting_works_from_the_file_and_from_its_flag_over_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("forlop.toml");
        let config = file.to_str().unwrap();
        let command = ServeArgs::augment_args(clap::Command::new("serve"));
        let mut keys = 0;
        for arg in command.get_arguments().filter(|a| a.get_id() != "config") {
            let key = arg.get_long().expect("every setting has a flag");
            let id = arg.get_id().as_str();
            let env = format!("FORLOP_{}", id.to_uppercase());
            assert_eq!(arg.get_env().and_then(|e| e.to_str()), Some(env.as_str()), "{key}'s environment variable");
            let switch = !arg.get_action().takes_values();
            let list = arg.get_value_delimiter().is_some();
            let [a, b] = samples(key, switch);
            let in_file = if switch || a.parse::<u64>().is_ok() {
                a.to_owned()
            } else if list {
                format!("[{a:?}]")
            } else {
                format!("{a:?}")
            };
            std::fs::write(&file, format!("{key} = {in_file}\n")).unwrap();
            assert_eq!(in_force(&["--config", config])[key], expected(a, switch, list), "{key} from the file");
            if switch {
                keys += 1;
                continue;
            }
            let flag = format!("--{key}={b}");
            assert_eq!(in_force(&["--config", config, &flag])[key], expected(b, switch, list), "{flag} over the file");
            keys += 1;
        }
        assert!(keys >= 30, "the test saw every setting ({keys})");

        std::fs::write(&file, "no-such-setting = 1\n").unwrap();
        let refused = Serve::try_parse_from(["serve", "--config", config]).unwrap().args.layered().unwrap_err();
        assert!(format!("{refused:#}").contains("no-such-setting"), "an unknown key is named: {refused:#}");
    }
}
