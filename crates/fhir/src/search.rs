//! Search, as FHIR clients send it: a patient's resources by type (`EpisodeOfCare?patient=…`)
//! with the parameters integrations use, and `Patient?identifier=system|value`. Every search
//! reads the patient's pathway through `Fhir::pathway`, so it is authorised and access-logged
//! as a read, and then filters, sorts and pages what that read shows.

use chrono::{DateTime, Duration, NaiveDate, Utc};
use forlop_domain::text::quote;
use forlop_engine::{Caller, EngineError};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::identity::identifier_name;
use crate::mapping::terminology::NATIONAL_ID_SYSTEMS;
use crate::outcome::{Issue, IssueType};
use crate::read::meta_of;
use crate::Fhir;

/// The search parameters each type takes (besides `_count`, `_sort`, `_lastUpdated`), as the
/// CapabilityStatement lists them.
pub const SEARCH_PARAMETERS: &[(&str, &[(&str, &str)])] = &[
    ("Patient", &[("identifier", "token")]),
    ("EpisodeOfCare", &[("patient", "reference"), ("status", "token"), ("date", "date")]),
    ("Encounter", &[("patient", "reference"), ("date", "date"), ("class", "token"), ("status", "token")]),
    ("ServiceRequest", &[("patient", "reference"), ("status", "token"), ("authored", "date")]),
    ("Observation", &[("patient", "reference"), ("code", "token"), ("date", "date")]),
];
/// The result parameters every search takes.
pub const RESULT_PARAMETERS: &[(&str, &str)] = &[("_count", "number"), ("_sort", "string"), ("_lastUpdated", "date")];
/// Entries on a page unless `_count` says otherwise, and the most it may ask for.
pub const DEFAULT_COUNT: usize = 50;
pub const MAX_COUNT: usize = 1000;

/// A search as asked: the type and its parameters in the order sent.
#[derive(Debug, Clone)]
pub struct SearchRequest {
    pub type_name: String,
    pub params: Vec<(String, String)>,
    /// `Prefer: handling=lenient`: unknown parameters are ignored instead of refused.
    pub lenient: bool,
}

impl SearchRequest {
    /// A search of `type_name` from a URL's query (`a=1&b=2`, escapes decoded; `+` is kept, as
    /// in a dateTime's offset), lenient when the request says `Prefer: handling=lenient`.
    pub fn from_query(type_name: &str, query: Option<&str>, lenient: bool) -> SearchRequest {
        let params = crate::query::query_params(query.unwrap_or(""));
        SearchRequest { type_name: type_name.to_owned(), params, lenient }
    }
}

/// A date parameter: its comparator and the range `lo..hi` its value stands for (a day, or an
/// instant).
#[derive(Debug, Clone, Copy)]
struct DateFilter {
    prefix: Prefix,
    lo: DateTime<Utc>,
    hi: DateTime<Utc>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Prefix {
    Eq,
    Ge,
    Gt,
    Le,
    Lt,
}

impl DateFilter {
    fn parse(value: &str, at: &str) -> Result<DateFilter, Issue> {
        let (prefix, rest) = match value.get(..2) {
            Some("eq") => (Prefix::Eq, &value[2..]),
            Some("ge") => (Prefix::Ge, &value[2..]),
            Some("gt") => (Prefix::Gt, &value[2..]),
            Some("le") => (Prefix::Le, &value[2..]),
            Some("lt") => (Prefix::Lt, &value[2..]),
            _ => (Prefix::Eq, value),
        };
        let bad = || {
            Issue::new(
                IssueType::Value,
                at,
                format!("{} is not a date (YYYY-MM-DD) or dateTime, with eq, ge, gt, le or lt", quote(value)),
            )
        };
        if let Ok(day) = NaiveDate::parse_from_str(rest, "%Y-%m-%d") {
            let lo = day.and_hms_opt(0, 0, 0).ok_or_else(bad)?.and_utc();
            return Ok(DateFilter { prefix, lo, hi: lo + Duration::days(1) });
        }
        let t = DateTime::parse_from_rfc3339(rest).map_err(|_| bad())?.with_timezone(&Utc);
        Ok(DateFilter { prefix, lo: t, hi: t + Duration::nanoseconds(1) })
    }

