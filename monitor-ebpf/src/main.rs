//! Kernel programs of the monitor: one module per concern.
//!
//! Every program is a thin entry point that calls a `try_` function, and every
//! record goes through the one ring buffer in [`maps`]. Filtering that needs no
//! strings happens here (write flags, monitored cgroups, the agent's own pid);
//! everything else is left to userspace.
#![no_std]
#![no_main]

mod cgroup;
mod context;
mod dns;
mod exec;
mod file;
mod kmem;
mod lsm;
mod maps;
mod net;
mod path;
mod proc;
mod syscall;
mod vfs;

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // The verifier rejects any path that could reach here; it is never called.
    loop {}
}

// bpf_probe_read_kernel and friends are GPL-only helpers.
#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
