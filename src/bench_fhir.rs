//! `fhir_import_rps`: a synthetic bulk file of R4 resources, as a record system would export
//! it, imported by `forlop import-fhir` in a child process (so its peak memory is its own).

use std::io::Write as _;
use std::path::Path;
use std::time::Instant;

use anyhow::Context;
use serde_json::json;

const RESH: &str = "urn:oid:2.16.578.1.12.4.1.4.102";
const HPR: &str = "urn:oid:2.16.578.1.12.4.1.4.4";
const THERAPISTS: usize = 200;
/// Resources per patient: Patient, ServiceRequest, EpisodeOfCare, six sessions, one PHQ-9.
const PER_PATIENT: usize = 10;

const CARE_LEVELS: &str = r#"
[[service]]
system = "urn:oid:2.16.578.1.12.4.1.4.102"
value = "4001031"
care_level = "MUNICIPAL"
"#;

/// Writes about `resources` resources as NDJSON; returns the number of lines.
pub fn write_ndjson(path: &Path, resources: usize) -> anyhow::Result<usize> {
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    let mut lines = 0;
    let mut line = |v: serde_json::Value| -> anyhow::Result<()> {
        serde_json::to_writer(&mut out, &v)?;
        out.write_all(b"\n")?;
        lines += 1;
        Ok(())
    };
    line(
        json!({ "resourceType": "Organization", "id": "rph", "name": "RPH", "identifier": [{ "system": RESH, "value": "4001031" }] }),
    )?;
    for t in 0..THERAPISTS {
        line(
            json!({ "resourceType": "Practitioner", "id": format!("pr-{t}"), "name": [{ "text": format!("Terapeut {t}") }],
            "identifier": [{ "system": HPR, "value": format!("{}", 9_000_000 + t) }] }),
        )?;
    }
    let patients = resources.saturating_sub(1 + THERAPISTS) / PER_PATIENT;
    let phq9_items =
        ["44250-9", "44255-8", "44259-0", "44254-1", "44251-7", "44258-2", "44252-5", "44253-3", "44260-8"];
    for n in 0..patients {
        let (p, therapist) = (format!("p{n}"), format!("Practitioner/pr-{}", n % THERAPISTS));
        let day = |d: u32| {
            let date = chrono::NaiveDate::from_ymd_opt(2015, 1, 1).unwrap_or_default()
                + chrono::Duration::days(((n * 7) % 2500) as i64 + d as i64);
            format!("{date}T10:00:00Z")
        };
        line(json!({ "resourceType": "Patient", "id": p, "gender": if n % 2 == 0 { "female" } else { "male" },
            "birthDate": format!("{}", 1940 + n % 70) }))?;
        line(
            json!({ "resourceType": "ServiceRequest", "id": format!("{p}-sr"), "status": "active", "intent": "order",
            "subject": { "reference": format!("Patient/{p}") }, "requester": { "reference": format!("Patient/{p}") },
            "performer": [{ "reference": "Organization/rph" }], "authoredOn": day(0) }),
        )?;
        line(json!({ "resourceType": "EpisodeOfCare", "id": format!("{p}-eoc"), "status": "finished",
            "patient": { "reference": format!("Patient/{p}") }, "managingOrganization": { "reference": "Organization/rph" },
            "referralRequest": [{ "reference": format!("ServiceRequest/{p}-sr") }],
            "careManager": { "reference": therapist },
            "period": { "start": day(7), "end": day(60) } }))?;
        for s in 0..6 {
            line(json!({ "resourceType": "Encounter", "id": format!("{p}-e{s}"), "status": "finished",
                "class": { "code": "AMB" }, "subject": { "reference": format!("Patient/{p}") },
                "episodeOfCare": [{ "reference": format!("EpisodeOfCare/{p}-eoc") }],
                "participant": [{ "individual": { "reference": therapist } }],
                "period": { "start": day(8 + 7 * s) } }))?;
        }
        let component: Vec<serde_json::Value> = phq9_items
            .iter()
            .enumerate()
            .map(|(i, code)| json!({ "code": { "coding": [{ "system": "http://loinc.org", "code": code }] }, "valueInteger": (n + i) % 4 }))
            .collect();
        line(json!({ "resourceType": "Observation", "id": format!("{p}-phq"), "status": "final",
            "code": { "coding": [{ "system": "http://loinc.org", "code": "44261-6" }] },
            "subject": { "reference": format!("Patient/{p}") }, "encounter": { "reference": format!("Encounter/{p}-e0") },
            "effectiveDateTime": day(8), "component": component }))?;
    }
    out.flush()?;
    Ok(lines)
}

/// Resources per second and peak resident MB of `forlop import-fhir` over `resources` resources.
pub fn fhir_import(dir: &Path, resources: usize) -> anyhow::Result<(f64, f64, usize)> {
    let file = dir.join("bulk.ndjson");
    let lines = write_ndjson(&file, resources)?;
    let levels = dir.join("care-levels.toml");
    std::fs::write(&levels, CARE_LEVELS)?;
    let key = dir.join("bench-master.key");
    std::fs::write(&key, forlop_vault::MasterKey::generate().to_base64())?;
    let data = dir.join("fhir-data");
    let started = Instant::now();
    let out = std::process::Command::new(std::env::current_exe()?)
        .arg("import-fhir")
        .arg("--data")
        .arg(&data)
        .arg("--key-file")
        .arg(&key)
        .arg("--fhir-care-levels")
        .arg(&levels)
        .arg(&file)
        .env("FORLOP_LOG", "warn")
        .output()?;
    let seconds = started.elapsed().as_secs_f64();
    let stderr = String::from_utf8_lossy(&out.stderr);
    anyhow::ensure!(out.status.success(), "import-fhir failed: {stderr}");
    anyhow::ensure!(stderr.contains("failed 0"), "import-fhir failed lines: {stderr}");
    let peak_kb: f64 = stderr
        .lines()
        .find_map(|l| l.strip_prefix("import-fhir: peak resident memory ")?.strip_suffix(" kB")?.parse().ok())
        .context("import-fhir did not report its peak memory")?;
    Ok((lines as f64 / seconds, peak_kb / 1024.0, lines))
}
