//! A small JSON reader for numa-sim's report (our own, well-formed output):
//! enough to pull numbers out by path without another dependency.

use anyhow::{anyhow, bail, Result};

#[derive(Debug, Clone, PartialEq)]
pub enum Json {
    Null,
    Bool(bool),
    Num(f64),
    Str(String),
    Arr(Vec<Json>),
    Obj(Vec<(String, Json)>),
}

impl Json {
    pub fn parse(text: &str) -> Result<Json> {
        let mut p = P { b: text.as_bytes(), i: 0 };
        let v = p.value()?;
        p.ws();
        if p.i != p.b.len() {
            bail!("trailing characters at byte {}", p.i);
        }
        Ok(v)
    }

    /// Member `k` of an object.
    pub fn get(&self, k: &str) -> Option<&Json> {
        match self {
            Json::Obj(m) => m.iter().find(|(n, _)| n == k).map(|(_, v)| v),
            _ => None,
        }
    }

    /// Element `i` of an array.
    pub fn at(&self, i: usize) -> Option<&Json> {
        match self {
            Json::Arr(a) => a.get(i),
            _ => None,
        }
    }

    /// The elements of an array (empty for anything else).
    pub fn items(&self) -> &[Json] {
        match self {
            Json::Arr(a) => a,
            _ => &[],
        }
    }

    pub fn num(&self) -> Option<f64> {
        match self {
            Json::Num(n) => Some(*n),
            _ => None,
        }
    }

    /// A number by `a.b.0.c` path.
    pub fn path(&self, path: &str) -> Result<f64> {
        let mut v = self;
        for part in path.split('.') {
            v = match part.parse::<usize>() {
                Ok(i) => v.at(i),
                Err(_) => v.get(part),
            }
            .ok_or_else(|| anyhow!("report has no `{path}` (at `{part}`)"))?;
        }
        v.num().ok_or_else(|| anyhow!("report `{path}` is not a number"))
    }
}

struct P<'a> {
    b: &'a [u8],
    i: usize,
}

impl P<'_> {
    fn ws(&mut self) {
        while self.i < self.b.len() && self.b[self.i].is_ascii_whitespace() {
            self.i += 1;
        }
    }

    fn eat(&mut self, c: u8) -> Result<()> {
        self.ws();
        if self.b.get(self.i) != Some(&c) {
            bail!("expected `{}` at byte {}", c as char, self.i);
        }
        self.i += 1;
        Ok(())
    }

    fn value(&mut self) -> Result<Json> {
        self.ws();
        let rest = &self.b[self.i..];
        Ok(match rest.first() {
            Some(b'{') => {
                self.i += 1;
                let mut m = Vec::new();
                self.ws();
                if self.b.get(self.i) == Some(&b'}') {
                    self.i += 1;
                    return Ok(Json::Obj(m));
                }
                loop {
                    self.ws();
                    let Json::Str(k) = self.value()? else { bail!("object key is not a string at byte {}", self.i) };
                    self.eat(b':')?;
                    m.push((k, self.value()?));
                    self.ws();
                    match self.b.get(self.i) {
                        Some(b',') => self.i += 1,
                        Some(b'}') => {
                            self.i += 1;
                            break Json::Obj(m);
                        }
                        _ => bail!("expected `,` or `}}` at byte {}", self.i),
                    }
                }
            }
            Some(b'[') => {
                self.i += 1;
                let mut a = Vec::new();
                self.ws();
                if self.b.get(self.i) == Some(&b']') {
                    self.i += 1;
                    return Ok(Json::Arr(a));
                }
                loop {
                    a.push(self.value()?);
                    self.ws();
                    match self.b.get(self.i) {
                        Some(b',') => self.i += 1,
                        Some(b']') => {
                            self.i += 1;
                            break Json::Arr(a);
                        }
                        _ => bail!("expected `,` or `]` at byte {}", self.i),
                    }
                }
            }
            Some(b'"') => {
                self.i += 1;
                let mut s = String::new();
                loop {
                    match self.b.get(self.i) {
                        None => bail!("unterminated string"),
                        Some(b'"') => {
                            self.i += 1;
                            break Json::Str(s);
                        }
                        Some(b'\\') => {
                            let c = *self.b.get(self.i + 1).ok_or_else(|| anyhow!("bad escape"))?;
                            s.push(match c {
                                b'n' => '\n',
                                b't' => '\t',
                                b'u' => {
                                    let h =
                                        std::str::from_utf8(self.b.get(self.i + 2..self.i + 6).unwrap_or_default())?;
                                    self.i += 4;
                                    char::from_u32(u32::from_str_radix(h, 16)?).unwrap_or('?')
                                }
                                c => c as char,
                            });
                            self.i += 2;
                        }
                        Some(_) => {
                            let start = self.i;
                            while self.i < self.b.len() && !matches!(self.b[self.i], b'"' | b'\\') {
                                self.i += 1;
                            }
                            s.push_str(std::str::from_utf8(&self.b[start..self.i])?);
                        }
                    }
                }
            }
            _ if rest.starts_with(b"true") => {
                self.i += 4;
                Json::Bool(true)
            }
            _ if rest.starts_with(b"false") => {
                self.i += 5;
                Json::Bool(false)
            }
            _ if rest.starts_with(b"null") => {
                self.i += 4;
                Json::Null
            }
            _ => {
                let n = rest.iter().take_while(|c| matches!(c, b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9')).count();
                if n == 0 {
                    bail!("unexpected character at byte {}", self.i);
                }
                let v = std::str::from_utf8(&rest[..n])?.parse::<f64>()?;
                self.i += n;
                Json::Num(v)
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_walks() {
        let j =
            Json::parse(r#" {"a": [1, {"b": -2.5e1}], "s": "x\"y", "t": true, "n": null, "e": {}, "f": []} "#).unwrap();
        assert_eq!(j.path("a.0").unwrap(), 1.0);
        assert_eq!(j.path("a.1.b").unwrap(), -25.0);
        assert_eq!(j.get("s"), Some(&Json::Str("x\"y".into())));
        assert_eq!(j.get("t"), Some(&Json::Bool(true)));
        assert!(j.path("a.2").is_err());
        assert!(j.path("s").is_err());
        assert!(Json::parse("{\"a\":1,}").is_err());
        assert!(Json::parse("[1] x").is_err());
    }
}
