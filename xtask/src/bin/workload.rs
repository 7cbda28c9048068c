//! The benchmark workloads: tight syscall loops, compiled, so the cost of an
//! interpreter does not hide the cost of a hook.
//!
//! `workload KIND [--iterations N] [--max-secs S] [--cgroup DIR] [--dir DIR]
//! [--port P] [--rate R] [--secs S] [--warmup N]`
//!
//! Kinds:
//! - `exec`: fork, exec `/bin/true`, wait;
//! - `open`: open (create, truncate) a file in `--dir`, write 64 bytes, close;
//! - `connect`: TCP connect to 127.0.0.1:`--port`, then close with a reset (no
//!   TIME_WAIT, so a long loop cannot run out of ports);
//! - `getppid`: the control, a syscall no hook sees;
//! - `rate`: `open` paced at `--rate` per second for `--secs` seconds;
//! - `marker`: `--iterations` files named `lat-<CLOCK_MONOTONIC ns>-<seq>`,
//!   created in `--dir` at `--rate` per second, for the latency benchmark;
//! - `exec-marker`: `--iterations` fork+execs at `--rate` per second of
//!   `--dir/<seq>/sshd` (seq from `--first`) with argv `sshd lat-<ns>-<seq>`,
//!   the CLOCK_MONOTONIC time taken in the child just before execve: the
//!   alert latency benchmark (`sshd` in a container is an alert);
//! - `listen`: accept and close connections on 127.0.0.1:`--port` until
//!   killed, after one JSON line once listening: the `connect` loop's peer
//!   where the bench's own listener cannot be (inside a VM).
//!
//! With `--cgroup DIR` the process first moves itself into that cgroup v2
//! directory (children inherit it). Every loop stops at `--max-secs` even when
//! its iterations are not done. One JSON object on stdout says what was done.
use std::{
    ffi::CString,
    process::exit,
    time::{Duration, Instant},
};

struct Opts {
    kind: String,
    iterations: u64,
    warmup: u64,
    max_secs: f64,
    cgroup: Option<String>,
    dir: String,
    port: u16,
    rate: f64,
    secs: f64,
    first: u64,
}

fn parse() -> Result<Opts, String> {
    let mut args = std::env::args().skip(1);
    let kind = args
        .next()
        .ok_or("usage: workload KIND [--option value]...")?;
    let mut o = Opts {
        kind,
        iterations: 1000,
        warmup: 0,
        max_secs: 60.0,
        cgroup: None,
        dir: "/dev/shm".into(),
        port: 0,
        rate: 1000.0,
        secs: 1.0,
        first: 0,
    };
    while let Some(flag) = args.next() {
        let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let bad = |e: &dyn std::fmt::Display| format!("{flag} {value}: {e}");
        match flag.as_str() {
            "--iterations" => o.iterations = value.parse().map_err(|e| bad(&e))?,
            "--warmup" => o.warmup = value.parse().map_err(|e| bad(&e))?,
            "--max-secs" => o.max_secs = value.parse().map_err(|e| bad(&e))?,
            "--cgroup" => o.cgroup = Some(value),
            "--dir" => o.dir = value,
            "--port" => o.port = value.parse().map_err(|e| bad(&e))?,
            "--rate" => o.rate = value.parse().map_err(|e| bad(&e))?,
            "--secs" => o.secs = value.parse().map_err(|e| bad(&e))?,
            "--first" => o.first = value.parse().map_err(|e| bad(&e))?,
            _ => return Err(format!("unknown option {flag}")),
        }
    }
    if o.rate <= 0.0 || o.max_secs <= 0.0 {
        return Err("--rate and --max-secs must be positive".into());
    }
    Ok(o)
}

fn main() {
    let o = match parse() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("workload: {e}");
            exit(2);
        }
    };
    if let Some(cg) = &o.cgroup
        && let Err(e) = std::fs::write(format!("{cg}/cgroup.procs"), "0")
    {
        eprintln!("workload: joining cgroup {cg}: {e}");
        exit(1);
    }
    // Sleeps in the paced loops should end when asked, not 50 µs later.
    // SAFETY: prctl with integer arguments.
    unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1u64, 0u64, 0u64, 0u64) };
    let result = match o.kind.as_str() {
        "exec" | "open" | "connect" | "getppid" => timed_loop(&o),
        "rate" => paced_open(&o),
        "marker" => markers(&o),
        "exec-marker" => exec_markers(&o),
        "listen" => listen(&o),
        other => Err(format!(
            "unknown kind {other}: use exec, open, connect, getppid, rate, marker, exec-marker or listen"
        )),
    };
    match result {
        Ok(json) => println!("{json}"),
        Err(e) => {
            eprintln!("workload {}: {e}", o.kind);
            exit(1);
        }
    }
}

fn os_err(what: &str) -> String {
    format!("{what}: {}", std::io::Error::last_os_error())
}