    /// Whether a resource whose date runs from `start` to `end` (inclusive; open when None)
    /// matches, as FHIR compares ranges: `eq` overlaps the value's range, `ge`/`le` reach into
    /// or beyond it, `gt`/`lt` reach beyond it.
    fn matches(&self, start: DateTime<Utc>, end: Option<DateTime<Utc>>) -> bool {
        let reaches = |t: DateTime<Utc>| end.is_none_or(|e| e >= t);
        match self.prefix {
            Prefix::Eq => start < self.hi && reaches(self.lo),
            Prefix::Ge => reaches(self.lo),
            Prefix::Gt => reaches(self.hi),
            Prefix::Le => start < self.hi,
            Prefix::Lt => start < self.lo,
        }
    }
}

/// A resource's date, as its type's `date` parameter reads it.
fn date_of(r: &Value) -> Option<(DateTime<Utc>, Option<DateTime<Utc>>)> {
    let parse =
        |v: &Value| v.as_str().and_then(|s| DateTime::parse_from_rfc3339(s).ok()).map(|t| t.with_timezone(&Utc));
    match r["resourceType"].as_str()? {
        // An episode or a stay without an end is still going on; a session is a point in time.
        "EpisodeOfCare" => Some((parse(&r["period"]["start"])?, parse(&r["period"]["end"]))),
        "Encounter" => {
            let start = parse(&r["period"]["start"])?;
            let ongoing = r["status"] == "in-progress";
            Some((start, parse(&r["period"]["end"]).or(if ongoing { None } else { Some(start) })))
        }
        "ServiceRequest" => parse(&r["authoredOn"]).map(|t| (t, Some(t))),
        "Observation" => parse(&r["effectiveDateTime"]).map(|t| (t, Some(t))),
        _ => None,
    }
}

/// `system|code`, `|code` or `code` against a CodeableConcept or a Coding.
fn token_matches(value: &str, codings: &[Value]) -> bool {
    let (system, code) = match value.split_once('|') {
        Some((s, c)) => (Some(s), c),
        None => (None, value),
    };
    codings.iter().any(|c| {
        c["code"].as_str() == Some(code)
            && match system {
                None => true,
                Some("") => c.get("system").is_none(),
                Some(s) => c["system"].as_str() == Some(s),
            }
    })
}

/// What a search filters by, once its parameters are read.
#[derive(Debug, Default)]
struct Filters {
    patient: Option<Uuid>,
    identifier: Option<(String, String)>,
    status: Option<Vec<String>>,
    class: Option<String>,
    code: Option<String>,
    dates: Vec<DateFilter>,
    last_updated: Vec<DateFilter>,
    count: usize,
    offset: usize,
    descending: Option<bool>,
}

fn filters(req: &SearchRequest) -> Result<Filters, Vec<Issue>> {
    let t = req.type_name.as_str();
    let own: &[(&str, &str)] = SEARCH_PARAMETERS.iter().find(|(n, _)| *n == t).map(|(_, p)| *p).unwrap_or(&[]);
    let mut f = Filters { count: DEFAULT_COUNT, ..Filters::default() };
    let mut issues = Vec::new();
    for (key, value) in &req.params {
        let at = format!("{t}?{key}");
        let known =
            own.iter().any(|(n, _)| n == key) || RESULT_PARAMETERS.iter().any(|(n, _)| n == key) || key == "_offset";
        if !known {
            if !req.lenient {
                issues.push(Issue::new(
                    IssueType::NotSupported,
                    at,
                    format!(
                        "{t} is not searched by {}; it takes {} (or send Prefer: handling=lenient to ignore unknown parameters)",
                        quote(key),
                        own.iter().map(|(n, _)| *n).chain(RESULT_PARAMETERS.iter().map(|(n, _)| *n)).collect::<Vec<_>>().join(", ")
                    ),
                ));
            }
            continue;
        }
        let result = match key.as_str() {
            "patient" => {
                let id = value.strip_prefix("Patient/").unwrap_or(value);
                id.parse()
                    .map(|id| f.patient = Some(id))
                    .map_err(|_| Issue::new(IssueType::Value, at, "patient takes Patient/{id}, forlop's patient id"))
            }
            "identifier" => match value.split_once('|') {
                Some((s, v)) if !s.is_empty() && !v.is_empty() => {
                    f.identifier = Some((s.to_owned(), v.to_owned()));
                    Ok(())
                }
                _ => Err(Issue::new(IssueType::Value, at, "identifier takes system|value")),
            },
            "status" => {
                f.status = Some(value.split(',').map(str::to_owned).collect());
                Ok(())
            }
            "class" => {
                f.class = Some(value.clone());
                Ok(())
            }
            "code" => {
                f.code = Some(value.clone());
                Ok(())
            }
            "date" | "authored" => DateFilter::parse(value, &at).map(|d| f.dates.push(d)),
            "_lastUpdated" => DateFilter::parse(value, &at).map(|d| f.last_updated.push(d)),
            "_count" => match value.parse::<usize>() {
                Ok(n) if (1..=MAX_COUNT).contains(&n) => {
                    f.count = n;
                    Ok(())
                }
                _ => Err(Issue::new(IssueType::Value, at, format!("_count takes 1 to {MAX_COUNT}"))),
            },
            "_offset" => value
                .parse()
                .map(|n| f.offset = n)
                .map_err(|_| Issue::new(IssueType::Value, at, "_offset takes a number")),
            "_sort" => match value.as_str() {
                "date" | "authored" => {
                    f.descending = Some(false);
                    Ok(())
                }
                "-date" | "-authored" => {
                    f.descending = Some(true);
                    Ok(())
                }
                other => Err(Issue::new(
                    IssueType::NotSupported,
                    at,
                    format!("_sort takes date or -date, not {}", quote(other)),
                )),
            },
            _ => Ok(()),
        };
        if let Err(i) = result {
            issues.push(i);
        }
    }
    if t == "Patient" && f.identifier.is_none() {
        issues.push(Issue::new(
            IssueType::Required,
            "Patient?identifier",
            "a Patient search needs identifier=system|value",
        ));
    }
    if t != "Patient" && f.patient.is_none() {
        issues.push(Issue::new(
            IssueType::Required,
            format!("{t}?patient"),
            format!(
                "{} search needs patient=Patient/{{id}}: forlop searches one patient's record at a time",
                crate::mapping::article(t)
            ),
        ));
    }
    if issues.is_empty() {
        Ok(f)
    } else {
        Err(issues)
    }
}

/// Why a search gave nothing to page: its parameters, or the engine's refusal.
#[derive(Debug)]
pub enum SearchError {
    Parameters(Vec<Issue>),
    Refused(EngineError),
}

impl From<EngineError> for SearchError {
    fn from(e: EngineError) -> SearchError {
        SearchError::Refused(e)
    }
}

impl Fhir {
    /// The searchset Bundle for `req`; `base` is the server's FHIR base URL.
    pub async fn search(&self, caller: &Caller, req: &SearchRequest, base: &str) -> Result<Value, SearchError> {
        if !SEARCH_PARAMETERS.iter().any(|(t, _)| *t == req.type_name) {
            return Err(SearchError::Parameters(vec![Issue::new(
                IssueType::NotSupported,
                req.type_name.clone(),
                format!(
                    "{} is not searched here; forlop searches {}",
                    quote(&req.type_name),
                    SEARCH_PARAMETERS.iter().map(|(t, _)| *t).collect::<Vec<_>>().join(", ")
                ),
            )]));
        }
        let f = filters(req).map_err(SearchError::Parameters)?;
        let t = req.type_name.as_str();
        let patient = match (&f.identifier, f.patient) {
            (Some((system, value)), _) => self.patient_by_identifier(caller, system, value).await?,
            (None, patient) => patient,
        };
        let mut matches = Vec::new();
        // An identifier no patient holds is asked of the engine as an unknown patient, so a
        // caller who may not read it is refused as for one that exists.
        let patient = patient.unwrap_or(Uuid::nil());
        let fields = format!("fhir.{t}.search");
        if let Some((entries, grant)) = self.pathway(caller, patient, base, &fields).await? {
            let events = self.engine().history(&grant).await?;
            for mut e in entries {
                let r = &mut e["resource"];
                if r["resourceType"] != t || !f.keeps(r) {
                    continue;
                }
                let meta = meta_of(r, events.iter().map(|e| (e.payload.as_slice(), e.recorded_at)));
                if !f.last_updated.iter().all(|d| meta.last.is_some_and(|at| d.matches(at, Some(at)))) {
                    continue;
                }
                r["meta"] = meta.json();
                matches.push(e);
            }
        }
        if let Some(descending) = f.descending {
            matches.sort_by_key(|e| date_of(&e["resource"]).map(|(start, _)| start));
            if descending {
                matches.reverse();
            }
        }
        let total = matches.len();
        let page: Vec<Value> = matches.into_iter().skip(f.offset).take(f.count).collect();
        let mut link = vec![json!({ "relation": "self", "url": page_url(base, req, f.offset, f.count) })];
        if f.offset + f.count < total {
            link.push(json!({ "relation": "next", "url": page_url(base, req, f.offset + f.count, f.count) }));
        }
        Ok(json!({ "resourceType": "Bundle", "type": "searchset", "total": total, "link": link, "entry": page }))
    }

