//! `refcount-lab`: watch reference counting go wrong in a real CPython extension type.
//!
//! `main` only parses the command line and dispatches; each module owns one idea:
//! `hashtable/` the raw-FFI type being taught, `faults` the switchboard of its mistakes,
//! `embed` the interpreter, `lab` the probes lesson scripts use, `trace` the child → parent
//! protocol.

mod embed;
mod faults;
mod hashtable;
mod lab;
mod trace;

use clap::{Parser, Subcommand};
use std::ffi::OsString;
use std::process::ExitCode;

#[derive(Parser)]
#[command(version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the embedded CPython (as `python3` would: REPL, -c, -m, a script), with
    /// `hashtable` and `lab` importable. Put `--` before Python options that clash with ours.
    Python {
        /// Switch a fault on in the hashtable type (repeatable).
        #[arg(long = "fault", value_name = "NAME")]
        faults: Vec<faults::Fault>,
        /// Arguments for Python.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<OsString>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Python { faults, args } => {
            let code = embed::run_python(&args, faults);
            ExitCode::from(u8::try_from(code).unwrap_or(1))
        }
    }
}
