//! What `serve --demo` (and `--auth off` on loopback) creates for development: a secret, a
//! master key and one token per role in the data directory, and the demo's patient with a
//! synthetic national id. Nothing here runs without one of those flags.

use std::path::Path;

use anyhow::Context;
use forlop_vault::MasterKey;

use crate::serve::ServeArgs;

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
