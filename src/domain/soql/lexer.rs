//! SOQL text → tokens, each with its row and column (1-based, in characters) for error
//! messages. Keywords are not told apart here (SOQL keywords are case-insensitive
//! identifiers the parser recognises in place). String literals are decoded with SOQL's
//! escapes, and also kept as a SQL `LIKE` pattern in which `\%` and `\_` stay literal.
//! Date and date-time literals (`2026-01-31`, `2026-01-31T08:00:00Z`) are single tokens;
//! numbers carry their sign (SOQL has no arithmetic).

use super::error::{Code, SoqlError};
use crate::domain::query::CmpOp;

/// Where a token starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pos {
    pub row: u32,
    pub column: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Tok {
    Ident(String),
    /// A quoted string: the decoded value, and the same as a SQL `LIKE` pattern.
    Str {
        value: String,
        like: String,
    },
    /// A number as written (`42`, `-1.5`).
    Number(String),
    /// `YYYY-MM-DD`.
    Date(String),
    /// `YYYY-MM-DDThh:mm:ss[.fff](Z|±hh:mm|±hhmm)`.
    DateTime(String),
    /// A comparison operator as written (`=`, `!=`, `<`, `<=`, `>`, `>=`).
    Op(CmpOp),
    LParen,
    RParen,
    Comma,
    Dot,
    Colon,
    Eof,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Token {
    pub tok: Tok,
    /// The token as written (for error messages).
    pub text: String,
    pub pos: Pos,
}

impl Token {
    /// Whether this is the keyword `word` (case-insensitive).
    pub fn is_keyword(&self, word: &str) -> bool {
        matches!(&self.tok, Tok::Ident(name) if name.eq_ignore_ascii_case(word))
    }
}

/// Splits `query` into tokens, ending with `Eof`.
pub fn tokenize(query: &str) -> Result<Vec<Token>, SoqlError> {
    let chars: Vec<char> = query.chars().collect();
    let mut lexer = Lexer { chars: &chars, i: 0, row: 1, column: 1 };
    let mut tokens = Vec::new();
    loop {
        lexer.skip_whitespace();
        let pos = lexer.pos();
        let start = lexer.i;
        let Some(c) = lexer.peek(0) else {
            tokens.push(Token { tok: Tok::Eof, text: String::new(), pos });
            return Ok(tokens);
        };
        let tok = match c {
            '(' => lexer.single(Tok::LParen),
            ')' => lexer.single(Tok::RParen),
            ',' => lexer.single(Tok::Comma),
            '.' => lexer.single(Tok::Dot),
            ':' => lexer.single(Tok::Colon),
            '=' => lexer.single(Tok::Op(CmpOp::Eq)),
            '!' if lexer.peek(1) == Some('=') => lexer.double(Tok::Op(CmpOp::Ne)),
            '<' if lexer.peek(1) == Some('=') => lexer.double(Tok::Op(CmpOp::Le)),
            '>' if lexer.peek(1) == Some('=') => lexer.double(Tok::Op(CmpOp::Ge)),
            '<' => lexer.single(Tok::Op(CmpOp::Lt)),
            '>' => lexer.single(Tok::Op(CmpOp::Gt)),
            '\'' => lexer.string(pos)?,
            c if c.is_ascii_digit() => lexer.number_or_date(pos)?,
            '+' | '-' if lexer.peek(1).is_some_and(|d| d.is_ascii_digit()) => {
                lexer.bump();
                lexer.number(pos, start)?
            }
            c if c.is_ascii_alphabetic() || c == '_' => lexer.identifier(),
            other => {
                return Err(SoqlError::at(Code::MalformedQuery, pos, other.to_string(), "unexpected character"));
            }
        };
        let text: String = chars[start..lexer.i].iter().collect();
        tokens.push(Token { tok, text, pos });
    }
}

struct Lexer<'a> {
    chars: &'a [char],
    i: usize,
    row: u32,
    column: u32,
}

