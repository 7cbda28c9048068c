//! What the bench makes for the workloads to use and removes when dropped,
//! also on error or ^C: its directory on tmpfs and its TCP listener on
//! 127.0.0.1. Apart from the run so that its setup reads as a list of steps.
use std::{
    fs,
    net::{TcpListener, TcpStream},
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::Duration,
};

use anyhow::Context as _;

/// The bench's files on tmpfs, removed when dropped.
pub(super) struct ShmDir(pub(super) PathBuf);

impl ShmDir {
    pub(super) fn create() -> anyhow::Result<ShmDir> {
        let base = Path::new("/dev/shm");
        if let Ok(rd) = fs::read_dir(base) {
            for e in rd.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if let Some(pid) = name.strip_prefix("monitor-bench-")
                    && !Path::new("/proc").join(pid).exists()
                {
                    let _ = fs::remove_dir_all(e.path());
                }
            }
        }
        let dir = base.join(format!("monitor-bench-{}", std::process::id()));
        fs::create_dir_all(&dir).with_context(|| format!("mkdir {}", dir.display()))?;
        Ok(ShmDir(dir))
    }
}

impl Drop for ShmDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Accepts and drops connections on 127.0.0.1 until dropped.
pub(super) struct Listener {
    pub(super) port: u16,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Listener {
    pub(super) fn start() -> anyhow::Result<Listener> {
        let l = listen_loopback().context("listening on 127.0.0.1")?;
        let port = l.local_addr()?.port();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            for conn in l.incoming() {
                if flag.load(Ordering::Relaxed) {
                    break;
                }
                drop(conn);
            }
        });
        Ok(Listener {
            port,
            stop,
            thread: Some(thread),
        })
    }
}

/// A listener on 127.0.0.1 with a deep accept queue: with std's 128, a
/// moment without the CPU fills the queue, a SYN is dropped, and one connect
/// of the loop waits a second for its retransmission.
fn listen_loopback() -> std::io::Result<TcpListener> {
    use std::os::fd::FromRawFd as _;
    // SAFETY: plain socket calls; the fd is owned by the TcpListener on success
    // and closed on failure.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let addr = libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: 0,
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
            || libc::listen(fd, 4096) != 0
        {
            let e = std::io::Error::last_os_error();
            libc::close(fd);
            return Err(e);
        }
        Ok(TcpListener::from_raw_fd(fd))
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wake the blocking accept.
        let _ =
            TcpStream::connect_timeout(&([127, 0, 0, 1], self.port).into(), Duration::from_secs(1));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
