//! The textual IR: a lossless form of a [`Program`] that [`parse`] reads back.
//!
//! ```text
//! program tiny (train) {
//!   source x span=20..31 line=2
//!   source loss span=70..99 line=5
//!   source dense1 layer=0 span=34..42 line=3
//!   %0: [N,4] = input x                                   # x (line 2)
//!   %1: [N] = labels                                      # loss (line 5)
//!   %2: [3,4] = param dense1.weight role=weight init=fans(4,3)  # dense1 (line 3)
//!   %3: [N,3] = matmul %0, %2 trans_b                     # dense1 (line 3)
//!   return loss = %5
//! }
//! ```
//!
//! Sources come first: the layer (or input, or loss) each instruction came from, with its byte
//! span and line. An instruction's trailing `# name` says which source it belongs to; anything
//! after the name is a comment. Every number prints in the shortest form that reads back to the
//! same value, constants and masks in full, parameters with their role, initialisation,
//! multipliers and sign constraint, so `parse(&p.to_string()) == Ok(p)`. [`parse`] rebuilds the
//! program through [`Builder`], the same shape rules lowering goes through, and checks each
//! instruction's declared shape against the rule's; every mistake is a [`TextError`] at its line
//! and column.

use crate::op::{
    BinaryFn, Conv, Distribution, Input, InputKind, Op, Pad, ParamInfo, ParamInit, ParamRole, PoolKind, RandomKey,
    SignConstraint, UnaryFn, Window,
};
use crate::program::{Builder, Mode, OutputKind, Program, Source, ValueId};
use crate::rng::RandomStream;
use crate::shape::{Dim, Shape};
use crate::span::Span;
use crate::tensor::Tensor;
use crate::{LABELS, LOGITS, LOSS, STEP};
use std::collections::HashMap;
use std::fmt::{self, Write};
use std::str::FromStr;

/// Instructions are padded to this width before their `# source` comment.
const COMMENT_COLUMN: usize = 56;

/// The most elements a constant of the text form may have: its zeros are implicit in a mask, so
/// the text's length does not bound them.
const MAX_CONSTANT_ELEMENTS: usize = 1 << 24;

impl fmt::Display for Program {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mode = match self.mode() {
            Mode::Train => "train",
            Mode::Eval => "eval",
        };
        writeln!(f, "program {} ({mode}) {{", self.name())?;
        for source in self.sources() {
            write!(f, "  source {}", source.name)?;
            if let Some(layer) = source.layer {
                write!(f, " layer={layer}")?;
            }
            write!(f, " span={}..{}", source.span.start, source.span.end)?;
            if let Some(line) = source.line {
                write!(f, " line={line}")?;
            }
            writeln!(f)?;
        }
        for (i, inst) in self.insts().iter().enumerate() {
            let mut line = format!("  %{i}: {} = {}", inst.shape, inst.op.name());
            let args: Vec<String> = inst.args.iter().map(ValueId::to_string).collect();
            if !args.is_empty() {
                line.push(' ');
                line.push_str(&args.join(", "));
            }
            line.push_str(&inst.op.attributes());
            match inst.source.and_then(|s| self.sources().get(s.0)) {
                Some(source) => {
                    // Padded by hand: a format width is limited to u16::MAX, and an instruction
                    // joining thousands of values is longer.
                    let pad = COMMENT_COLUMN.saturating_sub(line.chars().count()).max(2);
                    write!(f, "{line}{:pad$}# {}", "", source.name)?;
                    if let Some(n) = source.line {
                        write!(f, " (line {n})")?;
                    }
                    writeln!(f)?;
                }
                None => writeln!(f, "{line}")?,
            }
        }
        for output in self.outputs() {
            let kind = if output.kind == OutputKind::Gradient { "grad " } else { "" };
            writeln!(f, "  return {kind}{} = {}", output.name, output.value)?;
        }
        writeln!(f, "}}")
    }
}

fn list<T: fmt::Display>(items: impl IntoIterator<Item = T>) -> String {
    let items: Vec<String> = items.into_iter().map(|i| i.to_string()).collect();
    format!("[{}]", items.join(", "))
}

/// Whether every value of a constant is exactly `0.0` or `1.0` (sign bits included), so that
/// printing it as the positions of its ones loses nothing.
fn is_mask(t: &Tensor) -> bool {
    t.data().iter().all(|v| v.to_bits() == 0f32.to_bits() || v.to_bits() == 1f32.to_bits())
}

impl Op {
    /// The op's attributes as they follow its operands in the text form, each with a leading
    /// space.
    pub fn attributes(&self) -> String {
        let mut s = String::new();
        // Writing to a String cannot fail.
        let _ = self.write_attributes(&mut s);
        s
    }

