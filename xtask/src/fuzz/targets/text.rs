//! What the TOML parsers of machine files and VM manifests promise about
//! their errors: every error names the file; one about a line names it as
//! `FILE:LINE:` with a line the text has; and unless the text is not TOML
//! at all (a syntax error names only file and line) or the error is about
//! the whole file, it names the field (`field `NAME``, or TOML's own
//! "unknown field"/"missing field" message).

/// Seeds: the repository's own files of this kind.
pub fn files(dir: &str) -> Vec<Vec<u8>> {
    let dir = crate::util::root().join(dir);
    let mut v: Vec<_> = std::fs::read_dir(&dir)
        .map(|d| d.flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|x| x == "toml")).collect())
        .unwrap_or_else(|_| Vec::new());
    v.sort();
    v.iter().filter_map(|p| std::fs::read(p).ok()).collect()
}

/// Checks an error of parsing `text` as file `file`; `whole_file`:
/// messages that may name no line. Returns a feature bit.
pub fn check_error(file: &str, text: &str, e: &anyhow::Error, whole_file: &[&str]) -> u64 {
    let msg = format!("{e:#}");
    let rest = msg.strip_prefix(file).and_then(|r| r.strip_prefix(':'));
    let Some(rest) = rest else { panic!("error does not start with `{file}:`: {msg}") };
    let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
    if digits.is_empty() {
        assert!(whole_file.iter().any(|w| rest.trim_start().starts_with(w)), "error names no line: {msg}");
        return 1;
    }
    let line: usize = digits.parse().unwrap_or(0);
    let lines = text.matches('\n').count() + 1;
    assert!((1..=lines).contains(&line), "line {line} of a {lines}-line file: {msg}");
    if toml::from_str::<toml::Table>(text).is_err() {
        return 2;
    }
    let names_field = msg.contains("field `") || msg.contains("unknown field") || msg.contains("missing field");
    assert!(names_field, "error names no field: {msg}");
    4
}
