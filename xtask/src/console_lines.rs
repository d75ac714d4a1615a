//! Joins the monitor's interrupted console lines. The monitor prints the
//! focused VM's output as it comes; when another VM or the monitor prints
//! meanwhile, it ends the focused VM's partial line with `ESC [ K` (erase
//! to end of line: invisible on a terminal) and prints the rest later as
//! `[name]+ rest` (see `monitor/src/io/console.rs`). Readers get the whole
//! line once it is complete, so markers are attributed to the right VM.

/// What ends an interrupted partial line.
const INTERRUPTED: &str = "\x1b[K";

#[derive(Default)]
pub struct Reassembler {
    /// Partial lines waiting for their continuation: (VM name, text).
    held: Vec<(String, String)>,
}

impl Reassembler {
    /// Takes one console line; returns the line to deliver, if complete.
    pub fn feed(&mut self, line: &str) -> Option<String> {
        let (body, partial) = match line.strip_suffix(INTERRUPTED) {
            Some(b) => (b, true),
            None => (line, false),
        };
        let whole = match continuation(body) {
            Some((name, rest)) => match self.held.iter().position(|(n, _)| n == name) {
                Some(i) => self.held.remove(i).1 + rest,
                None => format!("[{name}] {rest}"),
            },
            None => body.to_string(),
        };
        match vm_name(&whole) {
            Some(name) if partial => {
                self.held.push((name.to_string(), whole));
                None
            }
            _ => Some(whole),
        }
    }

    /// Partial lines never continued (the run ended), oldest first.
    pub fn flush(&mut self) -> Vec<String> {
        self.held.drain(..).map(|(_, l)| l).collect()
    }
}

/// `[name]+ rest` -> (name, rest).
fn continuation(line: &str) -> Option<(&str, &str)> {
    let (name, rest) = line.strip_prefix('[')?.split_once("]+ ")?;
    (!name.contains(']')).then_some((name, rest))
}

/// The VM name of a `[name] ...` line.
fn vm_name(line: &str) -> Option<&str> {
    let (name, _) = line.strip_prefix('[')?.split_once("] ")?;
    (!name.contains(']')).then_some(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn joins_an_interrupted_line() {
        let mut r = Reassembler::default();
        assert_eq!(r.feed("[w] DISCO-EX\x1b[K"), None);
        assert_eq!(r.feed("[z] DISCO-READY").as_deref(), Some("[z] DISCO-READY"));
        assert_eq!(r.feed("disco: [ 1.000 cpu0] hello").as_deref(), Some("disco: [ 1.000 cpu0] hello"));
        assert_eq!(r.feed("[w]+ EC-END status=0").as_deref(), Some("[w] DISCO-EXEC-END status=0"));
        assert!(r.flush().is_empty());
    }

    #[test]
    fn several_interruptions_and_vms() {
        let mut r = Reassembler::default();
        assert_eq!(r.feed("[a] x\x1b[K"), None);
        assert_eq!(r.feed("[a]+ y\x1b[K"), None);
        assert_eq!(r.feed("[b] q\x1b[K"), None);
        assert_eq!(r.feed("[a]+ z").as_deref(), Some("[a] xyz"));
        assert_eq!(r.flush(), ["[b] q"]);
    }

    #[test]
    fn plain_lines_pass_and_orphans_are_kept() {
        let mut r = Reassembler::default();
        assert_eq!(r.feed("[a] whole").as_deref(), Some("[a] whole"));
        assert_eq!(r.feed("[a]+ orphan").as_deref(), Some("[a] orphan"));
        assert_eq!(r.feed("no prefix\x1b[K").as_deref(), Some("no prefix"));
    }
}