    fn write_attributes(&self, s: &mut String) -> fmt::Result {
        let kernel = |[h, w]: [usize; 2]| if h == w { h.to_string() } else { format!("{h}x{w}") };
        let hw = |[h, w]: [usize; 2]| format!("{h}x{w}");
        let conv_attrs = |s: &mut String, c: &Conv| {
            write!(s, " stride={} pad={}", c.stride, c.pad)?;
            if c.groups != 1 {
                write!(s, " groups={}", c.groups)?;
            }
            Ok(())
        };
        let window = |s: &mut String, w: &Window| {
            write!(s, " k={} stride={} pad={}", kernel(w.kernel), w.stride, crate::rules::pad_text(w.pad))
        };
        match self {
            Op::Input(input) => match &input.kind {
                InputKind::Data => write!(s, " {}", input.name)?,
                // Labels and step are known by their kind; their names are fixed.
                InputKind::Labels | InputKind::Step => {}
                InputKind::Param(p) => {
                    write!(s, " {} role={}", input.name, p.role.name())?;
                    match p.init {
                        ParamInit::Weight { fan_in, fan_out } => write!(s, " init=fans({fan_in},{fan_out})")?,
                        ParamInit::Zeros => s.push_str(" init=zeros"),
                        ParamInit::CentreTap => s.push_str(" init=centre"),
                        ParamInit::Constant { value } => write!(s, " init=constant({value})")?,
                        ParamInit::Drawn(Distribution::Normal { std }) => write!(s, " init=normal({std})")?,
                        ParamInit::Drawn(Distribution::Xavier { fan_in, fan_out }) => {
                            write!(s, " init=xavier({fan_in},{fan_out})")?
                        }
                        ParamInit::Drawn(Distribution::He { fan_in }) => write!(s, " init=he({fan_in})")?,
                    }
                    if p.lr_mult != 1.0 {
                        write!(s, " lr_mult={}", p.lr_mult)?;
                    }
                    if p.wd_mult != 1.0 {
                        write!(s, " wd_mult={}", p.wd_mult)?;
                    }
                    if let Some(sign) = &p.sign {
                        let inhibitory = (0..sign.inhibitory.len()).filter(|&u| sign.inhibitory[u]);
                        write!(
                            s,
                            " population={} units={} block={} inhibitory={}",
                            sign.population,
                            sign.inhibitory.len(),
                            sign.block,
                            list(inhibitory)
                        )?;
                    }
                }
            },
            Op::Const(t) if is_mask(t) => {
                // A mask: where its ones are says more than a run of zeros.
                let ones: Vec<usize> = (0..t.len()).filter(|&i| t.data()[i] == 1.0).collect();
                write!(s, " mask ones={}/{} at {}", ones.len(), t.len(), list(ones))?;
            }
            Op::Const(t) => write!(s, " {}", list(t.data()))?,
            Op::Fill { value, .. } => write!(s, " {value}")?,
            Op::RandomBernoulli { keep, key, .. } => write!(s, " keep={keep} seed={} stream={}", key.seed, key.stream)?,
            Op::RandomParts { fracs, key, .. } => {
                write!(s, " fracs={} seed={} stream={}", list(fracs), key.seed, key.stream)?;
            }
            Op::RandomNormal { key, .. } => write!(s, " seed={} stream={}", key.seed, key.stream)?,
            Op::Unary(f) => match f {
                UnaryFn::Scale { c } => write!(s, " by={c}")?,
                UnaryFn::Equal { value } => write!(s, " value={value}")?,
                _ => {}
            },
            Op::Broadcast { axes, .. } | Op::ReduceSum { axes } => write!(s, " axes={}", list(axes))?,
            Op::Concat { axis } | Op::ReduceMax { axis } | Op::ReduceMaxBackward { axis } => write!(s, " axis={axis}")?,
            Op::Slice { axis, start, len } => write!(s, " axis={axis} start={start} len={len}")?,
            Op::MatMul { trans_a, trans_b } => {
                if *trans_a {
                    s.push_str(" trans_a");
                }
                if *trans_b {
                    s.push_str(" trans_b");
                }
            }
            Op::Conv2d(c) => conv_attrs(s, c)?,
            Op::Conv2dBackwardData { conv, input_hw } => {
                conv_attrs(s, conv)?;
                write!(s, " input={}", hw(*input_hw))?;
            }
            Op::Conv2dBackwardFilter { conv, kernel } => {
                conv_attrs(s, conv)?;
                write!(s, " kernel={}", hw(*kernel))?;
            }
            Op::Pool { window: w, .. } | Op::MaxPoolBackward(w) => window(s, w)?,
            Op::AvgPoolBackward { window: w, input_hw } => {
                window(s, w)?;
                write!(s, " input={}", hw(*input_hw))?;
            }
            Op::Reshape { .. } | Op::Add | Op::Sub | Op::Mul | Op::Binary(_) | Op::Select | Op::BiasAdd => {}
            Op::StopGradient | Op::CustomGrad => {}
            Op::SoftmaxXent | Op::SoftmaxXentGrad => {}
        }
        Ok(())
    }
}