/// One iteration of a micro-loop.
struct Step {
    kind: String,
    path: CString,
    addr: libc::sockaddr_in,
    true_path: CString,
    true_argv: [*const libc::c_char; 2],
    buf: [u8; 64],
}

impl Step {
    fn new(o: &Opts) -> Step {
        let path = CString::new(format!("{}/f-{}", o.dir, std::process::id())).unwrap();
        let true_path = CString::new("/bin/true").unwrap();
        let true_argv = [true_path.as_ptr(), std::ptr::null()];
        let addr = libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: o.port.to_be(),
            sin_addr: libc::in_addr {
                s_addr: u32::from_be_bytes([127, 0, 0, 1]).to_be(),
            },
            sin_zero: [0; 8],
        };
        Step {
            kind: o.kind.clone(),
            path,
            addr,
            true_path,
            true_argv,
            buf: [b'x'; 64],
        }
    }

    fn run(&self) -> Result<(), String> {
        // SAFETY: plain syscalls on values owned by `self`; the child of fork
        // only calls execv and _exit.
        unsafe {
            match self.kind.as_str() {
                "exec" => {
                    let pid = libc::fork();
                    if pid < 0 {
                        return Err(os_err("fork"));
                    }
                    if pid == 0 {
                        libc::execv(self.true_path.as_ptr(), self.true_argv.as_ptr());
                        libc::_exit(127);
                    }
                    let mut status = 0;
                    if libc::waitpid(pid, &mut status, 0) != pid {
                        return Err(os_err("waitpid"));
                    }
                    if status != 0 {
                        return Err(format!("/bin/true exited with status {status}"));
                    }
                }
                "open" | "rate" => {
                    let fd = libc::open(
                        self.path.as_ptr(),
                        libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC | libc::O_CLOEXEC,
                        0o600,
                    );
                    if fd < 0 {
                        return Err(os_err("open"));
                    }
                    let n = libc::write(fd, self.buf.as_ptr().cast(), self.buf.len());
                    libc::close(fd);
                    if n != self.buf.len() as isize {
                        return Err(os_err("write"));
                    }
                }
                "connect" => {
                    let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
                    if fd < 0 {
                        return Err(os_err("socket"));
                    }
                    // Close with a reset: no TIME_WAIT left behind on either side.
                    let linger = libc::linger {
                        l_onoff: 1,
                        l_linger: 0,
                    };
                    libc::setsockopt(
                        fd,
                        libc::SOL_SOCKET,
                        libc::SO_LINGER,
                        (&linger as *const libc::linger).cast(),
                        size_of::<libc::linger>() as libc::socklen_t,
                    );
                    let rc = libc::connect(
                        fd,
                        (&self.addr as *const libc::sockaddr_in).cast(),
                        size_of::<libc::sockaddr_in>() as libc::socklen_t,
                    );
                    let err = (rc != 0).then(|| os_err("connect to 127.0.0.1"));
                    libc::close(fd);
                    if let Some(e) = err {
                        return Err(e);
                    }
                }
                "getppid" => {
                    // The raw syscall: no libc caching can skip the kernel.
                    libc::syscall(libc::SYS_getppid);
                }
                other => return Err(format!("no step for {other}")),
            }
        }
        Ok(())
    }
}

/// Runs `--warmup` untimed iterations, then `--iterations` timed ones.
fn timed_loop(o: &Opts) -> Result<String, String> {
    let step = Step::new(o);
    let deadline = Instant::now() + Duration::from_secs_f64(o.max_secs);
    for _ in 0..o.warmup {
        step.run()?;
        if Instant::now() > deadline {
            break;
        }
    }
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(o.max_secs);
    let mut done = 0u64;
    let mut stopped_early = false;
    while done < o.iterations {
        step.run()?;
        done += 1;
        // Reading the clock costs ~20 ns: check it every 64 iterations.
        if done.is_multiple_of(64) && Instant::now() > deadline {
            stopped_early = true;
            break;
        }
    }
    let elapsed = start.elapsed().as_nanos() as f64;
    cleanup(o, &step);
    Ok(format!(
        r#"{{"kind":"{}","iterations":{done},"elapsed_ns":{elapsed:.0},"ns_per_iter":{:.1},"stopped_early":{stopped_early}}}"#,
        o.kind,
        elapsed / done.max(1) as f64
    ))
}

fn cleanup(o: &Opts, step: &Step) {
    if matches!(o.kind.as_str(), "open" | "rate") {
        // SAFETY: unlink of a path we own.
        unsafe { libc::unlink(step.path.as_ptr()) };
    }
}