impl Lexer<'_> {
    fn pos(&self) -> Pos {
        Pos { row: self.row, column: self.column }
    }

    fn peek(&self, ahead: usize) -> Option<char> {
        self.chars.get(self.i + ahead).copied()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek(0)?;
        self.i += 1;
        if c == '\n' {
            self.row += 1;
            self.column = 1;
        } else {
            self.column += 1;
        }
        Some(c)
    }

    fn single(&mut self, tok: Tok) -> Tok {
        self.bump();
        tok
    }

    fn double(&mut self, tok: Tok) -> Tok {
        self.bump();
        self.bump();
        tok
    }

    fn skip_whitespace(&mut self) {
        while self.peek(0).is_some_and(char::is_whitespace) {
            self.bump();
        }
    }

    fn identifier(&mut self) -> Tok {
        let mut name = String::new();
        while let Some(c) = self.peek(0).filter(|c| c.is_ascii_alphanumeric() || *c == '_') {
            name.push(c);
            self.bump();
        }
        Tok::Ident(name)
    }

    fn digits(&mut self) -> String {
        let mut out = String::new();
        while let Some(c) = self.peek(0).filter(char::is_ascii_digit) {
            out.push(c);
            self.bump();
        }
        out
    }

    /// A number whose text (with its sign, if any) starts at `start`; its digits are next.
    fn number(&mut self, pos: Pos, start: usize) -> Result<Tok, SoqlError> {
        self.digits();
        if self.peek(0) == Some('.') {
            self.bump();
            if self.digits().is_empty() {
                let text: String = self.chars[start..self.i].iter().collect();
                return Err(SoqlError::at(
                    Code::MalformedQuery,
                    pos,
                    text,
                    "a number needs digits after its decimal point",
                ));
            }
        }
        if self.peek(0).is_some_and(|c| c.is_ascii_alphabetic() || c == '_') {
            let text: String = self.chars[start..=self.i].iter().collect();
            return Err(SoqlError::at(Code::MalformedQuery, pos, text, "unexpected token"));
        }
        Ok(Tok::Number(self.chars[start..self.i].iter().collect()))
    }

    /// `2026-01-31`, `2026-01-31T08:00:00Z` or a plain number.
    fn number_or_date(&mut self, pos: Pos) -> Result<Tok, SoqlError> {
        let is_date = (0..4).all(|k| self.peek(k).is_some_and(|c| c.is_ascii_digit())) && self.peek(4) == Some('-');
        let start = self.i;
        if !is_date {
            return self.number(pos, start);
        }
        // Everything a date-time can hold, its offset sign included (SOQL has no
        // arithmetic, so a `-` or `+` here can only belong to the literal).
        while self.peek(0).is_some_and(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | ':' | '+' | '.')) {
            self.bump();
        }
        let text: String = self.chars[start..self.i].iter().collect();
        if is_date_text(&text) {
            Ok(Tok::Date(text))
        } else if is_date_time_text(&text) {
            Ok(Tok::DateTime(text))
        } else {
            Err(SoqlError::at(
                Code::MalformedQuery,
                pos,
                text,
                "not a valid date (YYYY-MM-DD) or date-time (YYYY-MM-DDThh:mm:ssZ, YYYY-MM-DDThh:mm:ss+hh:mm)",
            ))
        }
    }

    /// A quoted string; the opening quote is next.
    fn string(&mut self, pos: Pos) -> Result<Tok, SoqlError> {
        let start = self.i;
        self.bump();
        let (mut value, mut like) = (String::new(), String::new());
        loop {
            let Some(c) = self.bump() else {
                let text: String = self.chars[start..self.i].iter().collect();
                return Err(SoqlError::at(Code::MalformedQuery, pos, text, "unterminated string literal"));
            };
            match c {
                '\'' => return Ok(Tok::Str { value, like }),
                '\\' => {
                    let escape = self.bump();
                    let decoded = match escape {
                        Some('n' | 'N') => '\n',
                        Some('r' | 'R') => '\r',
                        Some('t' | 'T') => '\t',
                        Some('b' | 'B') => '\u{8}',
                        Some('f' | 'F') => '\u{c}',
                        Some(q @ ('"' | '\'')) => q,
                        Some('\\') => {
                            value.push('\\');
                            like.push_str("\\\\");
                            continue;
                        }
                        Some(w @ ('%' | '_')) => {
                            value.push(w);
                            like.push('\\');
                            like.push(w);
                            continue;
                        }
                        other => {
                            let sequence = format!("\\{}", other.map(String::from).unwrap_or_default());
                            return Err(SoqlError::at(
                                Code::MalformedQuery,
                                pos,
                                self.chars[start..self.i].iter().collect::<String>(),
                                &format!("Illegal character sequence '{sequence}' in string literal"),
                            ));
                        }
                    };
                    value.push(decoded);
                    like.push(decoded);
                }
                other => {
                    value.push(other);
                    like.push(other);
                }
            }
        }
    }
}

/// `YYYY-MM-DD` shaped (the calendar is checked when the value is used).
fn is_date_text(text: &str) -> bool {
    let b = text.as_bytes();
    b.len() == 10 && b.iter().enumerate().all(|(i, c)| if i == 4 || i == 7 { *c == b'-' } else { c.is_ascii_digit() })
}