/// A mistake in a textual program, at its place in the text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TextError {
    /// The bytes of the text the mistake is in.
    pub span: Span,
    /// 1-based line and column (in characters) of the span's start.
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl fmt::Display for TextError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.line, self.column, self.message)
    }
}

impl std::error::Error for TextError {}

/// Reads a program from its text form.
pub fn parse(text: &str) -> Result<Program, TextError> {
    let error = |span: Span, message: String| {
        let before = &text[..span.start.min(text.len())];
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        TextError { span, line, column, message }
    };
    program(text).map_err(|(span, message)| error(span, message))
}

/// The lines of `text` that hold something (not blank, not a `#` comment).
fn lines(text: &str) -> impl Iterator<Item = Line<'_>> {
    let mut offset = 0;
    text.split_inclusive('\n').filter_map(move |raw| {
        let base = offset;
        offset += raw.len();
        let mut line = Line { text: raw.trim_end_matches(['\n', '\r']), base, pos: 0 };
        let empty = line.at_end() || line.text[line.pos..].starts_with('#');
        (!empty).then_some(line)
    })
}

/// The header, then sources, instructions and outputs up to the closing `}`.
fn program(text: &str) -> Result<Program, Fault> {
    let end = Span::new(text.len(), text.len());
    let mut lines = lines(text);
    let mut first = lines.next().ok_or_else(|| (end, "expected `program NAME (train|eval) {`".to_string()))?;
    let mut parser = Parser { builder: header(&mut first)?, values: HashMap::new(), sources: HashMap::new() };
    let mut closed: Option<Span> = None;
    for mut line in lines {
        if let Some(span) = closed {
            return Err((line.here(), format!("text after the program's closing `}}` (at byte {})", span.start)));
        }
        if line.eat("}") {
            if !line.at_end() {
                return Err((line.here(), "expected the end of the line after `}`".into()));
            }
            closed = Some(line.span(0, 1));
            continue;
        }
        let (word, span) = line.word("an instruction, `source`, `return` or `}`")?;
        match word {
            "source" => parser.source(&mut line)?,
            "return" => parser.output(&mut line)?,
            _ if word.starts_with('%') => parser.instruction(&mut line, word, span)?,
            _ => {
                return Err((
                    span,
                    format!("expected an instruction `%N: …`, `source`, `return` or `}}`, found `{word}`"),
                ))
            }
        }
    }
    if closed.is_none() {
        return Err((end, "the program is not closed with `}`".into()));
    }
    Ok(parser.builder.finish())
}

/// `program NAME (train|eval) {`: the builder of the program it opens.
fn header(line: &mut Line<'_>) -> Result<Builder, Fault> {
    let (word, span) = line.word("`program`")?;
    if word != "program" {
        return Err((span, format!("expected `program NAME (train|eval) {{`, found `{word}`")));
    }
    let (name, _) = line.word("the program's name")?;
    line.expect("(", "before the mode")?;
    let (mode, span) = line.word("`train` or `eval`")?;
    let mode = match mode {
        "train" => Mode::Train,
        "eval" => Mode::Eval,
        _ => return Err((span, format!("the mode is `train` or `eval`, not `{mode}`"))),
    };
    line.expect(")", "after the mode")?;
    line.expect("{", "to open the program")?;
    if !line.at_end() {
        return Err((line.here(), "expected the end of the line after `{`".into()));
    }
    Ok(Builder::new(name, mode))
}

/// A mistake before it is placed at a line and column.
type Fault = (Span, String);

struct Parser {
    builder: Builder,
    /// The values defined so far, by their number in the text.
    values: HashMap<usize, ValueId>,
    /// The declared sources, by name.
    sources: HashMap<String, crate::program::SourceId>,
}

/// One line of the text, read token by token.
struct Line<'a> {
    text: &'a str,
    /// Byte offset of the line in the whole text.
    base: usize,
    pos: usize,
}

/// A word, list or `key=value` of an instruction's attributes.
#[derive(Clone, Copy)]
struct Item<'a> {
    key: Option<&'a str>,
    value: &'a str,
    span: Span,
}

fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() || matches!(c, '_' | '.' | ':' | '-' | '+' | '%' | '/')
}

