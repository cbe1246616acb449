use super::*;
use forlop_domain::*;

#[test]
fn profiles_never_share_an_id() {
    let ids = |d: &Dataset| {
        d.reference
            .iter()
            .chain(d.patients.iter().flatten())
            .map(|s| s.event_id)
            .collect::<std::collections::HashSet<_>>()
    };
    let (city, rph) = (ids(&demo(2016, 200)), ids(&rph2016(2016)));
    assert!(city.is_disjoint(&rph), "the demo loads both profiles with one seed");
}

#[test]
fn same_seed_same_dataset() {
    let a = demo(7, 50);
    let b = demo(7, 50);
    let ids = |d: &Dataset| d.patients.iter().flatten().map(|s| s.event_id).collect::<Vec<_>>();
    assert_eq!(ids(&a), ids(&b));
    assert_ne!(ids(&a), ids(&demo(8, 50)));
}

#[test]
fn every_generated_command_passes_the_domain_rules() {
    for seed in 0..5 {
        let d = demo(seed, 400);
        let catalog = Catalog::from_reference(&d.reference);
        for r in &d.reference {
            decide(&StreamState::default(), &References::default(), r.command.clone()).unwrap();
        }
        for p in &d.patients {
            if let Err(e) = decide_stream(&catalog, p) {
                panic!("seed {seed}: {e}: {p:#?}");
            }
        }
        let rph = rph2016(seed);
        let catalog = Catalog::from_reference(&rph.reference);
        for p in &rph.patients {
            if let Err(e) = decide_stream(&catalog, p) {
                panic!("rph2016 seed {seed}: {e}: {p:#?}");
            }
        }
        let sessions =
            d.patients.iter().flatten().filter(|s| matches!(s.command, Command::RecordSession { .. })).count();
        assert!(sessions > 400 * 3, "pathways have sessions: {sessions}");
    }
}
