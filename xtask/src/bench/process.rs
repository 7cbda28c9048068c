//! Child processes of the bench: observers whose stdout is drained and counted
//! (the agent, bpftrace), workloads that print one JSON result, and what
//! `/proc` says about them. Every wait has a deadline, and an interrupt (^C,
//! SIGTERM) turns into an error so the guards clean up.
use std::{
    fs,
    io::{BufRead as _, BufReader, Read as _},
    os::unix::process::CommandExt as _,
    path::Path,
    process::{Child, Command, Stdio},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
        mpsc,
    },
    thread::{self, JoinHandle},
    time::{Duration, Instant},
};

use anyhow::{Context as _, anyhow, bail};

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// ^C and SIGTERM set a flag the loops check, so guards run their Drop.
pub fn install_interrupt_handler() {
    // SAFETY: the handler only stores to an atomic.
    unsafe {
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
    }
}

pub fn check_interrupt() -> anyhow::Result<()> {
    if INTERRUPTED.load(Ordering::SeqCst) {
        bail!("interrupted");
    }
    Ok(())
}

pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

/// Sleeps in small steps, failing when interrupted.
pub fn sleep(d: Duration) -> anyhow::Result<()> {
    let end = Instant::now() + d;
    loop {
        check_interrupt()?;
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(());
        }
        thread::sleep(left.min(Duration::from_millis(50)));
    }
}

/// CLOCK_MONOTONIC, the clock the workload stamps its markers with.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes the struct it is given.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Called with every stdout line (after the ready marker) and the
/// CLOCK_MONOTONIC time it was read.
pub type LineHook = Box<dyn FnMut(&str, u64) + Send>;

