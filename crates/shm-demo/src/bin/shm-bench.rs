//! shm-bench: the shared-memory ring against pipes and sockets between two processes.
//!
//! `shm-bench` prints a table and writes an SVG chart; `--json` prints one JSON object per
//! measurement; `--quick` finishes in under 30 seconds.

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use shm_demo::bench::{self, Plan, Transport};

#[derive(Parser, Debug)]
#[command(version, about = "Compare the shm-ipc ring with pipes and sockets between two pinned processes")]
struct Args {
    #[command(subcommand)]
    command: Option<Command>,
    /// One JSON object per measurement, one per line, and nothing else.
    #[arg(long, global = true)]
    json: bool,
    /// Fewer iterations: the whole run takes under 30 seconds.
    #[arg(long)]
    quick: bool,
    /// Where to write the SVG chart (table mode only).
    #[arg(long, default_value = "target/shm-bench.svg")]
    chart: PathBuf,
    /// Only these transports (repeatable), by report name, e.g. `--transport pipe`.
    #[arg(long = "transport", value_name = "NAME")]
    transports: Vec<String>,
    /// Only these throughput message sizes in bytes (repeatable).
    #[arg(long = "size", value_name = "BYTES")]
    sizes: Vec<usize>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run producer and consumer processes for a long time with random sizes and pauses,
    /// verifying every message; report messages moved, lost (must be 0) and peak RSS.
    Soak {
        /// How long, e.g. "20s", "10m".
        #[arg(long, default_value = "20s", value_parser = parse_duration)]
        duration: std::time::Duration,
        /// "spsc" or "mpsc".
        #[arg(long, default_value = "spsc")]
        kind: String,
        /// Producer processes (MPSC).
        #[arg(long, default_value_t = 3)]
        producers: u32,
    },
    /// Instructions per `try_send` + `try_recv` (8 and 64 B, SPSC and MPSC), counted by
    /// valgrind's callgrind: deterministic figures, unlike times on a shared machine. Needs
    /// valgrind.
    Instr,
    /// The loop `instr` measures (run under callgrind by `instr`).
    #[command(hide = true)]
    InstrLoop {
        #[arg(long)]
        kind: String,
        #[arg(long)]
        size: usize,
        #[arg(long)]
        n: u64,
    },
}

fn instr(json: bool) -> std::process::ExitCode {
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(e) => {
            eprintln!("shm-bench instr: cannot find this program: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    if !json {
        println!("Instructions per message sent and received (try_send + try_recv; spsc-in-place: try_reserve + commit, try_read + drop; spsc-batch: per message of write_batch + recv_batch, in place; spsc-blocking: send + recv), one process, callgrind (deterministic)");
        println!("  {:<14} {:>6} {:>14}", "kind", "size", "instructions");
    }
    for case in shm_demo::instr::CASES {
        match shm_demo::instr::count(&exe, case) {
            Ok(n) if json => println!(
                "{{\"transport\":\"shm-{}\",\"test\":\"instr\",\"msg_size\":{},\"instructions\":{n:.1}}}",
                case.kind, case.size
            ),
            Ok(n) => println!("  {:<14} {:>6} {:>14.1}", case.kind, case.size, n),
            Err(e) => {
                eprintln!("shm-bench instr: {e}");
                return std::process::ExitCode::FAILURE;
            }
        }
    }
    std::process::ExitCode::SUCCESS
}

fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = num.parse().map_err(|_| format!("duration {s:?}: expected a number then s, m or h"))?;
    let secs = match unit {
        "" | "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        other => return Err(format!("duration {s:?}: unknown unit {other:?}, expected s, m or h")),
    };
    Ok(std::time::Duration::from_secs(secs))
}

fn soak(duration: std::time::Duration, kind: &str, producers: u32, json: bool) -> std::process::ExitCode {
    let kind = match kind {
        "spsc" => shm_ring::Kind::Spsc,
        "mpsc" => shm_ring::Kind::Mpsc,
        "broadcast" => shm_ring::Kind::Broadcast,
        other => {
            eprintln!("shm-bench soak: unknown kind {other:?}; expected spsc, mpsc or broadcast");
            return std::process::ExitCode::from(2);
        }
    };
    match shm_demo::soak::soak(kind, producers, duration) {
        Ok(r) => {
            if json {
                println!("{}", serde_json::to_string(&r).expect("plain data"));
            } else {
                println!(
                    "soak {} x{}: {:.0} s, {} messages ({:.1} MB), lost {}, corrupt {}, peak RSS consumer {} KiB, producer {} KiB",
                    r.kind,
                    r.producers,
                    r.seconds,
                    r.messages,
                    r.bytes as f64 / 1e6,
                    r.lost,
                    r.corrupt,
                    r.consumer_peak_rss_kib,
                    r.producer_peak_rss_kib
                );
            }
            if r.lost == 0 && r.corrupt == 0 && r.messages > 0 {
                std::process::ExitCode::SUCCESS
            } else {
                std::process::ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("shm-bench soak: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    match &args.command {
        Some(Command::Soak { duration, kind, producers }) => {
            return soak(*duration, kind, *producers, args.json)
        }
        Some(Command::Instr) => return instr(args.json),
        Some(Command::InstrLoop { kind, size, n }) => {
            return match shm_demo::instr::run_loop(kind, *size, *n) {
                Ok(_) => std::process::ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("shm-bench instr-loop: {e}");
                    std::process::ExitCode::FAILURE
                }
            };
        }
        None => {}
    }
    let mut plan = Plan::new(args.quick);
    if !args.transports.is_empty() {
        let mut chosen = Vec::new();
        for name in &args.transports {
            match Transport::ALL.iter().find(|t| t.name() == name) {
                Some(t) => chosen.push(*t),
                None => {
                    let known: Vec<&str> = Transport::ALL.iter().map(|t| t.name()).collect();
                    eprintln!("shm-bench: unknown transport {name:?}; expected one of {}", known.join(", "));
                    return std::process::ExitCode::from(2);
                }
            }
        }
        plan.transports = chosen;
    }
    if !args.sizes.is_empty() {
        if let Some(bad) = args.sizes.iter().find(|s| **s == 0 || **s > 65536) {
            eprintln!("shm-bench: message size {bad} is out of range: expected 1 to 65536 bytes");
            return std::process::ExitCode::from(2);
        }
        plan.sizes = args.sizes.clone();
    }
    let json = args.json;
    if !json {
        let cores = shm_demo::pair::online_cpus();
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
        eprintln!(
            "shm-bench{}: {cores} cores, Linux {}; producer pinned to core 0, consumer to core 1",
            if args.quick { " --quick" } else { "" },
            kernel.trim()
        );
    }
    let result = bench::run(&plan, |m| {
        if json {
            println!("{}", m.to_json());
        } else {
            eprintln!("  measured {} {} {} B", m.transport, m.test, m.msg_size);
        }
    });
    let all = match result {
        Ok(all) => all,
        Err(e) => {
            eprintln!("shm-bench: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    if !json {
        println!("{}", bench::table(&all));
        match shm_demo::chart::write_svg(&all, &args.chart) {
            Ok(()) => println!("chart written to {}", args.chart.display()),
            Err(e) => eprintln!("shm-bench: could not write the chart to {}: {e}", args.chart.display()),
        }
    }
    std::process::ExitCode::SUCCESS
}