impl<'a> Line<'a> {
    fn span(&self, start: usize, end: usize) -> Span {
        Span::new(self.base + start, self.base + end)
    }

    fn here(&self) -> Span {
        self.span(self.pos, (self.pos + 1).min(self.text.len()).max(self.pos))
    }

    fn skip_space(&mut self) {
        while self.text[self.pos..].starts_with([' ', '\t', '\r']) {
            self.pos += 1;
        }
    }

    fn at_end(&mut self) -> bool {
        self.skip_space();
        self.pos >= self.text.len()
    }

    fn eat(&mut self, token: &str) -> bool {
        self.skip_space();
        if self.text[self.pos..].starts_with(token) {
            self.pos += token.len();
            true
        } else {
            false
        }
    }

    fn expect(&mut self, token: &str, what: &str) -> Result<(), Fault> {
        if self.eat(token) {
            Ok(())
        } else {
            Err((self.here(), format!("expected `{token}` {what}")))
        }
    }

    /// A run of word characters (names, numbers, `%3`, `44..67`).
    fn word(&mut self, what: &str) -> Result<(&'a str, Span), Fault> {
        self.skip_space();
        let rest = &self.text[self.pos..];
        let len = rest.find(|c: char| !is_word_char(c)).unwrap_or(rest.len());
        if len == 0 {
            return Err((self.here(), format!("expected {what}")));
        }
        let start = self.pos;
        self.pos += len;
        Ok((&self.text[start..self.pos], self.span(start, self.pos)))
    }

    /// Text up to and including the bracket that closes the one at the cursor.
    fn bracketed(&mut self, open: char, close: char) -> Result<(&'a str, Span), Fault> {
        let start = self.pos;
        match self.text[start..].find(close) {
            Some(end) if self.text[start..].starts_with(open) => {
                self.pos = start + end + 1;
                Ok((&self.text[start..self.pos], self.span(start, self.pos)))
            }
            _ => Err((self.here(), format!("expected `{open}…{close}`"))),
        }
    }

    fn shape(&mut self) -> Result<(Shape, Span), Fault> {
        self.skip_space();
        let (body, span) = self.bracketed('[', ']')?;
        let inner = &body[1..body.len() - 1];
        let mut dims = Vec::new();
        if !inner.trim().is_empty() {
            for part in inner.split(',').map(str::trim) {
                dims.push(match part {
                    "N" => Dim::Batch,
                    _ => Dim::Fixed(part.parse().map_err(|_| (span, format!("`{part}` is not a dimension")))?),
                });
            }
        }
        Ok((Shape(dims), span))
    }

    /// The attributes after an instruction's mnemonic and operands, up to a `#` comment.
    fn items(&mut self) -> Result<Vec<Item<'a>>, Fault> {
        let mut items = Vec::new();
        loop {
            self.skip_space();
            if self.pos >= self.text.len() || self.text[self.pos..].starts_with('#') {
                return Ok(items);
            }
            if self.eat(",") {
                continue;
            }
            let start = self.pos;
            let (key, value) = if self.text[self.pos..].starts_with('[') {
                (None, self.bracketed('[', ']')?.0)
            } else {
                let (word, _) = self.word("an operand or attribute")?;
                if self.text[self.pos..].starts_with('=') {
                    self.pos += 1;
                    let value = if self.text[self.pos..].starts_with('[') {
                        self.bracketed('[', ']')?.0
                    } else {
                        let (value, span) = self.word("a value")?;
                        if self.text[self.pos..].starts_with('(') {
                            let (_, call) = self.bracketed('(', ')')?;
                            &self.text[span.start - self.base..call.end - self.base]
                        } else {
                            value
                        }
                    };
                    (Some(word), value)
                } else {
                    (None, word)
                }
            };
            items.push(Item { key, value, span: self.span(start, self.pos) });
        }
    }

    /// The source named by a trailing `# name` comment, if any.
    fn comment_source(&mut self) -> Option<(&'a str, Span)> {
        if self.eat("#") {
            self.word("a source name").ok()
        } else {
            None
        }
    }
}

fn number<T: FromStr>(item: &Item<'_>, what: &str) -> Result<T, Fault> {
    item.value.parse().map_err(|_| (item.span, format!("`{}` is not {what}", item.value)))
}

fn numbers<T: FromStr>(item: &Item<'_>, what: &str) -> Result<Vec<T>, Fault> {
    let inner = item
        .value
        .strip_prefix('[')
        .and_then(|v| v.strip_suffix(']'))
        .ok_or_else(|| (item.span, format!("expected a list `[…]` of {what}")))?;
    if inner.trim().is_empty() {
        return Ok(Vec::new());
    }
    inner
        .split(',')
        .map(|v| v.trim().parse().map_err(|_| (item.span, format!("`{}` is not {what}", v.trim()))))
        .collect()
}

