//! Seeded random scenarios in the discrete-event simulator; `hive-sim sweep N` runs more.

use hive_sim::scenario;

#[test]
fn the_same_seed_gives_the_same_trace() {
    for seed in [3, 17, 99] {
        let (a, b) = (scenario::run(seed), scenario::run(seed));
        assert_eq!(a.trace, b.trace, "seed {seed} is not deterministic");
        assert_eq!(a.steps, b.steps);
    }
    assert_ne!(scenario::run(1).trace, scenario::run(2).trace);
}

#[test]
fn forty_random_scenarios_keep_every_invariant() {
    for seed in 1_000..1_040 {
        let o = scenario::run(seed);
        if let Err(v) = o.result {
            panic!(
                "seed {seed}: {v}\nsteps:\n{}\nreplay: {}",
                o.steps.join("\n"),
                scenario::replay_command(seed)
            );
        }
    }
}
