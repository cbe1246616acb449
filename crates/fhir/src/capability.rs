//! The CapabilityStatement: exactly the interactions, operations and search parameters this
//! server serves (a test exercises each one it lists).

use serde_json::{json, Value};

use crate::resources::ACCEPTED;

/// `GET /fhir/metadata`: what this server does, as a CapabilityStatement.
pub fn capability_statement(base: &str) -> Value {
    let resources: Vec<Value> = ACCEPTED
        .iter()
        .map(|r| {
            let interaction =
                if crate::read::READABLE.contains(r) { json!([{ "code": "read" }]) } else { json!([]) };
            let mut v = json!({ "type": r, "interaction": interaction });
            if let Some((_, params)) = crate::search::SEARCH_PARAMETERS.iter().find(|(t, _)| t == r) {
                let mut interaction = v["interaction"].as_array().cloned().unwrap_or_default();
                interaction.push(json!({ "code": "search-type" }));
                v["interaction"] = json!(interaction);
                let listed: Vec<Value> = params
                    .iter()
                    .chain(&[("_lastUpdated", "date")])
                    .map(|(name, kind)| json!({ "name": name, "type": kind }))
                    .collect();
                v["searchParam"] = json!(listed);
            }
            if *r == "Patient" {
                v["operation"] = json!([{ "name": "everything", "definition": "http://hl7.org/fhir/OperationDefinition/Patient-everything" }]);
            }
            v
        })
        .collect();
    json!({
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": "2026-11-25",
        "kind": "instance",
        "software": { "name": "forlop", "version": env!("CARGO_PKG_VERSION") },
        "implementation": { "description": "forlop: mental-health care pathways", "url": base },
        "fhirVersion": "4.0.1",
        "format": ["application/fhir+json"],
        "rest": [{
            "mode": "server",
            "security": { "service": [{ "text": "OAuth (bearer JWT)" }], "description": "Every request carries a bearer JWT; facts are recorded with the integration role." },
            "resource": resources,
            "interaction": [{ "code": "transaction" }, { "code": "batch" }],
            "operation": [{ "name": "import", "definition": "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/import" }]
        }]
    })
}