/// `3` (a square window) or `3x2`.
fn extent(item: &Item<'_>, square: bool) -> Result<[usize; 2], Fault> {
    let bad = || (item.span, format!("`{}` is not an extent `HxW`", item.value));
    match item.value.split_once('x') {
        Some((h, w)) => Ok([h.parse().map_err(|_| bad())?, w.parse().map_err(|_| bad())?]),
        None if square => {
            let k = item.value.parse().map_err(|_| bad())?;
            Ok([k, k])
        }
        None => Err(bad()),
    }
}

/// The attributes of one instruction, taken one by one; what is left over is a mistake.
struct Attrs<'a> {
    items: Vec<Option<Item<'a>>>,
    /// Where the mnemonic is, for mistakes about a missing attribute.
    at: Span,
    op: &'a str,
}

impl<'a> Attrs<'a> {
    fn get(&mut self, key: &str) -> Option<Item<'a>> {
        let slot = self.items.iter_mut().find(|i| i.is_some_and(|i| i.key == Some(key)))?;
        slot.take()
    }

    fn required(&mut self, key: &str) -> Result<Item<'a>, Fault> {
        self.get(key).ok_or_else(|| (self.at, format!("`{}` needs `{key}=`", self.op)))
    }

    fn flag(&mut self, word: &str) -> bool {
        match self.items.iter_mut().find(|i| i.is_some_and(|i| i.key.is_none() && i.value == word)) {
            Some(slot) => {
                *slot = None;
                true
            }
            None => false,
        }
    }

    /// The first word or list not taken yet that is not an operand.
    fn positional(&mut self, what: &str) -> Result<Item<'a>, Fault> {
        let slot = self.items.iter_mut().find(|i| i.is_some_and(|i| i.key.is_none() && !i.value.starts_with('%')));
        slot.and_then(Option::take).ok_or_else(|| (self.at, format!("`{}` needs {what}", self.op)))
    }

    fn usize(&mut self, key: &str) -> Result<usize, Fault> {
        number(&self.required(key)?, "a count")
    }

    fn f64(&mut self, key: &str) -> Result<f64, Fault> {
        number(&self.required(key)?, "a number")
    }

    fn mult(&mut self, key: &str) -> Result<f64, Fault> {
        self.get(key).map_or(Ok(1.0), |item| number(&item, "a number"))
    }

    fn operands(&mut self) -> Vec<Item<'a>> {
        self.items
            .iter_mut()
            .filter(|i| i.is_some_and(|i| i.key.is_none() && i.value.starts_with('%')))
            .filter_map(Option::take)
            .collect()
    }

    fn finish(self) -> Result<(), Fault> {
        match self.items.into_iter().flatten().next() {
            Some(item) => Err((item.span, format!("`{}` takes no `{}`", self.op, item.key.unwrap_or(item.value)))),
            None => Ok(()),
        }
    }

    fn key(&mut self, key: &str) -> Result<RandomKey, Fault> {
        let seed = number(&self.required("seed")?, "a seed")?;
        let item = self.required(key)?;
        let stream = RandomStream::parse(item.value).ok_or_else(|| {
            (item.span, format!("`{}` is not a random stream (init:…, mask:…, dropout:…, shuffle)", item.value))
        })?;
        Ok(RandomKey { seed, stream })
    }

    fn conv(&mut self) -> Result<Conv, Fault> {
        let groups = self.get("groups").map_or(Ok(1), |g| number(&g, "a group count"))?;
        Ok(Conv { stride: self.usize("stride")?, pad: self.usize("pad")?, groups })
    }

    fn window(&mut self) -> Result<Window, Fault> {
        let kernel = extent(&self.required("k")?, true)?;
        let item = self.required("pad")?;
        let bad = || (item.span, format!("`{}` is not a padding (P, or [TOP,BOTTOM,LEFT,RIGHT])", item.value));
        let sides: Vec<Option<usize>> =
            item.value.trim_matches(|c| c == '[' || c == ']').split(',').map(|p| p.trim().parse().ok()).collect();
        let pad = match sides[..] {
            [Some(p)] => Pad::uniform(p),
            [Some(top), Some(bottom), Some(left), Some(right)] => Pad { top, bottom, left, right },
            _ => return Err(bad()),
        };
        Ok(Window { kernel, stride: self.usize("stride")?, pad })
    }
}

