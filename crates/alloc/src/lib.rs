//! The process allocator, and when it gives freed memory back to the operating system.
//!
//! mimalloc returns memory that stayed free for a second to the OS (`purge_delay`, 1,000 ms).
//! For a server whose read model only grows that buys little, and it costs: pages given back
//! are faulted in and zeroed again when the next requests allocate, and on a virtual machine that
//! reports free memory to its host, touching them again is slow: concurrent requests then stall
//! together for milliseconds, a few times a second, which shows in the patient query's p99.
//!
//! So a process purges once, when it has finished starting (the start's temporaries, such as a
//! decoded checkpoint's buffers or a replay's, go back), and keeps what it frees afterwards for
//! reuse: its resident memory is then its high-water mark, which is what its memory limit must
//! cover anyway.

pub use mimalloc::MiMalloc;

/// Turns transparent huge pages off for this process; call first thing in `main`.
///
/// mimalloc advises the kernel to back its arenas with 2 MiB pages (`MADV_HUGEPAGE`), and a huge
/// page is resident as a whole once any byte of it is touched. The read model is millions of
/// small persistent-map nodes and per-patient vectors spread over those arenas, so huge pages
/// keep a tenth or more of it resident without use, while small pages cost the patient query
/// no measurable time in TLB misses. mimalloc's own `allow_thp` option does the same, but is read before `main`
/// runs; the process-wide flag also covers the arenas reserved before it.
pub fn small_pages_only() -> std::io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: PR_SET_THP_DISABLE takes plain integers and no pointers (prctl(2)).
        #[allow(unsafe_code)]
        let done = unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) };
        if done != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// `mi_option_purge_delay` in mimalloc 3's `mimalloc.h`; the Rust bindings name no constant for
/// it (the test below checks the index against its documented default).
const PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Gives back to the OS what the process freed so far, and from now on keeps freed memory for
/// reuse. Call once, when start-up is over; calling it again only gives back what is free then.
pub fn settle_after_start() {
    // SAFETY: `mi_collect` and `mi_option_set` take no pointers and may be called from any thread
    // at any time (mimalloc's API contract); the option is a valid `mi_option_t` constant.
    #[allow(unsafe_code)]
    unsafe {
        // Purges are scheduled only while the delay is positive: collect first, with the
        // default still in force, so the memory the start freed is purged now.
        libmimalloc_sys::mi_collect(true);
        libmimalloc_sys::mi_option_set(PURGE_DELAY, -1);
    }
}

#[cfg(test)]
mod tests {
    #[global_allocator]
    static GLOBAL: super::MiMalloc = super::MiMalloc;

    fn purge_delay() -> std::ffi::c_long {
        // SAFETY: reads an option by its valid index; no pointers involved.
        #[allow(unsafe_code)]
        unsafe {
            libmimalloc_sys::mi_option_get(super::PURGE_DELAY)
        }
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn the_process_asks_for_small_pages_only() {
        super::small_pages_only().expect("prctl");
        // SAFETY: PR_GET_THP_DISABLE takes no pointers and returns the flag.
        #[allow(unsafe_code)]
        let flag = unsafe { libc::prctl(libc::PR_GET_THP_DISABLE, 0, 0, 0, 0) };
        assert_eq!(flag, 1);
        // Recent kernels also say so in the process's status.
        let status = std::fs::read_to_string("/proc/self/status").expect("status");
        if let Some(line) = status.lines().find(|l| l.starts_with("THP_enabled:")) {
            assert!(line.ends_with('0'), "the kernel still offers huge pages: {line}");
        }
    }

    #[test]
    fn after_start_freed_memory_is_kept_for_reuse() {
        // mimalloc 3 documents 1,000 ms as the delay's default: the index names that option.
        assert_eq!(purge_delay(), 1000, "index {} is not mimalloc's purge_delay", super::PURGE_DELAY);
        let start: Vec<Vec<u8>> = (0..64).map(|i| vec![i as u8; 1 << 20]).collect();
        drop(start);
        super::settle_after_start();
        assert_eq!(purge_delay(), -1);
        // A second call is harmless.
        super::settle_after_start();
        assert_eq!(purge_delay(), -1);
    }
}
