//! How the examples report an error: its `Display` form and its sources,
//! on one line (`fn main() -> Result<..>` would print its `Debug` form).

use std::error::Error;
use std::process::ExitCode;

/// An error and its sources, `a: b: c` (a client's error alone often says
/// only "client error"). A source whose text an outer error already shows
/// is not repeated.
pub fn chain(error: &(dyn Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        let said = e.to_string();
        if !text.contains(&said) {
            text.push_str(": ");
            text.push_str(&said);
        }
        source = e.source();
    }
    text
}

/// Success, or `error: ` and the chain on stderr and a failure code.
#[allow(dead_code)] // demo.rs reports its own way
pub fn exit_code(result: Result<(), Box<dyn Error + Send + Sync>>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", chain(&*e));
            ExitCode::FAILURE
        }
    }
}
