//! Fault sites, read from the real source of the `hashtable` type compiled into this binary.
//!
//! A site is marked in `native/src/*.rs` by a `// fault-site: NAME` line directly above an
//! `if faults::is_on("NAME") {` … `} else {` … `}` block: the `if` branch is the faulty variant,
//! the `else` branch the correct one. Lessons print both, so what a learner reads is exactly
//! what runs. Nothing here is a copy kept by hand.

use crate::faults::Fault;

/// The source files that hold fault sites, as compiled.
const SOURCES: &[(&str, &str)] = &[
    (
        "native/src/pytype.rs",
        include_str!("../native/src/pytype.rs"),
    ),
    ("native/src/lib.rs", include_str!("../native/src/lib.rs")),
    ("native/src/safe.rs", include_str!("../native/src/safe.rs")),
];

/// Lines of one branch of a site: the 1-based number of the first, and the text.
#[derive(Debug, PartialEq, Eq)]
pub struct Branch {
    pub first_line: usize,
    pub lines: Vec<String>,
}

/// A fault site: where it is, and its two variants.
#[derive(Debug)]
pub struct Site {
    pub file: &'static str,
    pub faulty: Branch,
    pub correct: Branch,
}

/// Finds the site of `fault`, or `None` if the source has no marker for it.
pub fn find(fault: Fault) -> Option<Site> {
    let marker = format!("// fault-site: {}", fault.name());
    SOURCES.iter().find_map(|(file, source)| {
        let lines: Vec<&str> = source.lines().collect();
        let at = lines.iter().position(|line| line.trim() == marker)?;
        let (faulty, correct) = branches(&lines, at + 1, fault.name())?;
        Some(Site {
            file,
            faulty,
            correct,
        })
    })
}

/// Splits the `if … { A } else { B }` block starting at `if_line` into A and B.
fn branches(lines: &[&str], if_line: usize, name: &str) -> Option<(Branch, Branch)> {
    let header = lines.get(if_line)?;
    if header.trim_start() != format!("if faults::is_on(\"{name}\") {{") {
        return None;
    }
    let indent = &header[..header.len() - header.trim_start().len()];
    let else_line =
        (if_line + 1..lines.len()).find(|&i| lines[i] == format!("{indent}}} else {{"))?;
    let end_line = (else_line + 1..lines.len()).find(|&i| lines[i] == format!("{indent}}}"))?;
    let branch = |from: usize, to: usize| Branch {
        first_line: from + 1,
        lines: lines[from..to]
            .iter()
            .map(|line| dedent(line, indent))
            .collect(),
    };
    Some((
        branch(if_line + 1, else_line),
        branch(else_line + 1, end_line),
    ))
}

/// The line with the block's own indentation and one more level taken off.
fn dedent(line: &str, indent: &str) -> String {
    let inner = line.strip_prefix(indent).unwrap_or(line);
    inner.strip_prefix("    ").unwrap_or(inner).to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::faults::CATALOGUE;

    #[test]
    fn every_fault_has_a_site_with_two_non_empty_variants() {
        for info in CATALOGUE {
            let site = find(info.fault).unwrap_or_else(|| panic!("no site for {:?}", info.fault));
            assert!(!site.faulty.lines.is_empty() && !site.correct.lines.is_empty());
            assert_ne!(site.faulty.lines, site.correct.lines);
        }
    }

    #[test]
    fn line_numbers_point_at_the_lines_shown() {
        for info in CATALOGUE {
            let site = find(info.fault).unwrap();
            let source = SOURCES
                .iter()
                .find(|(file, _)| *file == site.file)
                .unwrap()
                .1;
            let lines: Vec<&str> = source.lines().collect();
            for branch in [&site.faulty, &site.correct] {
                let first = lines[branch.first_line - 1].trim();
                assert_eq!(first, branch.lines[0].trim(), "{:?}", info.fault);
            }
        }
    }

    #[test]
    fn the_set_site_shows_the_missing_incref() {
        let site = find(Fault::SetMissingIncref).unwrap();
        assert!(site
            .correct
            .lines
            .iter()
            .any(|l| l.starts_with("Py_INCREF(slf);")));
        assert!(site.faulty.lines.iter().all(|l| !l.contains("Py_INCREF")));
    }
}
