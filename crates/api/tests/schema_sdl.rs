//! The checked-in SDL at schema/forlop.graphql must match the schema the code builds.

#[test]
fn checked_in_schema_is_current() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../schema/forlop.graphql");
    let current = forlop_api::sdl();
    let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
    if checked_in != current {
        std::fs::write(&path, &current).expect("rewrite schema/forlop.graphql");
        panic!("schema/forlop.graphql was not up to date; it has been rewritten, rerun the tests and commit it");
    }
}

#[test]
fn contract_names_are_in_the_schema() {
    let sdl = forlop_api::sdl();
    for name in [
        "scalar UUID",
        "scalar DateTime",
        "enum CareLevel",
        "SPECIALIST_INPATIENT",
        "enum ReferralSource",
        "SELF",
        "enum Instrument",
        "PHQ9",
        "GAD7",
        "type Recorded",
        "registerService(input: RegisterServiceInput!): Recorded!",
        "recordOutcome(input: RecordOutcomeInput!): Recorded!",
        "patient(id: UUID!",
        "services: [Service!]!",
        "sameTherapistAcrossCareLevels: Boolean",
        "events(patientId: UUID, after: Int, fromPosition: Int): Event!",
    ] {
        assert!(sdl.contains(name), "schema lacks {name:?}");
    }
}