impl Parser {
    fn source(&mut self, line: &mut Line<'_>) -> Result<(), Fault> {
        let (name, name_span) = line.word("the source's name")?;
        let mut attrs = Attrs { items: line.items()?.into_iter().map(Some).collect(), at: name_span, op: "source" };
        let layer = attrs.get("layer").map(|l| number(&l, "a layer index")).transpose()?;
        let span_item = attrs.required("span")?;
        let bad = || (span_item.span, format!("`{}` is not a byte range `START..END`", span_item.value));
        let (start, end) = span_item.value.split_once("..").ok_or_else(bad)?;
        let span = Span::new(start.parse().map_err(|_| bad())?, end.parse().map_err(|_| bad())?);
        let source_line = attrs.get("line").map(|l| number(&l, "a line number")).transpose()?;
        attrs.finish()?;
        if self.sources.contains_key(name) {
            return Err((name_span, format!("source `{name}` is declared twice")));
        }
        let mut source = Source::new(name, layer, span);
        source.line = source_line;
        let id = self.builder.set_source(source);
        self.builder.use_source(None);
        self.sources.insert(name.to_string(), id);
        Ok(())
    }

    fn value(&self, word: &str, span: Span) -> Result<ValueId, Fault> {
        let number: usize = word
            .strip_prefix('%')
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| (span, format!("`{word}` is not a value `%N`")))?;
        self.values.get(&number).copied().ok_or_else(|| (span, format!("{word} is used before it is defined")))
    }

    fn output(&mut self, line: &mut Line<'_>) -> Result<(), Fault> {
        let (mut name, mut span) = line.word("`loss`, `logits` or `grad NAME`")?;
        let kind = match name {
            "grad" => {
                (name, span) = line.word("the parameter's name")?;
                OutputKind::Gradient
            }
            LOSS => OutputKind::Loss,
            LOGITS => OutputKind::Logits,
            _ => return Err((span, format!("an output is `loss`, `logits` or `grad NAME`, not `{name}`"))),
        };
        line.expect("=", "after the output's name")?;
        let (word, value_span) = line.word("a value `%N`")?;
        let value = self.value(word, value_span)?;
        if !line.at_end() {
            return Err((line.here(), "expected the end of the line".into()));
        }
        self.builder.output(name, kind, value).map_err(|e| (span, e.to_string()))
    }

    fn instruction(&mut self, line: &mut Line<'_>, id: &str, id_span: Span) -> Result<(), Fault> {
        let id_text = id.strip_suffix(':').unwrap_or(id);
        let number: usize = id_text
            .strip_prefix('%')
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| (id_span, format!("`{id_text}` is not a value `%N`")))?;
        if self.values.contains_key(&number) {
            return Err((id_span, format!("{id_text} is defined twice")));
        }
        if !id.ends_with(':') {
            line.expect(":", "after the value's number")?;
        }
        let (shape, shape_span) = line.shape()?;
        line.expect("=", "after the shape")?;
        let (mnemonic, op_span) = line.word("an op")?;
        let items = line.items()?;
        let source = match line.comment_source() {
            Some((name, span)) => {
                Some(*self.sources.get(name).ok_or_else(|| (span, format!("no source `{name}` is declared")))?)
            }
            None => None,
        };
        let mut attrs = Attrs { items: items.into_iter().map(Some).collect(), at: op_span, op: mnemonic };
        let mut args = Vec::new();
        for operand in attrs.operands() {
            args.push(self.value(operand.value, operand.span)?);
        }
        let op = op(mnemonic, &shape, shape_span, &mut attrs)?;
        attrs.finish()?;
        let builder = &mut self.builder;
        builder.use_source(source);
        let value = builder.push(op, &args).map_err(|e| (op_span, e.to_string()))?;
        let inferred = builder.shape(value).cloned().unwrap_or_default();
        if inferred != shape {
            return Err((shape_span, format!("declared {shape}, but `{mnemonic}` of these operands is {inferred}")));
        }
        self.values.insert(number, value);
        Ok(())
    }
}

fn fixed(shape: &Shape, span: Span, what: &str) -> Result<Vec<usize>, Fault> {
    shape.as_fixed().ok_or_else(|| (span, format!("{what} cannot involve the batch size, but is {shape}")))
}

