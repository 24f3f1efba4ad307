//! The `sustainbot` binary: the command line (`cli/`) over the library.

mod cli;

use std::process::ExitCode;

use clap::Parser;

// Request handling allocates many small short-lived objects (JSON values, strings); mimalloc keeps
// that cheaper than the system allocator under concurrency (see BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

extern "C" {
    /// mimalloc's option setter (in the linked mimalloc library).
    fn mi_option_set(option: std::os::raw::c_int, value: std::os::raw::c_long);
}

/// `mi_option_purge_delay` in mimalloc 2's `mi_option_e` (libmimalloc-sys 0.1.49's vendored header).
const MI_OPTION_PURGE_DELAY: std::os::raw::c_int = 15;

fn main() -> ExitCode {
    // Give freed memory back to the OS at once instead of after 10 ms: under load the default keeps
    // several MiB more resident (measured in BENCHMARKS.md) for no measurable speed.
    // SAFETY: a plain setter of an integer option, called before any other thread exists.
    unsafe { mi_option_set(MI_OPTION_PURGE_DELAY, 0) };
    // `.env` first; the process environment wins over it.
    let _ = dotenvy::dotenv();
    let cli = cli::Cli::parse();
    cli::run(cli, &cli::Env::capture())
}
