//! Handing memory a plugin freed back to the operating system.
//!
//! An unloaded model's memory is freed inside the process, but glibc's allocator keeps
//! freed pages in its per-thread arenas for reuse; with the host's blocking threads and
//! the backend's own worker threads each filling an arena, resident memory after many
//! load/unload cycles sits tens of megabytes above where it started although nothing
//! leaks. The lifecycle promises that an unloaded model gives its memory back, so after
//! an unload or a trim the allocator is asked to return what it holds free.

/// Return the allocator's free pages to the OS, where the allocator can be asked to.
pub(super) fn return_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        extern "C" {
            fn malloc_trim(pad: usize) -> std::ffi::c_int;
        }
        // SAFETY: malloc_trim takes the allocator's own locks and only releases pages
        // that hold no live allocation; it is safe to call from any thread at any time.
        unsafe {
            malloc_trim(0);
        }
    }
}
