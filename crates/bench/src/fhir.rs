//! `fhir_import_rps`: a synthetic bulk file of R4 resources, as a record system would export
//! it, imported by `forlop import-fhir` in a child process (so its peak memory is its own).

use std::io::Write;
use std::path::Path;
use std::time::Instant;

use anyhow::Context;
use serde_json::json;

use crate::server::Forlop;

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
        write_resource(&mut out, v)?;
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

/// One resource as one line, `resourceType` first, as R4's JSON format places it and servers'
/// bulk exports write it (serde_json's map would sort it among the other members).
fn write_resource(out: &mut impl Write, mut resource: serde_json::Value) -> anyhow::Result<()> {
    let type_name = resource
        .as_object_mut()
        .and_then(|m| m.remove("resourceType"))
        .context("a bench resource without resourceType")?;
    let rest = serde_json::to_string(&resource)?;
    match rest.strip_prefix('{').filter(|r| *r != "}") {
        Some(members) => writeln!(out, "{{\"resourceType\":{type_name},{members}")?,
        None => writeln!(out, "{{\"resourceType\":{type_name}}}")?,
    }
    Ok(())
}

/// What `runs` imports of one bulk file measured.
pub struct FhirImport {
    /// Resources per second of each run, in the order run.
    pub rates: Vec<f64>,
    /// The largest peak resident memory of any run, in MB.
    pub peak_mb: f64,
    pub lines: usize,
}

impl FhirImport {
    /// The median rate: this VM class's pace swings ±15 % with its host within minutes, so one
    /// run cannot say whether a target is met reliably.
    pub fn median(&self) -> f64 {
        forlop_projections::reports::Distribution::of(self.rates.clone()).median.unwrap_or(0.0)
    }

    /// "median of 3 runs: 48,001 / 51,230 / 50,112", for the table.
    pub fn runs(&self) -> String {
        let each: Vec<String> = self.rates.iter().map(|r| format!("{r:.0}")).collect();
        format!("median of {} runs: {}", self.rates.len(), each.join(" / "))
    }
}

/// `forlop import-fhir` over `resources` resources, `runs` times into an empty data directory
/// each time (the file is written once).
pub fn fhir_import(forlop: &Forlop, dir: &Path, resources: usize, runs: usize) -> anyhow::Result<FhirImport> {
    let file = dir.join("bulk.ndjson");
    let lines = write_ndjson(&file, resources)?;
    let levels = dir.join("care-levels.toml");
    std::fs::write(&levels, CARE_LEVELS)?;
    let key = dir.join("bench-master.key");
    std::fs::write(&key, forlop_vault::MasterKey::generate().to_base64())?;
    let mut measured = FhirImport { rates: Vec::new(), peak_mb: 0.0, lines };
    for run in 0..runs.max(1) {
        let data = dir.join(format!("fhir-data-{run}"));
        let (seconds, peak_mb) = import_once(forlop, &data, &key, &levels, &file)?;
        std::fs::remove_dir_all(&data).with_context(|| format!("removing {}", data.display()))?;
        measured.rates.push(lines as f64 / seconds);
        measured.peak_mb = measured.peak_mb.max(peak_mb);
    }
    Ok(measured)
}

/// Seconds from process start to exit, and peak resident MB, of one `import-fhir`.
fn import_once(forlop: &Forlop, data: &Path, key: &Path, levels: &Path, file: &Path) -> anyhow::Result<(f64, f64)> {
    let started = Instant::now();
    let out = forlop
        .command("import-fhir")
        .arg("--data")
        .arg(data)
        .arg("--key-file")
        .arg(key)
        .arg("--fhir-care-levels")
        .arg(levels)
        .arg(file)
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
    Ok((seconds, peak_kb / 1024.0))
}

#[cfg(test)]
mod tests {
    use super::{write_ndjson, FhirImport};

    #[test]
    fn the_reported_rate_is_the_median_of_the_runs() {
        let of = |rates: &[f64]| FhirImport { rates: rates.to_vec(), peak_mb: 0.0, lines: 0 }.median();
        assert_eq!(of(&[52_000.0, 44_000.0, 50_000.0]), 50_000.0);
        assert_eq!(of(&[40_000.0, 50_000.0]), 45_000.0);
        assert_eq!(of(&[47_000.0]), 47_000.0);
        let runs = FhirImport { rates: vec![48_001.4, 51_230.0], peak_mb: 0.0, lines: 0 }.runs();
        assert_eq!(runs, "median of 2 runs: 48001 / 51230");
    }

    #[test]
    fn the_bulk_file_puts_resource_type_first_and_keeps_every_member() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("bulk.ndjson");
        let lines = write_ndjson(&file, 211).unwrap();
        let text = std::fs::read_to_string(&file).unwrap();
        assert_eq!(text.lines().count(), lines);
        for line in text.lines() {
            assert!(line.starts_with(r#"{"resourceType":""#), "{line}");
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            assert!(v["id"].is_string(), "{line}");
        }
        let patient = text.lines().find(|l| l.contains(r#""Patient","#)).unwrap();
        let v: serde_json::Value = serde_json::from_str(patient).unwrap();
        assert_eq!(v["resourceType"], "Patient");
        assert_eq!(v["id"], "p0");
        assert_eq!(v["birthDate"], "1940");
    }
}
