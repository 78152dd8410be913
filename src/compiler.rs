//! What the compiler says to the faults safe PyO3 rules out: the compile-fail cases of
//! `tests/compile_fail/`, compiled into this binary.
//!
//! Each case is the closest code a PyO3 author could write for one raw fault, and its
//! `.stderr` is rustc's real message, checked by `tests/compile_fail.rs` (trybuild) on every
//! `cargo test`. So what lesson 19 shows is what the compiler says today, not a copy kept by
//! hand.

use crate::faults::Fault;

/// One compile-fail case.
pub struct Case {
    pub fault: Fault,
    /// Where the case lives in the repository.
    pub path: &'static str,
    /// rustc's message, as trybuild recorded it.
    pub message: &'static str,
}

macro_rules! cases {
    ($($fault:ident => $name:literal),* $(,)?) => {
        &[$(Case {
            fault: Fault::$fault,
            path: concat!("tests/compile_fail/", $name, ".rs"),
            message: include_str!(concat!("../tests/compile_fail/", $name, ".stderr")),
        }),*]
    };
}

pub const CASES: &[Case] = cases![
    SetMissingIncref => "set-missing-incref",
    GetBorrowedReturn => "get-borrowed-return",
    RemoveDoubleDecref => "remove-double-decref",
    SetMissingKeyIncref => "set-missing-key-incref",
    UpdateUsesReleasedPair => "update-uses-released-pair",
    TrustsArgumentType => "trusts-argument-type",
    ModuleAddObject => "module-add-object",
];

/// The case of `fault`, if safe PyO3 refuses to compile it.
pub fn case(fault: Fault) -> Option<&'static Case> {
    CASES.iter().find(|case| case.fault == fault)
}

/// The error codes of a message, e.g. `E0507`, once each, in order.
pub fn error_codes(message: &str) -> Vec<&str> {
    let mut codes: Vec<&str> = Vec::new();
    for line in message.lines() {
        let code = line
            .strip_prefix("error[")
            .and_then(|rest| rest.split_once(']'))
            .map(|(code, _)| code);
        if let Some(code) = code.filter(|code| !codes.contains(code)) {
            codes.push(code);
        }
    }
    codes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::faults::{InSafePyO3, CATALOGUE};

    #[test]
    fn every_compile_error_of_the_catalogue_has_its_case_and_no_other_fault_does() {
        for info in CATALOGUE {
            let has_case = case(info.fault).is_some();
            assert_eq!(
                has_case,
                info.safe == InSafePyO3::CompileError,
                "{}",
                info.fault.name()
            );
        }
        for case in CASES {
            assert!(case.path.ends_with(&format!("/{}.rs", case.fault.name())));
            assert!(!error_codes(case.message).is_empty(), "{}", case.path);
        }
    }
}
