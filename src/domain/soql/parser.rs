//! Tokens → the syntax tree of one SOQL `SELECT`, by recursive descent:
//!
//! ```text
//! query     := SELECT item (',' item)* FROM name [alias] [WHERE or_expr]
//!              [ORDER BY key (',' key)*] [LIMIT int] [OFFSET int]
//! item      := path | COUNT '(' [path] ')' [alias] | FIELDS '(' ALL|STANDARD|CUSTOM ')'
//! or_expr   := unary (AND unary)* | unary (OR unary)*      -- mixing needs parentheses
//! unary     := NOT unary | '(' or_expr ')' | path op value | path [NOT] IN '(' value, … ')'
//!              | path LIKE value
//! value     := string | number | TRUE | FALSE | NULL | date | datetime | LITERAL[:n]
//! key       := path [ASC|DESC] [NULLS FIRST|LAST]
//! ```
//!
//! Only syntax is checked here; which names exist and which values fit is `resolve`'s
//! job. What SOQL has but this bridge does not serve (GROUP BY, HAVING, FOR UPDATE,
//! WITH, USING SCOPE, TYPEOF, semi-joins, child subqueries, other functions) is refused
//! where it appears, naming the token.

use super::error::{Code, SoqlError};
use super::lexer::{Pos, Tok, Token};
use crate::domain::query::CmpOp;

/// A word or name with where it was written.
#[derive(Debug, Clone, PartialEq)]
pub struct Spanned<T> {
    pub value: T,
    pub text: String,
    pub pos: Pos,
}

/// `Name`, `r.Name`, `Owner.Name`: the parts as written.
#[derive(Debug, Clone, PartialEq)]
pub struct Path {
    pub parts: Vec<Spanned<String>>,
}

impl Path {
    pub fn pos(&self) -> Pos {
        self.parts[0].pos
    }

