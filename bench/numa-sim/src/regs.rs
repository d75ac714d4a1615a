//! Reading a general register of the running vCPU from a callback
//! registered with `QEMU_PLUGIN_CB_R_REGS` (plugin API 2+): used on the
//! monitor's `msr vttbr_el2, xN` to learn which VM a CPU loads
//! (`vm_time.rs`).
//!
//! The handles come from `qemu_plugin_get_registers`, which must run in a
//! vCPU's context (its init callback); QEMU's handles name a register by
//! number, the same for every vCPU. The value is read into a glib
//! `GByteArray`, one per host thread, made by glib itself (QEMU is linked
//! against it, so the symbols resolve when QEMU loads the plugin).

use qemu_plugin_sys::*;
use std::cell::Cell;
use std::ffi::{c_char, c_int, c_uint, CStr};
use std::sync::OnceLock;

extern "C" {
    fn g_byte_array_new() -> *mut GByteArray;
    fn g_byte_array_set_size(a: *mut GByteArray, len: c_uint) -> *mut GByteArray;
    fn g_array_free(a: *mut GArray, free_segment: c_int) -> *mut c_char;
}

/// Handles of x0..x30, as integers (they are opaque pointers).
static XREGS: OnceLock<Vec<usize>> = OnceLock::new();

thread_local! {
    static BUF: Cell<*mut GByteArray> = const { Cell::new(std::ptr::null_mut()) };
}

/// The index `n` of a core register name `xN` (0..=30).
pub fn x_index(name: &str) -> Option<usize> {
    let n: usize = name.strip_prefix('x')?.parse().ok()?;
    (n <= 30 && name.len() <= 3).then_some(n)
}

/// Looks the handles up once. Call from a vCPU init callback.
///
/// # Safety
/// Must run in a vCPU's context, as `qemu_plugin_get_registers` requires.
pub unsafe fn init() {
    if XREGS.get().is_some() {
        return;
    }
    // SAFETY: caller's contract; the array and its strings are QEMU's.
    let handles = unsafe {
        let arr = qemu_plugin_get_registers();
        if arr.is_null() {
            return;
        }
        let descs = std::slice::from_raw_parts((*arr).data as *const qemu_plugin_reg_descriptor, (*arr).len as usize);
        let mut h = vec![0usize; 31];
        for d in descs {
            if d.name.is_null() {
                continue;
            }
            if let Some(i) = x_index(&CStr::from_ptr(d.name).to_string_lossy()) {
                h[i] = d.handle as usize;
            }
        }
        g_array_free(arr, 1);
        h
    };
    if handles.iter().all(|&h| h != 0) {
        let _ = XREGS.set(handles);
    }
}

/// Whether the handles were found (else no VM switches are seen).
pub fn available() -> bool {
    XREGS.get().is_some()
}

/// Register `xN` (31: xzr, 0) of the calling vCPU.
///
/// # Safety
/// Only from a callback registered with `QEMU_PLUGIN_CB_R_REGS`.
pub unsafe fn read_x(n: u32) -> Option<u64> {
    if n == 31 {
        return Some(0);
    }
    let h = *XREGS.get()?.get(n as usize)?;
    BUF.with(|b| {
        // SAFETY: glib calls on our own array; the read is allowed by the
        // caller's contract; QEMU appends the value in target (LE) order.
        unsafe {
            if b.get().is_null() {
                b.set(g_byte_array_new());
            }
            let buf = b.get();
            g_byte_array_set_size(buf, 0);
            let len = qemu_plugin_read_register(h as *mut qemu_plugin_register, buf);
            if len < 8 || (*buf).len < 8 {
                return None;
            }
            let mut w = [0u8; 8];
            w.copy_from_slice(std::slice::from_raw_parts((*buf).data, 8));
            Some(u64::from_le_bytes(w))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn core_register_names() {
        assert_eq!(x_index("x0"), Some(0));
        assert_eq!(x_index("x30"), Some(30));
        assert_eq!(x_index("x31"), None);
        assert_eq!(x_index("x007"), None);
        assert_eq!(x_index("sp"), None);
        assert_eq!(x_index("xpc"), None);
    }
}
