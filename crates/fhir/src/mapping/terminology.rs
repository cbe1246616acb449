//! The code systems, codes and extensions forlop reads pathway facts by.

/// Norwegian national id numbers: fødselsnummer, D-nummer and H-nummer.
pub const SYSTEM_FNR: &str = "urn:oid:2.16.578.1.12.4.1.4.1";
pub const SYSTEM_DNR: &str = "urn:oid:2.16.578.1.12.4.1.4.2";
pub const SYSTEM_HNR: &str = "urn:oid:2.16.578.1.12.4.1.4.3";
/// The systems a patient's national id is given in.
pub const NATIONAL_ID_SYSTEMS: [&str; 3] = [SYSTEM_FNR, SYSTEM_DNR, SYSTEM_HNR];
/// The Norwegian register of health personnel (HPR numbers).
pub const SYSTEM_HPR: &str = "urn:oid:2.16.578.1.12.4.1.4.4";
pub const LOINC: &str = "http://loinc.org";
pub const PHQ9_TOTAL: &str = "44261-6";
pub const PHQ9_PANEL: &str = "44249-1";
pub const GAD7_TOTAL: &str = "70274-6";
pub const GAD7_PANEL: &str = "69737-5";
pub const PHQ9_ITEMS: [&str; 9] =
    ["44250-9", "44255-8", "44259-0", "44254-1", "44251-7", "44258-2", "44252-5", "44253-3", "44260-8"];
pub const GAD7_ITEMS: [&str; 7] = ["69725-0", "68509-9", "69733-4", "69734-2", "69735-9", "69689-8", "69736-7"];
/// LOINC answer codes for "not at all" … "nearly every day".
const ANSWERS: [&str; 4] = ["LA6568-5", "LA6569-3", "LA6570-1", "LA6571-9"];
/// SNOMED CT "General practitioner (occupation)" on a PractitionerRole; also the Norwegian word.
pub const GP_CODES: [&str; 3] = ["62247001", "fastlege", "GP"];

/// forlop's own extensions and code systems, for what FHIR has no element for.
pub const EXT_RELEASE_REASON: &str = "https://forlop.no/fhir/StructureDefinition/release-reason";
pub const EXT_PATIENT_NOTIFIED: &str = "https://forlop.no/fhir/StructureDefinition/patient-notified";
pub const EXT_END_REASON: &str = "https://forlop.no/fhir/StructureDefinition/end-reason";
pub const EXT_ACUTE: &str = "https://forlop.no/fhir/StructureDefinition/acute";
pub const PHASE_SYSTEM: &str = "https://forlop.no/fhir/CodeSystem/measure-phase";

/// A LOINC answer code's score (0 "not at all" … 3 "nearly every day").
pub fn answer_score(code: &str) -> Option<i64> {
    ANSWERS.iter().position(|a| *a == code).map(|v| v as i64)
}