    pub fn text(&self) -> String {
        self.parts.iter().map(|p| p.value.as_str()).collect::<Vec<_>>().join(".")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldsKind {
    All,
    Standard,
    Custom,
}

#[derive(Debug, Clone, PartialEq)]
pub enum SelectItem {
    Field(Path),
    /// `COUNT()` (`field` None) or `COUNT(field)`, with an optional alias.
    Count {
        pos: Pos,
        field: Option<Path>,
        alias: Option<Spanned<String>>,
    },
    Fields {
        pos: Pos,
        kind: FieldsKind,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub enum Literal {
    Str {
        value: String,
        like: String,
    },
    Number(String),
    Bool(bool),
    Null,
    Date(String),
    DateTime(String),
    /// A date literal by name, with its `:n` when written.
    Relative {
        name: String,
        n: Option<Spanned<String>>,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Value {
    pub literal: Literal,
    pub text: String,
    pub pos: Pos,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    And(Vec<Expr>),
    Or(Vec<Expr>),
    Not(Box<Expr>),
    Compare { field: Path, op: Spanned<CmpOp>, value: Value },
    In { field: Path, op_pos: Pos, negated: bool, values: Vec<Value> },
    Like { field: Path, op_pos: Pos, value: Value },
}

#[derive(Debug, Clone, PartialEq)]
pub struct OrderItem {
    pub field: Path,
    pub descending: bool,
    /// `None` when not written (Salesforce's default: nulls first).
    pub nulls_first: Option<bool>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Query {
    pub select: Vec<SelectItem>,
    pub object: Spanned<String>,
    pub alias: Option<Spanned<String>>,
    pub condition: Option<Expr>,
    pub order: Vec<OrderItem>,
    pub limit: Option<Spanned<u64>>,
    pub offset: Option<Spanned<u64>>,
}

/// Clause keywords that end an object alias or a select list.
const CLAUSES: [&str; 11] =
    ["WHERE", "ORDER", "GROUP", "HAVING", "LIMIT", "OFFSET", "FOR", "WITH", "USING", "UPDATE", "ALL"];

/// Clauses SOQL has and this bridge refuses, with why.
const REFUSED_CLAUSES: [(&str, &str); 7] = [
    ("GROUP", "GROUP BY is not supported (only COUNT() and COUNT(field) without grouping)"),
    ("HAVING", "HAVING is not supported"),
    ("FOR", "FOR VIEW, FOR REFERENCE and FOR UPDATE are not supported (records are read-only)"),
    ("WITH", "WITH clauses are not supported"),
    ("USING", "USING SCOPE is not supported"),
    ("UPDATE", "UPDATE TRACKING and UPDATE VIEWSTAT are not supported"),
    ("ALL", "ALL ROWS is Apex-only; use the queryAll resource"),
];

/// Functions SOQL has in a select list or a condition and this bridge refuses.
const AGGREGATES: [&str; 5] = ["SUM", "AVG", "MIN", "MAX", "COUNT_DISTINCT"];

pub fn parse(tokens: Vec<Token>) -> Result<Query, SoqlError> {
    Parser { tokens, i: 0 }.query()
}

struct Parser {
    tokens: Vec<Token>,
    i: usize,
}

fn unexpected(token: &Token) -> SoqlError {
    if token.tok == Tok::Eof {
        return SoqlError::detailed(Code::MalformedQuery, token.pos, "", "unexpected end of query");
    }
    SoqlError::at(Code::MalformedQuery, token.pos, token.text.clone(), "unexpected token")
}

impl Parser {
    fn peek(&self) -> &Token {
        &self.tokens[self.i.min(self.tokens.len() - 1)]
    }

    fn peek_at(&self, ahead: usize) -> &Token {
        &self.tokens[(self.i + ahead).min(self.tokens.len() - 1)]
    }

    fn next(&mut self) -> Token {
        let token = self.peek().clone();
        if self.i < self.tokens.len() - 1 {
            self.i += 1;
        }
        token
    }

    fn eat_keyword(&mut self, word: &str) -> bool {
        let found = self.peek().is_keyword(word);
        if found {
            self.i += 1;
        }
        found
    }

    fn expect_keyword(&mut self, word: &str) -> Result<Token, SoqlError> {
        if self.peek().is_keyword(word) { Ok(self.next()) } else { Err(unexpected(self.peek())) }
    }

    fn expect(&mut self, tok: Tok) -> Result<Token, SoqlError> {
        if self.peek().tok == tok { Ok(self.next()) } else { Err(unexpected(self.peek())) }
    }

    fn word(&mut self) -> Result<Spanned<String>, SoqlError> {
        match &self.peek().tok {
            Tok::Ident(name) => {
                let value = name.clone();
                let token = self.next();
                Ok(Spanned { value, text: token.text, pos: token.pos })
            }
            _ => Err(unexpected(self.peek())),
        }
    }

    fn query(&mut self) -> Result<Query, SoqlError> {
        self.expect_keyword("SELECT")?;
        let mut select = vec![self.select_item()?];
        while self.peek().tok == Tok::Comma {
            self.next();
            select.push(self.select_item()?);
        }
        self.expect_keyword("FROM")?;
        let object = self.word()?;
        if self.peek().tok == Tok::Comma || self.peek().tok == Tok::Dot {
            let token = self.peek().clone();
            return Err(SoqlError::at(
                Code::MalformedQuery,
                token.pos,
                token.text,
                "only one object can be queried (no relationship queries)",
            ));
        }
        let alias = match &self.peek().tok {
            Tok::Ident(name) if !CLAUSES.iter().any(|c| c.eq_ignore_ascii_case(name)) => Some(self.word()?),
            _ => None,
        };
        self.refuse_clauses()?;
        let condition = if self.eat_keyword("WHERE") { Some(self.or_expr()?) } else { None };
        self.refuse_clauses()?;
        let mut order = Vec::new();
        if self.eat_keyword("ORDER") {
            self.expect_keyword("BY")?;
            order.push(self.order_item()?);
            while self.peek().tok == Tok::Comma {
                self.next();
                order.push(self.order_item()?);
            }
        }
        self.refuse_clauses()?;
        let limit = if self.eat_keyword("LIMIT") { Some(self.count_value()?) } else { None };
        let offset = if self.eat_keyword("OFFSET") { Some(self.count_value()?) } else { None };
        self.refuse_clauses()?;
        if self.peek().tok != Tok::Eof {
            return Err(unexpected(self.peek()));
        }
        Ok(Query { select, object, alias, condition, order, limit, offset })
    }

    /// Refuses a clause this bridge does not serve if one comes next.
    fn refuse_clauses(&self) -> Result<(), SoqlError> {
        let token = self.peek();
        match REFUSED_CLAUSES.iter().find(|(word, _)| token.is_keyword(word)) {
            Some((_, why)) => Err(SoqlError::at(Code::MalformedQuery, token.pos, token.text.clone(), why)),
            None => Ok(()),
        }
    }

    fn select_item(&mut self) -> Result<SelectItem, SoqlError> {
        let token = self.peek().clone();
        if token.tok == Tok::LParen {
            return Err(SoqlError::at(
                Code::MalformedQuery,
                token.pos,
                "(",
                "child relationship subqueries are not supported (ConvMessageSendRequest has no child relationships)",
            ));
        }
        if token.is_keyword("TYPEOF") {
            return Err(SoqlError::at(Code::MalformedQuery, token.pos, token.text, "TYPEOF is not supported"));
        }
        let is_call = self.peek_at(1).tok == Tok::LParen;
        if is_call && token.is_keyword("COUNT") {
            self.next();
            self.next();
            let field = if self.peek().tok == Tok::RParen { None } else { Some(self.path()?) };
            self.expect(Tok::RParen)?;
            let alias = match &self.peek().tok {
                Tok::Ident(name) if !name.eq_ignore_ascii_case("FROM") => Some(self.word()?),
                _ => None,
            };
            return Ok(SelectItem::Count { pos: token.pos, field, alias });
        }
        if is_call && token.is_keyword("FIELDS") {
            self.next();
            self.next();
            let which = self.word()?;
            let kind = match which.value.to_ascii_uppercase().as_str() {
                "ALL" => FieldsKind::All,
                "STANDARD" => FieldsKind::Standard,
                "CUSTOM" => FieldsKind::Custom,
                _ => return Err(SoqlError::at(Code::MalformedQuery, which.pos, which.text, "unexpected token")),
            };
            self.expect(Tok::RParen)?;
            return Ok(SelectItem::Fields { pos: token.pos, kind });
        }
        if is_call {
            let what = if AGGREGATES.iter().any(|a| token.is_keyword(a)) {
                "only the aggregate functions COUNT() and COUNT(field) are supported"
            } else {
                "functions are not supported in the select list"
            };
            return Err(SoqlError::at(Code::MalformedQuery, token.pos, token.text, what));
        }
        Ok(SelectItem::Field(self.path()?))
    }

    fn path(&mut self) -> Result<Path, SoqlError> {
        let mut parts = vec![self.word()?];
        while self.peek().tok == Tok::Dot {
            self.next();
            parts.push(self.word()?);
        }
        Ok(Path { parts })
    }

    fn order_item(&mut self) -> Result<OrderItem, SoqlError> {
        let field = self.path()?;
        let descending = if self.eat_keyword("DESC") {
            true
        } else {
            self.eat_keyword("ASC");
            false
        };
        let nulls_first = if self.eat_keyword("NULLS") {
            if self.eat_keyword("FIRST") {
                Some(true)
            } else {
                self.expect_keyword("LAST")?;
                Some(false)
            }
        } else {
            None
        };
        Ok(OrderItem { field, descending, nulls_first })
    }

    /// A non-negative integer (LIMIT, OFFSET).
    fn count_value(&mut self) -> Result<Spanned<u64>, SoqlError> {
        let token = self.next();
        let value = match &token.tok {
            Tok::Number(text) if text.bytes().all(|b| b.is_ascii_digit()) => text.parse::<u64>().ok(),
            _ => None,
        };
        match value {
            Some(value) => Ok(Spanned { value, text: token.text, pos: token.pos }),
            None if matches!(token.tok, Tok::Number(_)) => {
                Err(SoqlError::at(Code::MalformedQuery, token.pos, token.text, "expected a non-negative whole number"))
            }
            None => Err(unexpected(&token)),
        }
    }

    /// A chain of conditions joined by one of AND, OR; mixing them without
    /// parentheses is an error, as in SOQL.
    fn or_expr(&mut self) -> Result<Expr, SoqlError> {
        let first = self.unary()?;
        let joiner = if self.peek().is_keyword("AND") {
            "AND"
        } else if self.peek().is_keyword("OR") {
            "OR"
        } else {
            return Ok(first);
        };
        let other = if joiner == "AND" { "OR" } else { "AND" };
        let mut items = vec![first];
        while self.eat_keyword(joiner) {
            items.push(self.unary()?);
        }
        let token = self.peek();
        if token.is_keyword(other) {
            return Err(SoqlError::at(
                Code::MalformedQuery,
                token.pos,
                token.text.clone(),
                "unexpected token (use parentheses to mix AND and OR)",
            ));
        }
        Ok(if joiner == "AND" { Expr::And(items) } else { Expr::Or(items) })
    }

    fn unary(&mut self) -> Result<Expr, SoqlError> {
        if self.eat_keyword("NOT") {
            return Ok(Expr::Not(Box::new(self.unary()?)));
        }
        if self.peek().tok == Tok::LParen {
            self.next();
            let inner = self.or_expr()?;
            self.expect(Tok::RParen)?;
            return Ok(inner);
        }
        let token = self.peek().clone();
        if matches!(token.tok, Tok::Ident(_)) && self.peek_at(1).tok == Tok::LParen {
            return Err(SoqlError::at(
                Code::MalformedQuery,
                token.pos,
                token.text,
                "functions are not supported in conditions",
            ));
        }
        let field = self.path()?;
        let op = self.next();
        match &op.tok {
            Tok::Op(o) => {
                let value = self.value()?;
                Ok(Expr::Compare { field, op: Spanned { value: *o, text: op.text.clone(), pos: op.pos }, value })
            }
            Tok::Ident(_) if op.is_keyword("LIKE") => Ok(Expr::Like { field, op_pos: op.pos, value: self.value()? }),
            Tok::Ident(_) if op.is_keyword("IN") => self.in_list(field, op.pos, false),
            Tok::Ident(_) if op.is_keyword("NOT") => {
                self.expect_keyword("IN")?;
                self.in_list(field, op.pos, true)
            }
            Tok::Ident(_) if op.is_keyword("INCLUDES") || op.is_keyword("EXCLUDES") => Err(SoqlError::at(
                Code::InvalidQueryFilterOperator,
                op.pos,
                op.text.clone(),
                "INCLUDES and EXCLUDES apply only to multi-select picklists, which ConvMessageSendRequest has none of",
            )),
            _ => Err(unexpected(&op)),
        }
    }

    fn in_list(&mut self, field: Path, op_pos: Pos, negated: bool) -> Result<Expr, SoqlError> {
        self.expect(Tok::LParen)?;
        let token = self.peek().clone();
        if token.is_keyword("SELECT") {
            return Err(SoqlError::at(
                Code::MalformedQuery,
                token.pos,
                token.text,
                "semi-join and anti-join subqueries are not supported",
            ));
        }
        let mut values = vec![self.value()?];
        while self.peek().tok == Tok::Comma {
            self.next();
            values.push(self.value()?);
        }
        self.expect(Tok::RParen)?;
        Ok(Expr::In { field, op_pos, negated, values })
    }

    fn value(&mut self) -> Result<Value, SoqlError> {
        let token = self.next();
        let literal = match token.tok.clone() {
            Tok::Str { value, like } => Literal::Str { value, like },
            Tok::Number(text) => Literal::Number(text),
            Tok::Date(text) => Literal::Date(text),
            Tok::DateTime(text) => Literal::DateTime(text),
            Tok::Ident(_) if token.is_keyword("TRUE") => Literal::Bool(true),
            Tok::Ident(_) if token.is_keyword("FALSE") => Literal::Bool(false),
            Tok::Ident(_) if token.is_keyword("NULL") => Literal::Null,
            Tok::Ident(name) => {
                let n = if self.peek().tok == Tok::Colon {
                    self.next();
                    let n = self.next();
                    match n.tok {
                        Tok::Number(text) => Some(Spanned { value: text, text: n.text, pos: n.pos }),
                        _ => return Err(unexpected(&n)),
                    }
                } else {
                    None
                };
                Literal::Relative { name, n }
            }
            Tok::Colon => {
                return Err(SoqlError::at(
                    Code::MalformedQuery,
                    token.pos,
                    ":",
                    "bind variables are Apex-only; write the value itself",
                ));
            }
            _ => return Err(unexpected(&token)),
        };
        Ok(Value { literal, text: token.text, pos: token.pos })
    }
}
