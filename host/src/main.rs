use std::process::ExitCode;

/// Errors end the program as one line, the whole chain of causes and no backtrace (not
/// even with `RUST_BACKTRACE=1`, which is for panics): a user reads what went wrong.
fn main() -> ExitCode {
    match hearth::cli::main() {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("Error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
