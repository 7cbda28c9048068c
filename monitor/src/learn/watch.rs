//! The learning loop: events from the kernel programs, enriched as
//! `monitor run` enriches them, into the [`Learner`] until the time is up.
use std::{
    io::{IsTerminal as _, Write as _},
    path::PathBuf,
    time::{Duration, Instant},
};

use tracing::{info, warn};

use super::{Learner, state};
use crate::{
    bpf::source::{EventSource, SourceOptions},
    clock::WallClock,
    context::{Enricher, EnricherConfig},
};

/// How long the ring buffer must stay empty at the stop before learning
/// ends: several of the reader's polls.
const QUIET: Duration = Duration::from_millis(100);

pub struct LearnOptions {
    pub source: SourceOptions,
    /// The host's `/` as the agent sees it (`/host` in a DaemonSet).
    pub host_root: PathBuf,
    pub duration: Duration,
    /// Where the rule files go (merged with what an earlier run left there).
    pub out: PathBuf,
}

/// Learns for the duration (or until SIGINT/SIGTERM), then writes the
/// rule files; returns what it wrote.
pub async fn run(opts: LearnOptions) -> anyhow::Result<Vec<state::Written>> {
    let mut source = EventSource::start(&opts.source)?;
    let mut enricher = Enricher::new(EnricherConfig::for_host_root(&opts.host_root));
    if let Err(e) = enricher.seed(source.cgroup2_mount()) {
        warn!("could not read the initial cgroups and processes: {e}");
    }
    let clock = WallClock::new();
    let mut learner = Learner::default();
    let started = Instant::now();
    let deadline = tokio::time::Instant::now() + opts.duration;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    info!(
        duration = %humantime::format_duration(opts.duration),
        out = %opts.out.display(),
        "learning"
    );
    let mut ready = Vec::new();
    let mut ticks = 0u64;
    loop {
        tokio::select! {
            event = source.next() => {
                let Some(mut event) = event else { break };
                loop {
                    enricher.push(event, Instant::now(), &mut ready);
                    learner.observe_all(&mut ready, &clock);
                    match source.try_next() {
                        Some(next) => event = next,
                        None => break,
                    }
                }
            }
            _ = tick.tick() => {
                enricher.expire_held(Instant::now(), &mut ready);
                learner.observe_all(&mut ready, &clock);
                ticks += 1;
                progress(&learner, opts.duration.saturating_sub(started.elapsed()), ticks);
            }
            _ = tokio::time::sleep_until(deadline) => break,
            _ = tokio::signal::ctrl_c() => break,
            _ = sigterm.recv() => break,
        }
    }
    // What the workloads did up to the stop is in the ring buffer already;
    // the reader looks every 10 ms. Read until it has been quiet a while.
    let until = tokio::time::Instant::now() + Duration::from_secs(2);
    while let Ok(Some(event)) = tokio::time::timeout_at(
        until.min(tokio::time::Instant::now() + QUIET),
        source.next(),
    )
    .await
    {
        enricher.push(event, Instant::now(), &mut ready);
    }
    enricher.drain_held(&mut ready);
    learner.observe_all(&mut ready, &clock);
    if std::io::stderr().is_terminal() {
        eprintln!();
    }
    let lost = source.lost_total();
    if lost > 0 {
        warn!(
            lost,
            "the kernel dropped events while learning: what they showed is not in the policies"
        );
    }
    let written = state::write(&opts.out, &learner.workloads)?;
    for w in &written {
        match w {
            state::Written::File(p) => info!(file = %p.display(), "policy written"),
            state::Written::Beside(p) => warn!(
                file = %p.display(),
                "the policy was edited since the last learn: the merged one is written beside it"
            ),
        }
    }
    info!(
        workloads = learner.workloads.len(),
        events = learner.events(),
        lost_total = lost,
        "learning done"
    );
    Ok(written)
}

/// The progress line on stderr: rewritten in place each second on a
/// terminal, else a line every ten seconds (a log keeps every line).
fn progress(learner: &Learner, left: Duration, ticks: u64) {
    let left = Duration::from_secs(left.as_secs());
    let line = format!(
        "learn: {} left, {} workloads, {} events learned",
        humantime::format_duration(left),
        learner.workloads.len(),
        learner.events()
    );
    let mut err = std::io::stderr().lock();
    if err.is_terminal() {
        let _ = write!(err, "\r{line}   ");
    } else if ticks.is_multiple_of(10) {
        let _ = writeln!(err, "{line}");
    }
    let _ = err.flush();
}
