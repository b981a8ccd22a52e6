//! The protobuf text format, as Triton's `config.pbtxt` files are written: `field: value`,
//! `field { ... }`, `field: [a, b]`, `field: { ... }`, `#` comments. Parsed into a tree of fields
//! without a schema; [`crate::config`] reads the fields it knows and refuses the rest.

use std::fmt;

/// A value: a scalar as written (numbers, enum names and unquoted words as text; strings
/// unquoted with their escapes applied) or a message of fields.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Scalar(String),
    Message(Vec<(String, Value)>),
}

/// A parse error at a line of the text.
#[derive(Debug, Clone, PartialEq)]
pub struct ParseError {
    pub line: usize,
    pub message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    Word(String),
    Str(String),
    Punct(char),
}

fn lex(text: &str) -> Result<Vec<(Tok, usize)>, ParseError> {
    let mut out = Vec::new();
    let mut line = 1;
    let mut it = text.chars().peekable();
    while let Some(&c) = it.peek() {
        match c {
            '\n' => {
                line += 1;
                it.next();
            }
            c if c.is_whitespace() => {
                it.next();
            }
            '#' => {
                while it.peek().is_some_and(|&c| c != '\n') {
                    it.next();
                }
            }
            '{' | '}' | '[' | ']' | ':' | ',' | ';' | '<' | '>' => {
                out.push((Tok::Punct(c), line));
                it.next();
            }
            '"' | '\'' => {
                let quote = c;
                it.next();
                let mut s = String::new();
                loop {
                    match it.next() {
                        None | Some('\n') => {
                            return Err(ParseError {
                                line,
                                message: "a string is not closed".into(),
                            })
                        }
                        Some(c) if c == quote => break,
                        Some('\\') => match it.next() {
                            Some('n') => s.push('\n'),
                            Some('t') => s.push('\t'),
                            Some(c) => s.push(c),
                            None => {
                                return Err(ParseError {
                                    line,
                                    message: "a string ends in an escape".into(),
                                })
                            }
                        },
                        Some(c) => s.push(c),
                    }
                }
                out.push((Tok::Str(s), line));
            }
            c if c.is_alphanumeric() || "_-+.".contains(c) => {
                let mut s = String::new();
                while let Some(&c) = it.peek() {
                    if c.is_alphanumeric() || "_-+.".contains(c) {
                        s.push(c);
                        it.next();
                    } else {
                        break;
                    }
                }
                out.push((Tok::Word(s), line));
            }
            c => {
                return Err(ParseError {
                    line,
                    message: format!("unexpected character '{c}'"),
                })
            }
        }
    }
    Ok(out)
}

struct Parser {
    toks: Vec<(Tok, usize)>,
    pos: usize,
}

impl Parser {
    fn line(&self) -> usize {
        self.toks
            .get(self.pos)
            .or(self.toks.last())
            .map_or(1, |t| t.1)
    }
    fn err<T>(&self, message: impl Into<String>) -> Result<T, ParseError> {
        Err(ParseError {
            line: self.line(),
            message: message.into(),
        })
    }
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos).map(|t| &t.0)
    }
    fn eat(&mut self, c: char) -> bool {
        if self.peek() == Some(&Tok::Punct(c)) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    /// Fields until `close` (or the end of the text where `close` is `None`).
    fn fields(
        &mut self,
        close: Option<char>,
        depth: usize,
    ) -> Result<Vec<(String, Value)>, ParseError> {
        if depth > 32 {
            return self.err("messages nest more than 32 deep");
        }
        let mut out = Vec::new();
        loop {
            match (self.peek().cloned(), close) {
                (None, None) => return Ok(out),
                (None, Some(c)) => return self.err(format!("expected '{c}' before the end")),
                (Some(Tok::Punct(p)), Some(c)) if p == c => {
                    self.pos += 1;
                    return Ok(out);
                }
                (Some(Tok::Word(name)), _) => {
                    self.pos += 1;
                    let colon = self.eat(':');
                    match self.peek() {
                        Some(Tok::Punct('{')) | Some(Tok::Punct('<')) => {
                            let v = self.message(depth)?;
                            out.push((name, v));
                        }
                        // `f: [1, 2]`, and for messages also `f [ {...}, {...} ]`.
                        Some(Tok::Punct('[')) => {
                            self.pos += 1;
                            if !self.eat(']') {
                                loop {
                                    let v = match self.peek() {
                                        Some(Tok::Punct('{')) | Some(Tok::Punct('<')) => {
                                            self.message(depth)?
                                        }
                                        _ => self.scalar()?,
                                    };
                                    out.push((name.clone(), v));
                                    if self.eat(']') {
                                        break;
                                    }
                                    if !self.eat(',') {
                                        return self
                                            .err(format!("expected ',' or ']' in '{name}'"));
                                    }
                                }
                            }
                        }
                        _ if colon => {
                            let v = self.scalar()?;
                            out.push((name, v));
                        }
                        _ => return self.err(format!("expected ':' or '{{' after '{name}'")),
                    }
                    // Separators between fields are optional.
                    let _ = self.eat(',') || self.eat(';');
                }
                (Some(t), _) => return self.err(format!("expected a field name, found {t:?}")),
            }
        }
    }

    fn message(&mut self, depth: usize) -> Result<Value, ParseError> {
        let close = if self.eat('{') {
            '}'
        } else if self.eat('<') {
            '>'
        } else {
            return self.err("expected '{'");
        };
        Ok(Value::Message(self.fields(Some(close), depth + 1)?))
    }

    fn scalar(&mut self) -> Result<Value, ParseError> {
        match self.peek().cloned() {
            Some(Tok::Word(w)) => {
                self.pos += 1;
                Ok(Value::Scalar(w))
            }
            Some(Tok::Str(s)) => {
                self.pos += 1;
                // Adjacent strings concatenate.
                let mut s = s;
                while let Some(Tok::Str(more)) = self.peek().cloned() {
                    self.pos += 1;
                    s.push_str(&more);
                }
                Ok(Value::Scalar(s))
            }
            _ => self.err("expected a value"),
        }
    }
}

/// Parse a whole text-format message.
pub fn parse(text: &str) -> Result<Vec<(String, Value)>, ParseError> {
    let mut p = Parser {
        toks: lex(text)?,
        pos: 0,
    };
    p.fields(None, 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn triton_style_config() {
        let f = parse(
            r#"
            name: "bert"   # a comment
            max_batch_size: 8
            input [ { name: "x" data_type: TYPE_FP32 dims: [ 128, 768 ] } ]
            dynamic_batching { preferred_batch_size: [4, 8] max_queue_delay_microseconds: 100 }
            parameters { key: "device" value: { string_value: "cpu" } }
            "#,
        )
        .unwrap();
        assert_eq!(f[0], ("name".into(), Value::Scalar("bert".into())));
        assert_eq!(f[1], ("max_batch_size".into(), Value::Scalar("8".into())));
        let Value::Message(input) = &f[2].1 else {
            panic!("input is a message")
        };
        assert_eq!(input.iter().filter(|(k, _)| k == "dims").count(), 2);
        assert_eq!(f.len(), 5);
    }

    #[test]
    fn errors_name_the_line() {
        let e = parse("name: \"x\"\ninput {\n name: 1").unwrap_err();
        assert_eq!(e.line, 3, "{e}");
        assert!(parse("a: \"open").is_err());
        assert!(parse("a b").is_err());
        assert!(parse(&"a {".repeat(40)).is_err());
    }
}