/// The op a mnemonic and its attributes name; `shape` is the instruction's declared shape,
/// which ops that make new values take as theirs.
fn op(mnemonic: &str, shape: &Shape, shape_span: Span, attrs: &mut Attrs<'_>) -> Result<Op, Fault> {
    let input = |name: &str, kind: InputKind| Op::Input(Input { name: name.to_string(), kind, shape: shape.clone() });
    Ok(match mnemonic {
        "input" => input(attrs.positional("the input's name")?.value, InputKind::Data),
        "labels" => input(LABELS, InputKind::Labels),
        "step" => input(STEP, InputKind::Step),
        "param" => {
            let name = attrs.positional("the parameter's name")?.value;
            fixed(shape, shape_span, "a parameter's shape")?;
            let info = param_info(attrs)?;
            input(name, InputKind::Param(info))
        }
        "const" => Op::Const(constant(attrs, fixed(shape, shape_span, "a constant's shape")?)?),
        "fill" => Op::Fill { value: number(&attrs.positional("its value")?, "a number")?, shape: shape.clone() },
        "random_bernoulli" => {
            Op::RandomBernoulli { keep: attrs.f64("keep")?, key: attrs.key("stream")?, shape: shape.clone() }
        }
        "random_parts" => {
            let fracs = numbers(&attrs.required("fracs")?, "fractions")?;
            Op::RandomParts { fracs, key: attrs.key("stream")?, shape: shape.clone() }
        }
        "random_normal" => Op::RandomNormal { key: attrs.key("stream")?, shape: shape.clone() },
        "stop_gradient" => Op::StopGradient,
        "custom_grad" => Op::CustomGrad,
        "add" => Op::Add,
        "sub" => Op::Sub,
        "mul" => Op::Mul,
        "select" => Op::Select,
        "bias_add" => Op::BiasAdd,
        "softmax_xent" => Op::SoftmaxXent,
        "softmax_xent_grad" => Op::SoftmaxXentGrad,
        "broadcast" => Op::Broadcast { shape: shape.clone(), axes: numbers(&attrs.required("axes")?, "axes")? },
        "reshape" => Op::Reshape { shape: shape.clone() },
        "concat" => Op::Concat { axis: attrs.usize("axis")? },
        "slice" => Op::Slice { axis: attrs.usize("axis")?, start: attrs.usize("start")?, len: attrs.usize("len")? },
        "reduce_sum" => Op::ReduceSum { axes: numbers(&attrs.required("axes")?, "axes")? },
        "reduce_max" => Op::ReduceMax { axis: attrs.usize("axis")? },
        "reduce_max_bwd" => Op::ReduceMaxBackward { axis: attrs.usize("axis")? },
        "matmul" => Op::MatMul { trans_a: attrs.flag("trans_a"), trans_b: attrs.flag("trans_b") },
        "conv2d" => Op::Conv2d(attrs.conv()?),
        "conv2d_bwd_data" => {
            let conv = attrs.conv()?;
            Op::Conv2dBackwardData { conv, input_hw: extent(&attrs.required("input")?, false)? }
        }
        "conv2d_bwd_filter" => {
            let conv = attrs.conv()?;
            Op::Conv2dBackwardFilter { conv, kernel: extent(&attrs.required("kernel")?, false)? }
        }
        "maxpool" => Op::Pool { kind: PoolKind::Max, window: attrs.window()? },
        "avgpool" => Op::Pool { kind: PoolKind::Avg, window: attrs.window()? },
        "maxpool_bwd" => Op::MaxPoolBackward(attrs.window()?),
        "avgpool_bwd" => {
            let window = attrs.window()?;
            Op::AvgPoolBackward { window, input_hw: extent(&attrs.required("input")?, false)? }
        }
        _ => match BinaryFn::ALL.into_iter().find(|f| f.name() == mnemonic) {
            Some(f) => Op::Binary(f),
            None => Op::Unary(unary(mnemonic, attrs)?),
        },
    })
}

fn unary(mnemonic: &str, attrs: &mut Attrs<'_>) -> Result<UnaryFn, Fault> {
    Ok(match mnemonic {
        "relu" => UnaryFn::Relu,
        "sigmoid" => UnaryFn::Sigmoid,
        "tanh" => UnaryFn::Tanh,
        "scale" => UnaryFn::Scale { c: attrs.f64("by")? },
        "equal" => UnaryFn::Equal { value: attrs.f64("value")? },
        "relu_deriv" => UnaryFn::ReluDeriv,
        "sigmoid_deriv" => UnaryFn::SigmoidDeriv,
        "tanh_deriv" => UnaryFn::TanhDeriv,
        "exp" => UnaryFn::Exp,
        "log" => UnaryFn::Log,
        "log1p" => UnaryFn::Log1p,
        "sqrt" => UnaryFn::Sqrt,
        "abs" => UnaryFn::Abs,
        "softplus" => UnaryFn::Softplus,
        "sign" => UnaryFn::Sign,
        "log_deriv" => UnaryFn::LogDeriv,
        "log1p_deriv" => UnaryFn::Log1pDeriv,
        "sqrt_deriv" => UnaryFn::SqrtDeriv,
        _ => return Err((attrs.at, format!("`{mnemonic}` is not an op"))),
    })
}