    /// The patient an identifier names: by national id through the engine's look-up (access-
    /// logged, for the roles that may), else by the alias index.
    async fn patient_by_identifier(
        &self,
        caller: &Caller,
        system: &str,
        value: &str,
    ) -> Result<Option<Uuid>, SearchError> {
        if NATIONAL_ID_SYSTEMS.contains(&system) {
            let grant = self.engine().read_patient_by_national_id(caller, value, None).await?;
            return Ok(grant.map(|g| g.id()));
        }
        // No name resolves to a forgotten patient.
        Ok(self.alias(&identifier_name("Patient", system, value)).filter(|id| !self.forgotten(*id)))
    }
}

impl Filters {
    fn keeps(&self, r: &Value) -> bool {
        if let Some(statuses) = &self.status {
            if !r["status"].as_str().is_some_and(|s| statuses.iter().any(|x| x == s)) {
                return false;
            }
        }
        if let Some(class) = &self.class {
            if !token_matches(class, std::slice::from_ref(&r["class"])) {
                return false;
            }
        }
        if let Some(code) = &self.code {
            if !token_matches(code, r["code"]["coding"].as_array().map(Vec::as_slice).unwrap_or(&[])) {
                return false;
            }
        }
        if !self.dates.is_empty() {
            let Some((start, end)) = date_of(r) else { return false };
            if !self.dates.iter().all(|d| d.matches(start, end)) {
                return false;
            }
        }
        true
    }
}

/// The URL of a page of `req`'s results.
fn page_url(base: &str, req: &SearchRequest, offset: usize, count: usize) -> String {
    let mut parts: Vec<String> = req
        .params
        .iter()
        .filter(|(k, _)| k != "_offset" && k != "_count")
        .map(|(k, v)| format!("{}={}", encoded(k), encoded(v)))
        .collect();
    parts.push(format!("_count={count}"));
    if offset > 0 {
        parts.push(format!("_offset={offset}"));
    }
    format!("{base}/{}?{}", req.type_name, parts.join("&"))
}

/// A query component with what would break it escaped.
fn encoded(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '&' | '=' | '?' | '#' | '%' | '+' | ' ' => format!("%{:02X}", c as u32),
            c => c.to_string(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn date_prefixes_compare_a_day_as_a_range_and_an_open_period_as_ongoing() {
        let jan = (at("2016-01-11T09:00:00Z"), Some(at("2016-02-08T11:00:00Z")));
        let open = (at("2016-02-15T09:00:00Z"), None);
        let m =
            |q: &str, r: (DateTime<Utc>, Option<DateTime<Utc>>)| DateFilter::parse(q, "").unwrap().matches(r.0, r.1);
        assert!(m("2016-01-20", jan) && !m("2016-02-09", jan));
        assert!(m("ge2016-02-08", jan) && !m("ge2016-02-09", jan));
        assert!(m("lt2016-01-12", jan) && !m("lt2016-01-11", jan));
        assert!(m("le2016-01-11", jan) && !m("le2016-01-10", jan));
        assert!(m("gt2016-02-07", jan) && !m("gt2016-02-08", jan));
        assert!(m("ge2030-01-01", open) && m("gt2030-01-01", open) && !m("lt2016-02-15", open));
        assert!(DateFilter::parse("2016-13-01", "").is_err() && DateFilter::parse("soon", "").is_err());
    }

    #[test]
    fn tokens_match_with_or_without_their_system() {
        let codings = [json!({ "system": "http://loinc.org", "code": "44261-6" })];
        assert!(token_matches("http://loinc.org|44261-6", &codings));
        assert!(token_matches("44261-6", &codings));
        assert!(!token_matches("|44261-6", &codings));
        assert!(!token_matches("http://snomed.info/sct|44261-6", &codings));
    }
}