/// `open` at a steady `--rate` for `--secs`: each moment it does what the
/// schedule asks so far (in bursts of at most 64), and sleeps when ahead.
fn paced_open(o: &Opts) -> Result<String, String> {
    let step = Step::new(o);
    let start = Instant::now();
    let secs = o.secs.min(o.max_secs);
    let mut done = 0u64;
    loop {
        let elapsed = start.elapsed().as_secs_f64();
        if elapsed >= secs {
            break;
        }
        let due = (o.rate * elapsed) as u64;
        if done < due {
            for _ in 0..(due - done).min(64) {
                step.run()?;
                done += 1;
            }
        } else {
            let ahead = (done + 1) as f64 / o.rate - elapsed;
            std::thread::sleep(Duration::from_secs_f64(ahead.clamp(20e-6, 2e-3)));
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    cleanup(o, &step);
    Ok(format!(
        r#"{{"kind":"rate","events":{done},"elapsed_ns":{:.0},"target_rate":{:.0},"achieved_rate":{:.0}}}"#,
        elapsed * 1e9,
        o.rate,
        done as f64 / elapsed
    ))
}

fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes the struct it is given.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Files whose names carry the CLOCK_MONOTONIC time just before their open.
fn markers(o: &Opts) -> Result<String, String> {
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(o.max_secs);
    let mut done = 0u64;
    while done < o.iterations && Instant::now() < deadline {
        let due = start + Duration::from_secs_f64(done as f64 / o.rate);
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        }
        let path = CString::new(format!("{}/lat-{}-{done}", o.dir, monotonic_ns())).unwrap();
        // SAFETY: open/close of a path we own.
        let fd = unsafe {
            libc::open(
                path.as_ptr(),
                libc::O_WRONLY | libc::O_CREAT | libc::O_CLOEXEC,
                0o600,
            )
        };
        if fd < 0 {
            return Err(os_err("open marker"));
        }
        unsafe { libc::close(fd) };
        done += 1;
    }
    Ok(format!(
        r#"{{"kind":"marker","iterations":{done},"elapsed_ns":{}}}"#,
        start.elapsed().as_nanos()
    ))
}

/// Execs of `<dir>/<seq>/sshd lat-<ns>-<seq>`, the time taken in the child
/// just before execve (a distinct path each, so no alert folds into another).
fn exec_markers(o: &Opts) -> Result<String, String> {
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(o.max_secs);
    let mut done = 0u64;
    while done < o.iterations && Instant::now() < deadline {
        let due = start + Duration::from_secs_f64(done as f64 / o.rate);
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        }
        let seq = o.first + done;
        let path = CString::new(format!("{}/{seq}/sshd", o.dir)).unwrap();
        let argv0 = CString::new("sshd").unwrap();
        // SAFETY: fork of this single-threaded process; the child formats its
        // argument, calls execv and _exit only.
        unsafe {
            let pid = libc::fork();
            if pid < 0 {
                return Err(os_err("fork"));
            }
            if pid == 0 {
                let arg = CString::new(format!("lat-{}-{seq}", monotonic_ns())).unwrap();
                let argv = [argv0.as_ptr(), arg.as_ptr(), std::ptr::null()];
                libc::execv(path.as_ptr(), argv.as_ptr());
                libc::_exit(127);
            }
            let mut status = 0;
            if libc::waitpid(pid, &mut status, 0) != pid {
                return Err(os_err("waitpid"));
            }
            if status != 0 {
                return Err(format!(
                    "{} exited with status {status}",
                    path.to_string_lossy()
                ));
            }
        }
        done += 1;
    }
    Ok(format!(
        r#"{{"kind":"exec-marker","iterations":{done},"elapsed_ns":{}}}"#,
        start.elapsed().as_nanos()
    ))
}

/// Accepts and closes connections on 127.0.0.1:`--port` until killed. The
/// accept queue is deep for the reason the bench's own listener's is: with
/// 128, a moment without the CPU drops a SYN and a connect waits a second.
fn listen(o: &Opts) -> Result<String, String> {
    // SAFETY: plain socket calls on a descriptor this function owns.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return Err(os_err("socket"));
        }
        let one: libc::c_int = 1;
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_REUSEADDR,
            (&one as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        );
        let addr = libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: o.port.to_be(),
            sin_addr: libc::in_addr {
                s_addr: u32::from_be_bytes([127, 0, 0, 1]).to_be(),
            },
            sin_zero: [0; 8],
        };
        if libc::bind(
            fd,
            (&addr as *const libc::sockaddr_in).cast(),
            size_of::<libc::sockaddr_in>() as libc::socklen_t,
        ) != 0
        {
            return Err(os_err("bind 127.0.0.1"));
        }
        if libc::listen(fd, 4096) != 0 {
            return Err(os_err("listen"));
        }
        // Said before the loop, which never returns: the caller waits for it.
        println!(r#"{{"kind":"listen","port":{}}}"#, o.port);
        use std::io::Write as _;
        let _ = std::io::stdout().flush();
        loop {
            let c = libc::accept4(
                fd,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                libc::SOCK_CLOEXEC,
            );
            if c >= 0 {
                libc::close(c);
            }
        }
    }
}