fn param_info(attrs: &mut Attrs<'_>) -> Result<ParamInfo, Fault> {
    let role_item = attrs.required("role")?;
    let role = ParamRole::ALL.into_iter().find(|r| r.name() == role_item.value).ok_or_else(|| {
        (role_item.span, format!("`{}` is not a role (weight, bias, activation_filter)", role_item.value))
    })?;
    let init_item = attrs.required("init")?;
    let init = match init_item.value {
        "zeros" => ParamInit::Zeros,
        "centre" => ParamInit::CentreTap,
        constant if constant.starts_with("constant(") => {
            let bad = || (init_item.span, format!("`{constant}` is not an initialisation (constant(NUMBER))"));
            let value = constant.strip_prefix("constant(").and_then(|c| c.strip_suffix(')')).ok_or_else(bad)?;
            ParamInit::Constant { value: value.trim().parse::<f64>().ok().filter(|v| v.is_finite()).ok_or_else(bad)? }
        }
        drawn if ["normal(", "xavier(", "he("].iter().any(|f| drawn.starts_with(f)) => {
            let bad = || {
                (init_item.span, format!("`{drawn}` is not an initialisation (normal(STD), xavier(IN,OUT), he(IN))"))
            };
            let (name, args) = drawn.strip_suffix(')').and_then(|d| d.split_once('(')).ok_or_else(bad)?;
            let fans: Vec<Option<usize>> = args.split(',').map(|a| a.trim().parse().ok()).collect();
            ParamInit::Drawn(match (name, &fans[..]) {
                ("normal", _) => Distribution::Normal {
                    std: args.trim().parse::<f64>().ok().filter(|s| s.is_finite() && *s > 0.0).ok_or_else(bad)?,
                },
                ("xavier", &[Some(fan_in), Some(fan_out)]) => Distribution::Xavier { fan_in, fan_out },
                ("he", &[Some(fan_in)]) => Distribution::He { fan_in },
                _ => return Err(bad()),
            })
        }
        fans => {
            let bad = || {
                (
                    init_item.span,
                    format!("`{fans}` is not an initialisation (fans(IN,OUT), zeros, centre, constant(V))"),
                )
            };
            let (fan_in, fan_out) = fans
                .strip_prefix("fans(")
                .and_then(|f| f.strip_suffix(')'))
                .and_then(|f| f.split_once(','))
                .ok_or_else(bad)?;
            ParamInit::Weight {
                fan_in: fan_in.trim().parse().map_err(|_| bad())?,
                fan_out: fan_out.trim().parse().map_err(|_| bad())?,
            }
        }
    };
    let lr_mult = attrs.mult("lr_mult")?;
    let wd_mult = attrs.mult("wd_mult")?;
    let sign = match attrs.get("population") {
        None => None,
        Some(population) => {
            let units = attrs.usize("units")?;
            let block = attrs.usize("block")?;
            let item = attrs.required("inhibitory")?;
            let mut inhibitory = vec![false; units];
            for unit in numbers::<usize>(&item, "unit indices")? {
                *inhibitory.get_mut(unit).ok_or_else(|| (item.span, format!("unit {unit} is not below {units}")))? =
                    true;
            }
            Some(SignConstraint { population: population.value.to_string(), inhibitory, block })
        }
    };
    Ok(ParamInfo { role, init, lr_mult, wd_mult, sign })
}

/// `mask ones=K/T at [i, …]` or `[v, …]`.
fn constant(attrs: &mut Attrs<'_>, shape: Vec<usize>) -> Result<Tensor, Fault> {
    let elements = shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d)).filter(|&n| n <= MAX_CONSTANT_ELEMENTS);
    let Some(elements) = elements else {
        return Err((attrs.at, format!("a constant holds at most {MAX_CONSTANT_ELEMENTS} elements")));
    };
    let first = attrs.positional("its values `[…]` or `mask ones=K/T at […]`")?;
    let data = if first.value == "mask" {
        let ones_item = attrs.required("ones")?;
        let at = attrs.positional("`at […]`")?;
        if at.value != "at" {
            return Err((at.span, format!("expected `at`, found `{}`", at.value)));
        }
        let list = attrs.positional("the positions of the ones")?;
        let positions = numbers::<usize>(&list, "positions")?;
        if ones_item.value != format!("{}/{elements}", positions.len()) {
            return Err((ones_item.span, format!("{} ones of {elements} elements are listed", positions.len())));
        }
        let mut data = vec![0.0; elements];
        for p in positions {
            *data.get_mut(p).ok_or_else(|| (list.span, format!("position {p} is not below {elements}")))? = 1.0;
        }
        data
    } else {
        numbers::<f32>(&first, "numbers")?
    };
    Tensor::new(shape, data).map_err(|e| (first.span, e.to_string()))
}
