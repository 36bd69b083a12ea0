//! What the harness-less benchmarks share.

/// `cargo bench` passes `--bench`; `cargo test --all-targets` runs bench binaries without it
/// (`test = false` does not stop an explicit `--benches`), and a minutes-long measurement is no
/// test: say so and stop.
pub fn under_cargo_bench() -> bool {
    let bench = std::env::args().any(|arg| arg == "--bench");
    if !bench {
        eprintln!("not run: a benchmark, started by `cargo bench`, not by `cargo test`");
    }
    bench
}
