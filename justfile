# Hive developer recipes. `scripts/test-all` is the canonical test command (README, CI).

# Three real servers on loopback as one system (the README's run command).
demo:
    cargo run --release -p hive -- demo

# A narrated hive of simulated servers running the real driver.
sim-demo:
    cargo run --release -p hive-sim -- demo

# Everything CI runs.
test:
    scripts/test-all

# Sweep N seeds of randomised scenarios (timing, server count, fault mix and schedule drawn
# from each seed), e.g. `just sim 1000000`; failing seeds print their replay command.
sim N="1000" START="0":
    cargo run --release -p hive-sim -- sweep {{N}} --start {{START}} --jobs "$(nproc)"

# Sweep seeds from START for SECONDS of wall time, as `scripts/test-all` does.
sim-for SECONDS="180" START="0":
    cargo run --release -p hive-sim -- sweep --seconds {{SECONDS}} --start {{START}} --jobs "$(nproc)"

# Replay one seed step by step.
replay SEED:
    cargo run --release -p hive-sim -- replay {{SEED}}

# The figures of docs/benchmarks.md.
bench:
    cargo build --release -p hive-sim
    ./target/release/hive-sim bench-merge --side 50 --cameras 1000 --latency-ms 20
    ./target/release/hive-sim bench-merge-turmoil --side 50 --cameras 1000 --latency-ms 20
    ./target/release/hive-sim bench-des --servers 100 --seconds 3600
    ./target/release/hive-sim bench-des --servers 20 --seconds 3600
    ./target/release/hive-sim bench-turmoil --servers 20 --seconds 300
    ./target/release/hive-sim bench-time --seeds 1000
    cargo build --release -p hive -p hive-tests
    HIVE_BIN=target/release/hive ./target/release/hive-bench all
    HIVE_BIN=target/release/hive ./target/release/hive-video-bench all
    HIVE_BIN=target/release/hive ./target/release/hive-relay-bench all
    HIVE_BIN=target/release/hive ./target/release/hive-web-bench --trials 30

# Before/after figures of two checkouts, interleaved (docs/benchmarks.md, "Cost of encryption").
bench-before-after BEFORE ROUNDS="2":
    cargo build --release -p hive -p hive-sim -p hive-tests
    scripts/bench-before-after {{BEFORE}} {{ROUNDS}}

# Fuzz every decoder for SECONDS each.
fuzz SECONDS="60":
    FUZZ_SECONDS={{SECONDS}} fuzz/run.sh