/// Where a process says it is ready.
#[derive(Clone, Copy, Debug)]
pub enum Ready<'a> {
    /// A line on stderr containing this text (the agent logs there).
    Stderr(&'a str),
    /// A line on stdout containing this text; lines before it are not counted.
    Stdout(&'a str),
}

/// A running observer whose stdout is read line by line and counted, so the
/// cost of its output is part of what is measured.
pub struct Drained {
    child: Child,
    lines: Arc<AtomicU64>,
    stderr: Arc<Mutex<String>>,
    threads: Vec<JoinHandle<()>>,
}

/// How a drained process ended.
#[derive(Debug)]
pub struct Stopped {
    /// It exited by itself within the deadline after the signal.
    pub answered: bool,
    pub lines: u64,
    pub stderr: String,
}

/// At most this much stderr is kept (a loss warning a second is small).
const STDERR_CAP: usize = 4 << 20;

impl Drained {
    pub fn start(
        name: &str,
        cmd: &mut Command,
        ready: Ready<'_>,
        timeout: Duration,
        mut hook: Option<LineHook>,
    ) -> anyhow::Result<Drained> {
        let mut child = cmd
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Its own process group: a ^C reaches the bench, which stops it in order.
            .process_group(0)
            .spawn()
            .with_context(|| format!("starting {name} ({cmd:?})"))?;
        let lines = Arc::new(AtomicU64::new(0));
        let stderr_text = Arc::new(Mutex::new(String::new()));
        let (ready_tx, ready_rx) = mpsc::channel::<()>();

        let stdout = child.stdout.take().expect("piped stdout");
        let count = lines.clone();
        let (stdout_marker, stderr_marker) = match ready {
            Ready::Stdout(m) => (Some(m.to_owned()), None),
            Ready::Stderr(m) => (None, Some(m.to_owned())),
        };
        let tx = ready_tx.clone();
        let out = thread::spawn(move || {
            let mut reader = BufReader::with_capacity(1 << 20, stdout);
            let mut line = String::new();
            let mut counting = stdout_marker.is_none();
            loop {
                line.clear();
                match reader.read_line(&mut line) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
                let at = monotonic_ns();
                if !counting {
                    if stdout_marker.as_deref().is_some_and(|m| line.contains(m)) {
                        counting = true;
                        let _ = tx.send(());
                    }
                    continue;
                }
                count.fetch_add(1, Ordering::Relaxed);
                if let Some(h) = hook.as_mut() {
                    h(&line, at);
                }
            }
        });
        let stderr = child.stderr.take().expect("piped stderr");
        let text = stderr_text.clone();
        let err = thread::spawn(move || {
            let mut reader = BufReader::new(stderr);
            let mut line = String::new();
            loop {
                line.clear();
                match reader.read_line(&mut line) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
                if stderr_marker.as_deref().is_some_and(|m| line.contains(m)) {
                    let _ = ready_tx.send(());
                }
                let mut t = text.lock().unwrap();
                if t.len() < STDERR_CAP {
                    t.push_str(&line);
                }
            }
        });
        let mut drained = Drained {
            child,
            lines,
            stderr: stderr_text,
            threads: vec![out, err],
        };
        let deadline = Instant::now() + timeout;
        loop {
            check_interrupt()?;
            match ready_rx.recv_timeout(Duration::from_millis(100)) {
                Ok(()) => return Ok(drained),
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {}
            }
            if let Ok(Some(status)) = drained.child.try_wait() {
                thread::sleep(Duration::from_millis(100));
                bail!(
                    "{name} exited ({status}) before it was ready; stderr:\n{}",
                    tail(&drained.stderr(), 20)
                );
            }
            if Instant::now() > deadline {
                bail!(
                    "{name} was not ready within {timeout:?}; stderr:\n{}",
                    tail(&drained.stderr(), 20)
                );
            }
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn lines(&self) -> u64 {
        self.lines.load(Ordering::Relaxed)
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Waits until `want` lines have arrived, or until no line arrived for
    /// `quiet`, or `max` has passed. Returns the count.
    pub fn wait_for_lines(&self, want: u64, quiet: Duration, max: Duration) -> anyhow::Result<u64> {
        let start = Instant::now();
        let mut last = self.lines();
        let mut last_change = Instant::now();
        loop {
            check_interrupt()?;
            let now = self.lines();
            if now >= want || start.elapsed() > max {
                return Ok(now);
            }
            if now != last {
                last = now;
                last_change = Instant::now();
            } else if last_change.elapsed() > quiet {
                return Ok(now);
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Sends `signal`, waits up to `grace` for the exit (then kills), and
    /// collects what the process printed.
    pub fn stop(mut self, signal: i32, grace: Duration) -> Stopped {
        // SAFETY: kill of our own child.
        unsafe { libc::kill(self.child.id() as i32, signal) };
        let deadline = Instant::now() + grace;
        let mut answered = false;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                answered = true;
                break;
            }
            thread::sleep(Duration::from_millis(10));
        }
        if !answered {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        Stopped {
            answered,
            lines: self.lines(),
            stderr: self.stderr(),
        }
    }
}

impl Drop for Drained {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The last `n` lines of a text.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Removes ANSI colour escapes (in case the agent colours its log anyway).
pub fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// `key=<digits>` in a log line.
pub fn field_u64(line: &str, key: &str) -> Option<u64> {
    let at = line.find(&format!("{key}="))? + key.len() + 1;
    let digits: String = line[at..]
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect();
    digits.parse().ok()
}

/// A running workload; `wait` returns the JSON object it printed.
pub struct Workload {
    child: Child,
    what: String,
}

impl Workload {
    pub fn spawn(bin: &Path, args: &[String]) -> anyhow::Result<Workload> {
        let child = Command::new(bin)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
            .with_context(|| format!("starting {} {args:?}", bin.display()))?;
        Ok(Workload {
            child,
            what: format!("workload {}", args.join(" ")),
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn wait(mut self, timeout: Duration) -> anyhow::Result<serde_json::Value> {
        let deadline = Instant::now() + timeout;
        let status = loop {
            if interrupted() {
                let _ = self.child.kill();
                let _ = self.child.wait();
                bail!("interrupted");
            }
            if let Some(s) = self.child.try_wait()? {
                break s;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                bail!("{} did not finish within {timeout:?}", self.what);
            }
            thread::sleep(Duration::from_millis(2));
        };
        let mut out = String::new();
        let mut err = String::new();
        if let Some(mut s) = self.child.stdout.take() {
            s.read_to_string(&mut out)?;
        }
        if let Some(mut s) = self.child.stderr.take() {
            s.read_to_string(&mut err)?;
        }
        if !status.success() {
            bail!("{} failed ({status}): {}", self.what, err.trim());
        }
        let last = out.lines().last().unwrap_or_default();
        serde_json::from_str(last)
            .map_err(|e| anyhow!("{} printed no JSON ({e}): {out}", self.what))
    }
}

impl Drop for Workload {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// User plus system CPU seconds a process has used.
pub fn cpu_secs(pid: u32) -> Option<f64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which may contain spaces, in parentheses.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line: 11 and 12 here.
    let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    // SAFETY: sysconf with a constant.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    Some(ticks as f64 / hz)
}

/// A `Vm*` line of `/proc/<pid>/status`, in KiB.
pub fn status_kib(pid: u32, key: &str) -> Option<u64> {
    let text = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

/// Other eBPF or audit observers running now (`pid comm`): other monitor
/// agents and their kernel tests, bpftrace, auditd. Their hooks run on the
/// same syscalls in every configuration, the baseline too.
pub fn other_observers() -> Vec<String> {
    let me = std::process::id();
    let Ok(rd) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut out: Vec<String> = rd
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| pid != me)
        .filter_map(|pid| {
            let comm = fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
            let comm = comm.trim();
            (comm.starts_with("monitor")
                || comm.starts_with("kernel_")
                || comm == "bpftrace"
                || comm == "auditd")
                .then(|| format!("{pid} {comm}"))
        })
        .collect();
    out.sort();
    out
}

/// Pids whose `comm` is exactly `name` (kernel threads included).
pub fn pids_named(name: &str) -> Vec<u32> {
    let Ok(rd) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    rd.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == name)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_fields_of_the_final_log_line() {
        let line = "2026-01-01T00:00:00Z  INFO monitor::trace: trace stopped records=1234 decode_errors=0 lost_total=56";
        assert_eq!(field_u64(line, "records"), Some(1234));
        assert_eq!(field_u64(line, "lost_total"), Some(56));
        assert_eq!(field_u64(line, "missing"), None);
        let coloured = "\u{1b}[3mlost_total\u{1b}[0m\u{1b}[2m=\u{1b}[0m7";
        assert_eq!(field_u64(&strip_ansi(coloured), "lost_total"), Some(7));
    }

    #[test]
    fn own_process_shows_in_proc() {
        let me = std::process::id();
        assert!(cpu_secs(me).is_some());
        assert!(status_kib(me, "VmRSS").is_some_and(|k| k > 0));
        assert_eq!(tail("a\nb\nc", 2), "b\nc");
    }
}
