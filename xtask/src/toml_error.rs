//! TOML errors of machine files and manifests as `FILE:LINE: field `KEY`:
//! MESSAGE`, like their own checks' errors: TOML's type errors (say, a
//! string where a number goes) carry only a span, so the key is read from
//! the text at that span: the `key =` of the value, or the `[table]` /
//! `[[array]]` header it belongs to (rows of a multi-line array are not
//! headers). Found by fuzzing (`cargo xtask fuzz --target manifest`,
//! `machine`): these errors named no field, and a machine file's named no
//! line in the `FILE:LINE:` form.

/// The error, with file, line and (where the text shows it) field.
pub fn describe(file: &str, text: &str, e: &toml::de::Error) -> String {
    let msg = e.message().trim();
    let Some(span) = e.span() else { return format!("{file}: {msg}") };
    let start = span.start.min(text.len());
    let before = text.get(..start).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let line_end = text.get(start..).and_then(|r| r.find('\n')).map_or(text.len(), |n| start + n);
    match key_before(text.get(..line_end).unwrap_or(before)) {
        Some(key) if !msg.contains(&format!("`{key}`")) => format!("{file}:{line}: field `{key}`: {msg}"),
        _ => format!("{file}:{line}: {msg}"),
    }
}

/// The key of the last `key =` or `[header]` line in `before` (the text up
/// to the end of the error's line), skipping the lines of multi-line
/// arrays (whose `[...]` rows are not headers).
fn key_before(before: &str) -> Option<&str> {
    let mut key = None;
    let mut depth = 0usize;
    for line in before.lines() {
        let l = line.trim_start();
        let value = if l.starts_with('#') {
            continue;
        } else if depth > 0 {
            l
        } else if let Some(h) = l.strip_prefix('[') {
            let name = h.trim_start_matches('[').split(']').next().unwrap_or("").trim();
            key = (!name.is_empty()).then_some(name).or(key);
            continue;
        } else if let Some((k, v)) = l.split_once('=') {
            let k = k.trim();
            if !k.is_empty() && k.chars().all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c)) {
                key = Some(k);
            }
            v
        } else {
            continue;
        };
        depth = brackets(value, depth);
    }
    key
}

/// The array nesting after `value`, from `depth`: brackets outside
/// strings and comments.
fn brackets(value: &str, mut depth: usize) -> usize {
    let mut quote = None;
    for c in value.chars() {
        match (quote, c) {
            (None, '#') => break,
            (None, '"' | '\'') => quote = Some(c),
            (Some(q), _) if c == q => quote = None,
            (None, '[') => depth += 1,
            (None, ']') => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    depth
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> String {
        #[derive(serde::Deserialize, Debug)]
        #[allow(dead_code)]
        #[serde(deny_unknown_fields)]
        struct T {
            vcpus: Option<u32>,
            vm: Option<Vec<toml::Table>>,
            rows: Option<Vec<Vec<u32>>>,
        }
        describe("m.toml", text, &toml::from_str::<T>(text).unwrap_err())
    }

    #[test]
    fn names_line_and_key() {
        assert_eq!(err("\nvcpus = \"two\"\n"), "m.toml:2: field `vcpus`: invalid type: string \"two\", expected u32");
        assert!(
            err("[vm]\nx = 1\n").starts_with("m.toml:1: field `vm`: invalid type: map"),
            "{}",
            err("[vm]\nx = 1\n")
        );
        assert!(err("colour = 1\n").starts_with("m.toml:1: unknown field `colour`"), "{}", err("colour = 1\n"));
        assert!(err("vcpus = [1,\n 2]\n").starts_with("m.toml:1: field `vcpus`:"), "{}", err("vcpus = [1,\n 2]\n"));
        assert!(err("vcpus = \"\n").starts_with("m.toml:1:"), "{}", err("vcpus = \"\n"));
        // Rows of a multi-line array are not table headers (found by fuzzing).
        let rows = "rows = [\n  [1],\n  [99999999999]\n]\n";
        assert!(err(rows).starts_with("m.toml:3: field `rows`:"), "{}", err(rows));
        let commented = "# rows = [[\nrows = [\n  [99999999999]\n]\n";
        assert!(err(commented).starts_with("m.toml:3: field `rows`:"), "{}", err(commented));
    }
}
