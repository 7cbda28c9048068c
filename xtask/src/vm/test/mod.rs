//! `cargo xtask vm-test`: the kernel test suites inside a guest per kernel.
//!
//! The test executables are built here (`cargo test --no-run`), pinned (hard
//! links, so a build in this tree meanwhile does not swap them), and run in
//! the guest one test per process, so each has its own time and time limit
//! and a hung test does not take the others with it. Tests that need a
//! Docker engine are left out by name, and listed as such.
mod cases;

use std::{
    fmt::Write as _,
    fs,
    io::Write as _,
    path::Path,
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::bail;

use self::cases::{Case, LeftOut, Pinned, build, choose};
use super::{
    guest::{self, GUEST_SHARE},
    kernel,
};

/// The suites that load the agent's kernel programs and need no network or
/// Docker engine.
const SUITES: &[&str] = &[
    "kernel_trace",
    "kernel_policy",
    "kernel_context",
    "kernel_enforce",
    "kernel_fairness",
    "kernel_probe",
];

/// How long the hook report may take at least (the agent loads every program).
const HOOKS_LIMIT_SECS: u64 = 300;

/// The memory soak: 3,000 containers of 8 processes each.
const SOAK: &str = "memory_stays_flat_over_thousands_of_containers";

#[derive(clap::Args, Debug)]
pub struct TestArgs {
    /// Kernels to test: 5.10, 6.1, 6.12 (or bullseye, bookworm, trixie), a
    /// comma-separated list, or all (one after another).
    #[arg(long, default_value = "all", value_name = "KERNEL")]
    pub kernel: String,
    /// Another test target of the monitor package to run as well
    /// (repeatable), e.g. `--test kernel_delivery`.
    #[arg(long = "test", value_name = "NAME")]
    pub tests: Vec<String>,
    /// Run only these tests (exact names, repeatable), e.g. to retry one.
    #[arg(long, value_name = "TEST")]
    pub only: Vec<String>,
    /// Leave out this test too (exact name, repeatable).
    #[arg(long, value_name = "TEST")]
    pub skip: Vec<String>,
    /// Run the memory soak as well (3,000 containers; long under emulation).
    #[arg(long)]
    pub soak: bool,
    /// How many times longer than on the host the tests' waits may be
    /// (MONITOR_TEST_TIME_SCALE in the guest).
    #[arg(long, default_value_t = 10, value_name = "N")]
    pub time_scale: u32,
    /// A test still running after this many seconds is stopped and fails.
    #[arg(long, default_value_t = 600, value_name = "SECONDS")]
    pub test_timeout: u64,
    /// A guest still running after this many seconds is stopped; the tests
    /// it did not finish fail.
    #[arg(long, default_value_t = 2400, value_name = "SECONDS")]
    pub kernel_timeout: u64,
    /// Refresh the package lists now and take newer kernels if there are.
    #[arg(long)]
    pub refresh: bool,
}

/// What one kernel's guest reported.
struct KernelResult {
    series: &'static str,
    uname: String,
    bpf_lsm: String,
    hooks_active: usize,
    hooks_inactive: Vec<String>,
    hooks_error: Option<String>,
    passed: Vec<(String, f64)>,
    failed: Vec<(String, String)>,
    failure: Option<String>,
    boot: Option<Duration>,
    wall: Duration,
}

pub fn run(args: TestArgs) -> anyhow::Result<i32> {
    super::ensure_root()?;
    let releases = kernel::parse_kernels(&args.kernel)?;
    let root = crate::workspace_root();
    let started = Instant::now();

    let mut suites: Vec<String> = SUITES.iter().map(|s| (*s).to_owned()).collect();
    for t in &args.tests {
        if !suites.contains(t) {
            suites.push(t.clone());
        }
    }
    let built = build(&suites)?;
    let pinned = Pinned::new(&built)?;
    let (cases, left_out) = choose(&args, &root, &pinned)?;
    if cases.is_empty() {
        bail!("no test to run (after --only and the tests left out)");
    }
    eprintln!(
        "vm-test: {} tests from {} on {} kernel(s); {} left out",
        cases.len(),
        suites.join(", "),
        releases.len(),
        left_out.len()
    );
    for l in &left_out {
        eprintln!("vm-test: left out {}::{}: {}", l.suite, l.name, l.why);
    }

    let mut results = Vec::new();
    for release in releases {
        let k = kernel::prepare(release, args.refresh)?;
        eprintln!(
            "vm-test: == {} ({} {} {})",
            release.series, k.uname, release.name, k.version
        );
        results.push(run_kernel(&args, &k, &cases, &pinned.monitor, &root)?);
    }

    print_summary(&results, &left_out, started.elapsed());
    let failed: usize = results.iter().map(|r| r.failed.len()).sum();
    let bad = results
        .iter()
        .any(|r| r.failure.is_some() || r.passed.is_empty() || !r.failed.is_empty());
    Ok(if bad || failed > 0 { 1 } else { 0 })
}

/// The script the guest runs: kernel facts, the hook report, then each test.
fn guest_script(args: &TestArgs, monitor: &Path) -> String {
    let s = GUEST_SHARE;
    let mon = guest::quote(monitor.as_os_str().as_encoded_bytes());
    let limit = args.test_timeout;
    let hooks_limit = HOOKS_LIMIT_SECS.max(limit);
    format!(
        r#"S={s}
MON={mon}
echo "kernel: $(uname -r)"
uname -r > $S/uname
if tr ',' '\n' < /sys/kernel/security/lsm | grep -qx bpf; then lsm=yes; else lsm=no; fi
echo "bpf in /sys/kernel/security/lsm: $lsm ($(cat /sys/kernel/security/lsm))"
echo $lsm > $S/bpf-lsm
echo "hooks:"
t0=$(date +%s.%N)
# Every hook, active or not (debug level names the active ones).
export MONITOR_LOG=info,monitor::bpf=debug NO_COLOR=1
if "$MON" hooks --help > /dev/null 2>&1; then
    timeout -k 10 {hooks_limit} "$MON" hooks > $S/hooks.out 2> $S/hooks.err < /dev/null
    echo $? > $S/hooks.rc
else
    # No hooks command: the tracer's log says which hooks attached.
    "$MON" trace --kind exec > /dev/null 2> $S/hooks.err < /dev/null &
    pid=$!
    i=0
    while kill -0 $pid 2> /dev/null && ! grep -q 'tracing;' $S/hooks.err && [ $i -lt {polls} ]; do
        sleep 0.5
        i=$((i + 1))
    done
    sleep 2
    kill -INT $pid 2> /dev/null
    wait $pid
    : > $S/hooks.out
fi
unset MONITOR_LOG NO_COLOR
cat $S/hooks.out
# What did not attach, and why (the active ones are in the report, or counted).
grep -E 'unavailable|could not attach|^Error' $S/hooks.err
echo "hooks attached: $(grep -c 'hook attached' $S/hooks.err) (from the log)"
echo "hook report in $(awk "BEGIN {{ printf \"%.1f\", $(date +%s.%N) - $t0 }}") s"
: > $S/results
: > $S/started
n=0
while read -r idx suite name exe; do
    n=$((n + 1))
    echo $idx >> $S/started
    t0=$(date +%s.%N)
    timeout -k 10 {limit} "$exe" --exact "$name" --test-threads=1 > $S/$idx.log 2>&1 < /dev/null
    rc=$?
    t1=$(date +%s.%N)
    echo "$idx $rc $t0 $t1" >> $S/results
    if [ $rc -eq 0 ] && grep -q '^test result: ok. 1 passed' $S/$idx.log; then
        echo "test $suite::$name ... ok ($(awk "BEGIN {{ printf \"%.1f\", $t1 - $t0 }}") s)"
    else
        echo "test $suite::$name ... FAILED (exit $rc, $(awk "BEGIN {{ printf \"%.1f\", $t1 - $t0 }}") s)"
        sed '$a\' $S/$idx.log
    fi
done < $S/tests
echo "done: $n tests"
"#,
        polls = hooks_limit * 2,
    )
}

fn run_kernel(
    args: &TestArgs,
    k: &kernel::Kernel,
    cases: &[Case],
    monitor: &Path,
    root: &Path,
) -> anyhow::Result<KernelResult> {
    let share = guest::Share::new()?;
    fs::write(share.path.join("run.sh"), guest_script(args, monitor))?;
    let mut list = String::new();
    for (i, c) in cases.iter().enumerate() {
        let _ = writeln!(list, "{i} {} {} {}", c.suite, c.name, c.exe.display());
    }
    fs::write(share.path.join("tests"), list)?;
    let env = vec![
        ("MONITOR_REQUIRE_KERNEL_TESTS".to_owned(), "1".to_owned()),
        (
            "MONITOR_TEST_TIME_SCALE".to_owned(),
            args.time_scale.to_string(),
        ),
        (
            "MONITOR_BIN".to_owned(),
            monitor.to_string_lossy().into_owned(),
        ),
        ("RUST_BACKTRACE".to_owned(), "1".to_owned()),
        // Debian's kernels offer the fentry tier: a test that finds a
        // concern served by tracepoints there fails instead of passing on
        // the fallback.
        ("MONITOR_EXPECT_TIER".to_owned(), "fentry".to_owned()),
    ];
    let argv = ["/bin/sh".into(), format!("{GUEST_SHARE}/run.sh").into()];
    // Cargo runs integration tests in the package's directory.
    let cwd = root.join("monitor");
    let spec = guest::Spec {
        kernel: k,
        argv: &argv,
        cwd: &cwd,
        env: &env,
        timeout: Some(Duration::from_secs(args.kernel_timeout)),
        verbose: false,
    };
    let prefix = format!("[{}] ", k.release.series);
    let out: guest::Output = Arc::new(move |line: &str| {
        let mut o = std::io::stdout().lock();
        let _ = writeln!(o, "{prefix}{line}");
        let _ = o.flush();
    });
    let outcome = guest::boot(&spec, &share, out)?;

    let read = |name: &str| fs::read_to_string(share.path.join(name)).unwrap_or_default();
    let mut r = KernelResult {
        series: k.release.series,
        uname: Some(read("uname").trim().to_owned())
            .filter(|u| !u.is_empty())
            .unwrap_or_else(|| k.uname.clone()),
        bpf_lsm: Some(read("bpf-lsm").trim().to_owned())
            .filter(|u| !u.is_empty())
            .unwrap_or_else(|| "?".into()),
        hooks_active: 0,
        hooks_inactive: Vec::new(),
        hooks_error: None,
        passed: Vec::new(),
        failed: Vec::new(),
        failure: outcome.failure.clone(),
        boot: outcome.boot,
        wall: outcome.wall,
    };
    parse_hooks(&read("hooks.out"), &read("hooks.err"), &mut r);
    match read("hooks.rc").trim().parse::<i32>() {
        Ok(0) | Err(_) => {}
        Ok(124 | 137) => {
            r.hooks_error = Some(format!(
                "monitor hooks did not finish within {} s",
                HOOKS_LIMIT_SECS.max(args.test_timeout)
            ))
        }
        Ok(rc) if r.hooks_error.is_none() => {
            r.hooks_error = Some(format!("monitor hooks exited with {rc}"))
        }
        Ok(_) => {}
    }
    if r.failure.is_none() && outcome.exit != Some(0) {
        r.failure = Some(format!("the test script exited with {:?}", outcome.exit));
    }
    let started = read("started");
    let started: Vec<&str> = started.lines().collect();
    let mut done = vec![None; cases.len()];
    for line in read("results").lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        let (Some(i), Some(rc), Some(t0), Some(t1)) = (
            f.first().and_then(|v| v.parse::<usize>().ok()),
            f.get(1).and_then(|v| v.parse::<i32>().ok()),
            f.get(2).and_then(|v| v.parse::<f64>().ok()),
            f.get(3).and_then(|v| v.parse::<f64>().ok()),
        ) else {
            continue;
        };
        if i < done.len() {
            done[i] = Some((rc, t1 - t0));
        }
    }
    for (i, c) in cases.iter().enumerate() {
        let id = format!("{}::{}", c.suite, c.name);
        match done[i] {
            None if started.contains(&i.to_string().as_str()) => r
                .failed
                .push((id, "did not finish: the guest stopped while it ran".into())),
            None => r
                .failed
                .push((id, "not run: the guest stopped before it".into())),
            Some((rc, secs)) => {
                let log = read(&format!("{i}.log"));
                let ran = log
                    .lines()
                    .any(|l| l.starts_with("test result: ok. 1 passed"));
                if rc == 0 && ran && !log.lines().any(|l| l.starts_with("SKIPPED")) {
                    r.passed.push((id, secs));
                } else if rc == 124 || rc == 137 {
                    r.failed.push((
                        id,
                        format!("timed out after {limit} s", limit = args.test_timeout),
                    ));
                } else if rc == 0 {
                    r.failed.push((id, "did not run (no `1 passed`)".into()));
                } else {
                    r.failed
                        .push((id, format!("failed (exit {rc}, {secs:.0} s)")));
                }
            }
        }
    }
    Ok(r)
}

/// `monitor hooks` prints `active ...`/`inactive ...` lines; the log
/// (debug level) has `hook attached` and `hook unavailable` lines.
fn parse_hooks(report: &str, log: &str, r: &mut KernelResult) {
    let active = report.lines().filter(|l| l.starts_with("active ")).count();
    let inactive: Vec<String> = report
        .lines()
        .filter_map(|l| l.strip_prefix("inactive "))
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect();
    if active + inactive.len() > 0 {
        r.hooks_active = active;
        r.hooks_inactive = inactive;
    } else {
        r.hooks_active = log.lines().filter(|l| l.contains("hook attached")).count();
        r.hooks_inactive = log
            .lines()
            .filter(|l| l.contains("hook unavailable"))
            .map(|l| {
                // Without the timestamp and level.
                let l = l.split_once(": ").map_or(l, |(_, rest)| rest);
                l.to_owned()
            })
            .collect();
    }
    r.hooks_error = log
        .lines()
        .find(|l| l.contains("core hooks could not attach") || l.starts_with("Error"))
        .map(str::to_owned);
}

fn print_summary(results: &[KernelResult], left_out: &[LeftOut], total: Duration) {
    let mut s = String::from("\nvm-test summary\n");
    for r in results {
        let boot = r
            .boot
            .map_or("-".into(), |b| format!("{:.1} s", b.as_secs_f64()));
        let _ = writeln!(
            s,
            "  {} ({}): bpf LSM {}; hooks {} active, {} inactive; tests {} passed, {} failed; boot {boot}, wall {}",
            r.series,
            r.uname,
            r.bpf_lsm,
            r.hooks_active,
            r.hooks_inactive.len(),
            r.passed.len(),
            r.failed.len(),
            minutes(r.wall),
        );
        if let Some(f) = &r.failure {
            let _ = writeln!(s, "    guest: {f}");
        }
        if let Some(e) = &r.hooks_error {
            let _ = writeln!(s, "    agent: {e}");
        }
        for h in &r.hooks_inactive {
            let _ = writeln!(s, "    inactive: {h}");
        }
        for (t, why) in &r.failed {
            let _ = writeln!(s, "    FAILED {t}: {why}");
        }
        let slowest = r
            .passed
            .iter()
            .max_by(|a, b| a.1.total_cmp(&b.1))
            .map(|(t, secs)| format!("{t} {secs:.0} s"));
        if let Some(sl) = slowest {
            let _ = writeln!(s, "    slowest passing test: {sl}");
        }
    }
    if !left_out.is_empty() {
        let _ = writeln!(s, "  left out on every kernel:");
        for l in left_out {
            let _ = writeln!(s, "    {}::{}: {}", l.suite, l.name, l.why);
        }
    }
    let passed: usize = results.iter().map(|r| r.passed.len()).sum();
    let failed: usize = results.iter().map(|r| r.failed.len()).sum();
    let _ = writeln!(s, "  total wall time {}", minutes(total));
    let _ = writeln!(s, "vm-test: {passed} passed, {failed} failed");
    print!("{s}");
}

fn minutes(d: Duration) -> String {
    let secs = d.as_secs();
    format!("{}m{:02}s", secs / 60, secs % 60)
}
