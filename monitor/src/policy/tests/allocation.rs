//! Matching allocates nothing per event that finds nothing.
use super::*;

/// Counts allocations made by the current thread.
mod counting {
    use std::{
        alloc::{GlobalAlloc, Layout, System},
        cell::Cell,
    };

    thread_local! {
        static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
    }

    pub struct Counting;

    // SAFETY: forwards to the system allocator; only counts.
    unsafe impl GlobalAlloc for Counting {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            ALLOCATIONS.with(|c| c.set(c.get() + 1));
            // SAFETY: same contract as ours.
            unsafe { System.alloc(layout) }
        }
        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            // SAFETY: same contract as ours.
            unsafe { System.dealloc(ptr, layout) }
        }
        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            ALLOCATIONS.with(|c| c.set(c.get() + 1));
            // SAFETY: same contract as ours.
            unsafe { System.realloc(ptr, layout, new_size) }
        }
    }

    pub fn allocations() -> u64 {
        ALLOCATIONS.with(Cell::get)
    }
}

#[global_allocator]
static COUNTING: counting::Counting = counting::Counting;

#[test]
fn evaluation_without_findings_does_not_allocate() {
    let mut ev = with_nginx_policy();
    let nginx = web().by("/usr/sbin/nginx").parent("/docker-entrypoint.sh");
    let events = [
        web().exec("/usr/sbin/nginx", &["nginx", "-g", "daemon off;"]),
        web().exec("/bin/sh", &["sh", "-c", "true"]),
        nginx.write("/var/cache/nginx/client_temp/0001"),
        nginx.file(
            FileOp::Open,
            "/etc/nginx/nginx.conf",
            None,
            &["O_RDONLY"],
            3,
        ),
        nginx.connect("10.0.3.4", 8080, Protocol::Tcp),
        nginx.connect("10.96.0.10", 53, Protocol::Udp),
        nginx.connect("::1", 8081, Protocol::Tcp),
        host("/usr/bin/dockerd").write("/var/lib/docker/containers/x/config.v2.json"),
        host("/usr/bin/vim").write("/etc/hosts"),
    ];
    let mut out = Vec::with_capacity(16);
    // Warm-up: regex caches and detector state are filled on first use.
    for e in &events {
        ev.evaluate(e, &mut out);
    }
    assert!(out.is_empty(), "{out:#?}");
    let before = counting::allocations();
    for _ in 0..100 {
        for e in &events {
            ev.evaluate(e, &mut out);
        }
    }
    assert_eq!(counting::allocations() - before, 0);
    assert!(out.is_empty());
}