/// `YYYY-MM-DDThh:mm:ss[.fff](Z|±hh:mm|±hhmm)` shaped.
fn is_date_time_text(text: &str) -> bool {
    let Some((date, time)) = text.split_once(['T', 't']) else { return false };
    if !is_date_text(date) || time.len() < 9 {
        return false;
    }
    let b = time.as_bytes();
    let clock = b[..8].iter().enumerate().all(|(i, c)| if i == 2 || i == 5 { *c == b':' } else { c.is_ascii_digit() });
    let mut rest = &time[8..];
    if let Some(fraction) = rest.strip_prefix('.') {
        let digits = fraction.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return false;
        }
        rest = &fraction[digits..];
    }
    let zone = match rest {
        "Z" | "z" => true,
        _ => {
            let (sign, offset) = rest.split_at(rest.len().min(1));
            let offset = offset.replacen(':', "", 1);
            matches!(sign, "+" | "-") && offset.len() == 4 && offset.bytes().all(|c| c.is_ascii_digit())
        }
    };
    clock && zone
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(query: &str) -> Vec<Tok> {
        tokenize(query).unwrap().into_iter().map(|t| t.tok).collect()
    }

    fn ident(s: &str) -> Tok {
        Tok::Ident(s.into())
    }

    #[test]
    fn words_operators_and_punctuation_become_tokens_with_their_positions() {
        let tokens = tokenize("SELECT Id,Name\n  FROM x WHERE a != 1 AND b<=2 AND c>=-3.5").unwrap();
        let kinds: Vec<&Tok> = tokens.iter().map(|t| &t.tok).collect();
        assert_eq!(kinds[..4], [&ident("SELECT"), &ident("Id"), &Tok::Comma, &ident("Name")]);
        assert_eq!(tokens[4].pos, Pos { row: 2, column: 3 });
        assert_eq!(tokens[4].text, "FROM");
        assert!(kinds.contains(&&Tok::Op(CmpOp::Ne)));
        assert!(kinds.contains(&&Tok::Op(CmpOp::Le)));
        assert!(kinds.contains(&&Tok::Number("-3.5".into())));
        assert_eq!(kinds.last(), Some(&&Tok::Eof));
    }

    #[test]
    fn strings_decode_soql_escapes_and_keep_escaped_wildcards_literal_in_like_patterns() {
        let toks = kinds(r#"'O\'Brien' 'a\\b' '50\% off' 'x_y%' 'tab\there' 'q\"'"#);
        let strings: Vec<(String, String)> = toks
            .into_iter()
            .filter_map(|t| match t {
                Tok::Str { value, like } => Some((value, like)),
                _ => None,
            })
            .collect();
        assert_eq!(strings[0], ("O'Brien".into(), "O'Brien".into()));
        assert_eq!(strings[1], (r"a\b".into(), r"a\\b".into()));
        assert_eq!(strings[2], ("50% off".into(), r"50\% off".into()));
        assert_eq!(strings[3], ("x_y%".into(), "x_y%".into()));
        assert_eq!(strings[4].0, "tab\there");
        assert_eq!(strings[5].0, "q\"");
    }

    #[test]
    fn a_bad_escape_or_an_unterminated_string_is_malformed_naming_its_position() {
        let e = tokenize(r"SELECT Id FROM x WHERE Name = 'a\qb'").unwrap_err();
        assert_eq!((e.code, e.pos), (Code::MalformedQuery, Pos { row: 1, column: 31 }));
        assert!(e.detail.contains(r"'\q'"), "{e}");
        let e = tokenize("SELECT Id FROM x WHERE Name = 'abc").unwrap_err();
        assert_eq!(e.code, Code::MalformedQuery);
        assert!(e.detail.contains("unterminated"), "{e}");
    }

    #[test]
    fn dates_and_date_times_are_single_tokens_in_every_documented_format() {
        assert_eq!(kinds("2026-01-31")[0], Tok::Date("2026-01-31".into()));
        for text in [
            "2026-01-31T08:00:00Z",
            "2026-01-31T08:00:00+01:00",
            "2026-01-31T08:00:00-0800",
            "2026-01-31T08:00:00.123Z",
        ] {
            assert_eq!(kinds(text)[0], Tok::DateTime(text.into()), "{text}");
        }
        for bad in ["2026-01-31T08:00", "2026-1-31", "2026-01-31T08:00:00", "2026-01-31T08:00:00+1"] {
            let e = tokenize(bad).unwrap_err();
            assert_eq!(e.code, Code::MalformedQuery, "{bad}");
            assert_eq!(e.token, bad);
        }
    }

    #[test]
    fn numbers_carry_their_sign_and_letters_glued_to_them_are_an_error() {
        assert_eq!(
            kinds("42 +7 -0.25")[..3],
            [Tok::Number("42".into()), Tok::Number("+7".into()), Tok::Number("-0.25".into())]
        );
        assert_eq!(tokenize("LIMIT 10x").unwrap_err().token, "10x");
        assert_eq!(tokenize("LIMIT 1.").unwrap_err().code, Code::MalformedQuery);
    }

    #[test]
    fn a_character_soql_does_not_use_is_malformed() {
        let e = tokenize("SELECT Id FROM x WHERE a = #").unwrap_err();
        assert_eq!((e.token.as_str(), e.pos.column), ("#", 28));
        assert_eq!(tokenize("a ! b").unwrap_err().token, "!");
    }
}
