//! Reads of kernel and user memory by pointer and offset.
use aya_ebpf::helpers::bpf_probe_read_kernel;

/// Reads a pointer-sized value at `base + off` in kernel memory.
#[inline(always)]
pub unsafe fn read_ptr(base: u64, off: u32) -> Result<u64, i64> {
    unsafe { bpf_probe_read_kernel((base + off as u64) as *const u64).map_err(|e| e as i64) }
}

#[inline(always)]
pub unsafe fn read_u32(base: u64, off: u32) -> Result<u32, i64> {
    unsafe { bpf_probe_read_kernel((base + off as u64) as *const u32).map_err(|e| e as i64) }
}
