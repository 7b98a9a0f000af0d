//! The typed syntax tree. Every node keeps the byte span of the source text it came from,
//! so later stages can point their diagnostics at the user's code.

use std::fmt;

/// A byte range `start..end` in the source text.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Span {
    pub start: usize,
    pub end: usize,
}

impl Span {
    pub fn new(start: usize, end: usize) -> Span {
        Span { start, end }
    }

    /// The smallest span covering both.
    pub fn to(self, other: Span) -> Span {
        Span::new(self.start.min(other.start), self.end.max(other.end))
    }

    pub fn range(self) -> std::ops::Range<usize> {
        self.start..self.end
    }
}

/// A whole `.net` file: its units, blocks, networks and `train` blocks, each in source order.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct File {
    pub units: Vec<UnitDecl>,
    pub blocks: Vec<BlockDecl>,
    pub nets: Vec<NetDecl>,
    pub trains: Vec<TrainBlock>,
}

/// `unit NAME(PARAMS) = EXPR [grad EXPR]`: an elementwise function of `x`.
#[derive(Clone, Debug, PartialEq)]
pub struct UnitDecl {
    pub name: Ident,
    pub params: Vec<ParamDecl>,
    pub body: Expr,
    /// The derivative dy/dx to use instead of the body's, after `grad`.
    pub grad: Option<Expr>,
    pub span: Span,
}

/// `block NAME(PARAMS) { input NAME  STATEMENTS }`: a sub-network, inlined at each use.
#[derive(Clone, Debug, PartialEq)]
pub struct BlockDecl {
    pub name: Ident,
    pub params: Vec<ParamDecl>,
    pub body: Vec<Stmt>,
    pub span: Span,
}

/// An expression of a unit body.
#[derive(Clone, Debug, PartialEq)]
pub struct Expr {
    pub kind: ExprKind,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub enum ExprKind {
    Number(f64),
    /// `x`, a parameter of the unit, or `noise`.
    Name(String),
    Neg(Box<Expr>),
    Binary(BinOp, Box<Expr>, Box<Expr>),
    /// `f(a, b)` or `unit(x, param=value)`.
    Call {
        func: Ident,
        args: Vec<ExprArg>,
    },
}

/// A positional or keyword argument of a call in an expression.
#[derive(Clone, Debug, PartialEq)]
pub struct ExprArg {
    pub key: Option<Ident>,
    pub value: Expr,
    pub span: Span,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BinOp {
    Add,
    Sub,
    Mul,
    Div,
    Less,
    LessEqual,
    Greater,
    GreaterEqual,
    Equal,
    NotEqual,
}

impl BinOp {
    pub fn symbol(self) -> &'static str {
        match self {
            BinOp::Add => "+",
            BinOp::Sub => "-",
            BinOp::Mul => "*",
            BinOp::Div => "/",
            BinOp::Less => "<",
            BinOp::LessEqual => "<=",
            BinOp::Greater => ">",
            BinOp::GreaterEqual => ">=",
            BinOp::Equal => "==",
            BinOp::NotEqual => "!=",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ident {
    pub name: String,
    pub span: Span,
}

/// `net NAME(PARAMS) { BODY }`
#[derive(Clone, Debug, PartialEq)]
pub struct NetDecl {
    pub name: Ident,
    pub params: Vec<ParamDecl>,
    pub body: Vec<Stmt>,
    pub span: Span,
}

/// A net parameter, `negfrac = 0.04`; a parameter without a default must be given with `--set`.
#[derive(Clone, Debug, PartialEq)]
pub struct ParamDecl {
    pub name: Ident,
    pub default: Option<Value>,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Stmt {
    Input(InputDecl),
    Layer(LayerStmt),
}

/// `input NAME: [C, H, W]`, or `input NAME` in a block.
#[derive(Clone, Debug, PartialEq)]
pub struct InputDecl {
    pub name: Ident,
    pub shape: Option<Value>,
    pub span: Span,
}

/// `[NAME =] OP[(ARGS)] [from SOURCE]`, or `loss OP(ARGS)`.
#[derive(Clone, Debug, PartialEq)]
pub struct LayerStmt {
    pub name: Option<Ident>,
    pub call: Call,
    pub from: Option<Ident>,
    pub is_loss: bool,
    pub span: Span,
}

/// `OP` or `OP(ARGS)`.
#[derive(Clone, Debug, PartialEq)]
pub struct Call {
    pub op: Ident,
    /// `None` for a bare name (`relu`), `Some` when parentheses were written.
    pub args: Option<Vec<Arg>>,
    pub span: Span,
}

impl Call {
    pub fn args(&self) -> &[Arg] {
        self.args.as_deref().unwrap_or(&[])
    }
}

/// A positional (`20`) or keyword (`k=5`) argument.
#[derive(Clone, Debug, PartialEq)]
pub struct Arg {
    pub key: Option<Ident>,
    pub value: Value,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Value {
    pub kind: ValueKind,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub enum ValueKind {
    Int(i64),
    Float(f64),
    Bool(bool),
    Str(String),
    /// A bare name: a net parameter, a layer, or a keyword value such as `fixed`.
    Ident(String),
    List(Vec<Value>),
    /// `sgd(lr=0.1)` as a value.
    Call(Call),
}

impl ValueKind {
    /// How the kind is called in diagnostics ("an integer", "a list", ...).
    pub fn describe(&self) -> &'static str {
        match self {
            ValueKind::Int(_) => "an integer",
            ValueKind::Float(_) => "a number",
            ValueKind::Bool(_) => "a boolean",
            ValueKind::Str(_) => "a string",
            ValueKind::Ident(_) => "a name",
            ValueKind::List(_) => "a list",
            ValueKind::Call(_) => "a call",
        }
    }
}

/// `train { KEY = VALUE ... }`
#[derive(Clone, Debug, PartialEq)]
pub struct TrainBlock {
    pub settings: Vec<Setting>,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Setting {
    pub key: Ident,
    pub value: Value,
    pub span: Span,
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.kind.fmt(f)
    }
}

impl fmt::Display for ValueKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ValueKind::Int(v) => write!(f, "{v}"),
            ValueKind::Float(v) => write!(f, "{v:?}"),
            ValueKind::Bool(v) => write!(f, "{v}"),
            ValueKind::Str(s) => write!(f, "{s:?}"),
            ValueKind::Ident(s) => f.write_str(s),
            ValueKind::List(items) => {
                f.write_str("[")?;
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{item}")?;
                }
                f.write_str("]")
            }
            ValueKind::Call(call) => write!(f, "{call}"),
        }
    }
}

impl fmt::Display for Call {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.op.name)?;
        if let Some(args) = &self.args {
            f.write_str("(")?;
            for (i, arg) in args.iter().enumerate() {
                if i > 0 {
                    f.write_str(", ")?;
                }
                if let Some(key) = &arg.key {
                    write!(f, "{}=", key.name)?;
                }
                write!(f, "{}", arg.value)?;
            }
            f.write_str(")")?;
        }
        Ok(())
    }
}
