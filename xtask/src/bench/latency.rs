//! Latency from the kernel event to the line on stdout: the workload names
//! each marker file after its CLOCK_MONOTONIC time just before the open; the
//! bench stamps each `monitor trace` line as it reads it.
use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use serde::Serialize;

use super::{
    Ctx,
    process::{Workload, check_interrupt},
    stats::{Spread, percentile},
};

#[derive(Clone, Debug, Serialize)]
pub struct Rep {
    pub rep: usize,
    pub sent: u64,
    pub received: u64,
    pub p50_ms: Option<f64>,
    pub p90_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub max_ms: Option<f64>,
    /// Every sample, in microseconds, in send order.
    pub samples_us: Vec<u64>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Latency {
    pub rate: f64,
    pub samples_per_rep: u64,
    pub reps: Vec<Rep>,
    /// Per-repetition percentiles: median and range over repetitions.
    pub p50_ms: Option<Spread>,
    pub p99_ms: Option<Spread>,
    /// Percentiles over every sample of every repetition.
    pub pooled_p50_ms: Option<f64>,
    pub pooled_p99_ms: Option<f64>,
    pub pooled_max_ms: Option<f64>,
    pub pooled_n: usize,
}

/// `(seq, send ns)` from a trace line for `.../lat-<ns>-<seq>`.
pub fn marker_of(line: &str) -> Option<(u64, u64)> {
    if !line.contains("\"event\":\"file\"") {
        return None;
    }
    let at = line.rfind("/lat-")? + 5;
    let rest = &line[at..];
    let sent_end = rest.find('-')?;
    let sent: u64 = rest[..sent_end].parse().ok()?;
    let seq: String = rest[sent_end + 1..]
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect();
    Some((seq.parse().ok()?, sent))
}

fn rep(ctx: &Ctx, rep: usize) -> anyhow::Result<Rep> {
    let dir = ctx.shm.join(format!("markers-{rep}"));
    std::fs::create_dir_all(&dir)?;
    // seq -> latency ns, first arrival only (a path can show up twice).
    let seen: Arc<Mutex<HashMap<u64, u64>>> = Arc::default();
    let sink = seen.clone();
    let hook = Box::new(move |line: &str, at: u64| {
        if let Some((seq, sent)) = marker_of(line) {
            sink.lock()
                .unwrap()
                .entry(seq)
                .or_insert(at.saturating_sub(sent));
        }
    });
    let agent = ctx.agent("trace", &["--kind", "file"], "tracing;", Some(hook))?;
    let n = ctx.plan.latency_samples;
    let rate = ctx.plan.latency_rate;
    let mut args = ctx.workload_args(
        "marker",
        &[
            ("--iterations", n.to_string()),
            ("--rate", format!("{rate}")),
            ("--max-secs", format!("{}", n as f64 / rate + 10.0)),
        ],
    );
    // Markers go to their own directory; the option given last wins.
    args.extend(["--dir".into(), dir.display().to_string()]);
    let v = Workload::spawn(&ctx.workload, &args)?
        .wait(Duration::from_secs_f64(n as f64 / rate + 60.0))
        .inspect_err(|_| ctx.cgroup.kill_load())?;
    let sent = v["iterations"].as_u64().unwrap_or(0);
    for _ in 0..500 {
        check_interrupt()?;
        if seen.lock().unwrap().len() as u64 >= sent {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = agent.stop(libc::SIGTERM, Duration::from_secs(15));
    let _ = std::fs::remove_dir_all(&dir);
    let seen = seen.lock().unwrap();
    let mut by_seq: Vec<(u64, u64)> = seen.iter().map(|(&s, &l)| (s, l)).collect();
    by_seq.sort();
    let samples_us: Vec<u64> = by_seq.iter().map(|&(_, ns)| ns / 1000).collect();
    let mut ms: Vec<f64> = by_seq.iter().map(|&(_, ns)| ns as f64 / 1e6).collect();
    ms.sort_by(f64::total_cmp);
    let r = Rep {
        rep,
        sent,
        received: ms.len() as u64,
        p50_ms: percentile(&ms, 50.0),
        p90_ms: percentile(&ms, 90.0),
        p99_ms: percentile(&ms, 99.0),
        max_ms: ms.last().copied(),
        samples_us,
    };
    eprintln!(
        "bench: latency rep {}: {}/{} markers, p50 {:.3} ms, p99 {:.3} ms",
        rep + 1,
        r.received,
        r.sent,
        r.p50_ms.unwrap_or(f64::NAN),
        r.p99_ms.unwrap_or(f64::NAN)
    );
    Ok(r)
}

pub fn measure(ctx: &Ctx) -> anyhow::Result<Latency> {
    let mut reps = Vec::new();
    for r in 0..ctx.plan.reps {
        check_interrupt()?;
        reps.push(rep(ctx, r)?);
    }
    Ok(summarize(
        reps,
        ctx.plan.latency_rate,
        ctx.plan.latency_samples,
    ))
}

pub fn summarize(reps: Vec<Rep>, rate: f64, samples_per_rep: u64) -> Latency {
    let mut pooled: Vec<f64> = reps
        .iter()
        .flat_map(|r| r.samples_us.iter().map(|&us| us as f64 / 1e3))
        .collect();
    pooled.sort_by(f64::total_cmp);
    let of =
        |f: fn(&Rep) -> Option<f64>| Spread::of(&reps.iter().filter_map(f).collect::<Vec<_>>());
    Latency {
        rate,
        samples_per_rep,
        p50_ms: of(|r| r.p50_ms),
        p99_ms: of(|r| r.p99_ms),
        pooled_p50_ms: percentile(&pooled, 50.0),
        pooled_p99_ms: percentile(&pooled, 99.0),
        pooled_max_ms: pooled.last().copied(),
        pooled_n: pooled.len(),
        reps,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_send_time_and_sequence_from_a_trace_line() {
        let line = r#"{"time":"t","event":"file","cgroup_id":1,"file":{"op":"open","path":"/dev/shm/monitor-bench-9/lat-0/lat-123456789-42","flags":["O_WRONLY"]}}"#;
        assert_eq!(marker_of(line), Some((42, 123456789)));
        assert_eq!(marker_of(r#"{"event":"exec","path":"/x/lat-1-2"}"#), None);
        assert_eq!(marker_of(r#"{"event":"file","path":"/x/other"}"#), None);
    }
}
