//! `cairn-scale-sim`: the deterministic scaling simulation of the index's load-based partitioning
//! (`cairn_e2e::sim`). Prints one Markdown table row per (gateways, workload, load step).
//!
//! Full table (docs/scaling.md): `cargo run --release -p cairn-e2e --bin cairn-scale-sim`
//! Short run: `cairn-scale-sim --gateways 10 --rates 10,1000 --seconds 60 --settle-seconds 0`

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use cairn_e2e::sim::{self, Plan, SimConfig, StepReport, Workload};
use cairn_gateway::index::partition::policy::SplitPolicy;
use clap::Parser;

/// Simulates load-based partition splits and merges for fleets of gateways.
#[derive(Debug, Parser)]
#[command(name = "cairn-scale-sim", version)]
struct Args {
    /// Fleet sizes to simulate.
    #[arg(long, value_delimiter = ',', default_value = "10,100,1000")]
    gateways: Vec<usize>,
    /// Workloads: uniform, zipf, sequential, hot-prefix.
    #[arg(long, value_delimiter = ',', default_value = "uniform,zipf,sequential,hot-prefix",
          value_parser = parse_workload)]
    workloads: Vec<Workload>,
    /// Offered requests per second per gateway, one load step each.
    #[arg(long, value_delimiter = ',', default_value = "1,10,100,1000")]
    rates: Vec<f64>,
    /// Simulated seconds per step (one tick per second).
    #[arg(long, default_value_t = 600)]
    seconds: u64,
    /// A last step this long back at the first rate, to show merges (0: none).
    #[arg(long, default_value_t = 3600)]
    settle_seconds: u64,
    /// Most requests drawn per tick (each weighs offered / drawn).
    #[arg(long, default_value_t = 50_000)]
    samples: u64,
    /// Share of requests that are reads.
    #[arg(long, default_value_t = 0.7)]
    read_share: f64,
    /// Seed.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Most splits and merges per simulated second; 0 = one per gateway (each partition leader
    /// deciding for itself, as designed). 1 models today's single decider.
    #[arg(long, default_value_t = 0)]
    actions_per_tick: usize,
    /// Simulations run at once (each is single-threaded; results do not depend on this).
    #[arg(long, default_value_t = 2)]
    threads: usize,
}

fn parse_workload(s: &str) -> Result<Workload, String> {
    Workload::from_name(s).ok_or_else(|| format!("unknown workload {s}"))
}

fn main() {
    let args = Args::parse();
    let plan = Plan {
        per_gateway_rates: args.rates.clone(),
        step_seconds: args.seconds,
        settle_seconds: args.settle_seconds,
    };
    let runs: Vec<(usize, Workload)> = args
        .gateways
        .iter()
        .flat_map(|&g| args.workloads.iter().map(move |&w| (g, w)))
        .collect();
    let results: Vec<Mutex<Option<Vec<StepReport>>>> =
        runs.iter().map(|_| Mutex::new(None)).collect();
    let next = AtomicUsize::new(0);
    let started = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..args.threads.max(1) {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(&(gateways, workload)) = runs.get(i) else {
                        break;
                    };
                    let config = SimConfig {
                        read_share: args.read_share,
                        samples_per_tick: args.samples,
                        seed: args.seed,
                        max_actions_per_tick: args.actions_per_tick,
                        ..SimConfig::new(gateways, workload)
                    };
                    let t = Instant::now();
                    let reports = sim::run(config, &plan).unwrap_or_else(|e| {
                        panic!("{gateways} gateways, {workload}: {e}");
                    });
                    eprintln!(
                        "{gateways} gateways, {workload}: {:.1} s",
                        t.elapsed().as_secs_f64()
                    );
                    *results[i].lock().expect("results") = Some(reports);
                }
            });
        }
    });
    let reports: Vec<StepReport> = results
        .into_iter()
        .flat_map(|r| r.into_inner().expect("results").unwrap_or_default())
        .collect();
    let policy = SplitPolicy::default();
    println!(
        "Policy: split above {} writes/s or {} reads/s per partition; cold below {}x of both, \
         merged after {} s quiet; cooldown {} s; rate half-life {} s. Requests: {:.0}% reads; \
         at most {} drawn per 1 s tick; seed {}; map changes per tick: at most {}. Per-gateway \
         steps {:?} req/s, {} s each{}.\n",
        policy.write_threshold,
        policy.read_threshold,
        policy.merge_share,
        policy.quiet_ms / 1000,
        policy.cooldown_ms / 1000,
        policy.half_life_ms / 1000,
        args.read_share * 100.0,
        args.samples,
        args.seed,
        if args.actions_per_tick == 0 {
            "one per gateway".to_string()
        } else {
            args.actions_per_tick.to_string()
        },
        args.rates,
        args.seconds,
        if args.settle_seconds > 0 {
            format!(
                ", then {} s back at {} req/s",
                args.settle_seconds,
                args.rates.first().copied().unwrap_or(0.0)
            )
        } else {
            String::new()
        },
    );
    print!("{}", sim::markdown_table(&reports, &policy));
    let resplits: u64 = reports.iter().map(|r| r.resplits_after_merge).sum();
    let capped: u64 = reports.iter().map(|r| r.capped_ticks).sum();
    println!(
        "\nSplits of a range less than {} s after the merge that made it: {resplits}. Ticks where \
         the per-tick cap on map changes left work for the next tick: {capped}.",
        policy.quiet_ms / 1000
    );
    eprintln!("total {:.1} s", started.elapsed().as_secs_f64());
}
