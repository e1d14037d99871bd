//! The command line of the measuring tools in `benches/` (`load`,
//! `registrations`, `layer_instructions`): `cargo bench --bench NAME -- ARGS`.

/// The tool's own arguments, or `None` when it runs without the `--bench`
/// flag that `cargo bench` appends: under `cargo test --benches`, which
/// should only see it build, not start servers or send load.
pub fn args() -> Option<Vec<String>> {
    let mut benching = false;
    let args = std::env::args()
        .skip(1)
        .filter(|arg| {
            let flag = arg == "--bench";
            benching |= flag;
            !flag
        })
        .collect();
    if !benching {
        eprintln!("not run: measuring tool, run it with `cargo bench --bench NAME`");
    }
    benching.then_some(args)
}
