//! Times the guard over the legitimate corpus: per-query microseconds (the
//! best and the median of many runs), to hold it to the target of
//! 0.2 ms. Run with `cargo bench --workspace --bench guard` (release build).

use std::hint::black_box;
use std::time::{Duration, Instant};

use query::guard::{admit, GuardPolicy};

#[path = "../tests/corpus/legitimate.rs"]
mod legitimate;

const RUNS: usize = 200;

fn main() {
    let policy = GuardPolicy::new("transformed_acme", Some("ll-cell-eu1".to_owned()), 1000);
    let mut medians = Vec::new();
    println!(
        "{:>4} {:>9} {:>10} {:>10}  query",
        "#", "dialect", "best µs", "median µs"
    );
    for (index, (on, sql)) in legitimate::LEGITIMATE.iter().enumerate() {
        for dialect in on.dialects() {
            let mut times: Vec<Duration> = Vec::with_capacity(RUNS);
            for _ in 0..RUNS {
                let start = Instant::now();
                let result = admit(black_box(sql), *dialect, &policy);
                times.push(start.elapsed());
                if let Err(r) = black_box(result) {
                    eprintln!("query {index} was refused: {r}");
                    std::process::exit(1);
                }
            }
            times.sort();
            let best = times[0];
            let median = times[RUNS / 2];
            medians.push(median);
            let first_line = sql.split_whitespace().collect::<Vec<_>>().join(" ");
            let shown: String = first_line.chars().take(60).collect();
            println!(
                "{index:>4} {:>9} {:>10.1} {:>10.1}  {shown}",
                format!("{dialect:?}"),
                best.as_secs_f64() * 1e6,
                median.as_secs_f64() * 1e6,
            );
        }
    }
    medians.sort();
    let worst = medians.last().copied().unwrap_or_default();
    let middle = medians.get(medians.len() / 2).copied().unwrap_or_default();
    println!(
        "{} queries: median of medians {:.1} µs, worst median {:.1} µs (target 200 µs)",
        medians.len(),
        middle.as_secs_f64() * 1e6,
        worst.as_secs_f64() * 1e6,
    );
}
