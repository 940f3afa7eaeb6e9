//! `filesync-sim`: run simulation seeds (`cargo xtask sim` calls this).
//!
//! ```text
//! filesync-sim --seeds N [--start S]   run seeds S..S+N (default S = 0)
//! filesync-sim --seed S [--trace]      run one seed, print its trace with --trace
//! ```

use std::process::ExitCode;
use std::time::Instant;

fn usage() -> ExitCode {
    eprintln!(
        "usage: filesync-sim --seeds N [--start S] | --seed S [--trace]\n\
         Runs the deterministic simulation; a failing seed prints the command that replays it."
    );
    ExitCode::from(2)
}

fn parse(v: Option<&String>) -> Option<u64> {
    v.and_then(|s| s.parse().ok())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut seeds = None;
    let mut start = 0u64;
    let mut one = None;
    let mut trace = false;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--seeds" => match parse(it.next()) {
                Some(n) => seeds = Some(n),
                None => return usage(),
            },
            "--start" => match parse(it.next()) {
                Some(n) => start = n,
                None => return usage(),
            },
            "--seed" => match parse(it.next()) {
                Some(n) => one = Some(n),
                None => return usage(),
            },
            "--trace" => trace = true,
            _ => return usage(),
        }
    }
    let range = match (one, seeds) {
        (Some(s), None) => s..s + 1,
        (None, Some(n)) => start..start.saturating_add(n),
        _ => return usage(),
    };
    let began = Instant::now();
    let (mut runs, mut faults, mut crashes, mut acked, mut reads, mut events) =
        (0u64, 0, 0, 0, 0, 0);
    for seed in range {
        match filesync_sim::run_seed(seed) {
            Ok(report) => {
                runs += 1;
                faults += report.faults;
                crashes += report.crashes;
                acked += report.acknowledged;
                reads += report.reads;
                events += report.steps;
                if trace {
                    for line in &report.trace {
                        println!("{line}");
                    }
                }
                if one.is_some() {
                    println!(
                        "seed {seed}: ok ({} engines, {} steps, {} faults, {} crashes, {} acknowledged, {} reads, {:.0?} simulated, trace {})",
                        report.engines,
                        report.steps,
                        report.faults,
                        report.crashes,
                        report.acknowledged,
                        report.reads,
                        report.simulated,
                        &report.trace_digest[..16]
                    );
                }
            }
            Err(failure) => {
                if trace {
                    for line in &failure.trace {
                        println!("{line}");
                    }
                }
                eprintln!("\n{failure}");
                return ExitCode::FAILURE;
            }
        }
    }
    println!(
        "sim: {runs} seeds passed in {:.1?}: {events} steps, {faults} faults injected ({:.1} per seed), {crashes} process crashes, {acked} acknowledged changes, {reads} reads checked",
        began.elapsed(),
        faults as f64 / runs.max(1) as f64
    );
    ExitCode::SUCCESS
}
