//! The registry of diagnostic codes: every code any netc stage reports, with its meaning.
//! Diagnostics get their code only through [`Code::error`] and [`Code::warning`], so a code
//! cannot be misspelt or given two meanings; docs/language.md lists the same codes.

use crate::Diagnostic;

macro_rules! codes {
    ($($(#[$doc:meta])* $variant:ident = $code:literal, $meaning:literal;)*) => {
        /// A diagnostic code. `E` codes are errors, `W` codes warnings.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum Code {
            $($(#[$doc])* $variant,)*
        }

        impl Code {
            /// Every code, in numeric order.
            pub const ALL: &'static [Code] = &[$(Code::$variant,)*];

            /// The code as diagnostics print it, `E0105`.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Code::$variant => $code,)*
                }
            }

            /// What a diagnostic with this code is about, in one line.
            pub fn meaning(self) -> &'static str {
                match self {
                    $(Code::$variant => $meaning,)*
                }
            }
        }
    };
}

codes! {
    Syntax = "E0001", "syntax error: what was expected and what was found";
    LiteralRange = "E0002", "an integer or number literal too large for 64 bits";
    BadCharacter = "E0003", "a character that cannot be where it is: NUL, a lone CR, an invisible or non-ASCII one";
    TooDeep = "E0004", "brackets nested deeper than the language allows";
    TooLong = "E0005", "a unit expression with more terms than the language allows";
    UnknownOp = "E0100", "unknown layer or loss operation";
    UnknownArgument = "E0101", "unknown argument, or a keyword argument to `add`/`concat`";
    DuplicateArgument = "E0102", "an argument given twice";
    MissingArgument = "E0103", "a required argument missing, or `add`/`concat` with fewer than two layers";
    WrongKind = "E0104", "a value of the wrong kind";
    OutOfRange = "E0105", "a value out of range";
    Positional = "E0106", "a positional argument after a keyword argument, or one too many";
    UndefinedName = "E0200", "a name that is not a layer or the input defined above";
    DuplicateName = "E0201", "a net, parameter or layer name defined twice";
    NoInput = "E0202", "a net without an input";
    NoLoss = "E0203", "a net without a loss";
    Misplaced = "E0204", "a statement in the wrong place";
    LossMisuse = "E0205", "a loss used as a layer, or a layer used as the loss";
    ParamWithoutValue = "E0206", "a net parameter with no default and no `--set`";
    PopulationUnread = "E0207", "a `dale` population that no weight layer reads";
    PopulationMisread = "E0208", "a `dale` population read by a layer without weights, or by the loss";
    UnitUnknownName = "E0210", "a name in a unit's expression that is not `x`, a parameter, `noise`, a function or a unit";
    Arity = "E0211", "a function or unit called with the wrong number of arguments";
    Recursion = "E0212", "a unit or block that uses itself, directly or through others";
    LearnedMisuse = "E0213", "a learned parameter where a constant is required";
    Shadowing = "E0214", "a unit or block named like a built-in layer, a function, or another unit or block";
    NoiseInGrad = "E0215", "`noise` inside a unit's `grad`";
    BlockOutput = "E0216", "a block that does not end in a single output";
    BlockInput = "E0217", "a block without exactly one input, or whose input shape does not fit what it reads";
    TooManyLayers = "E0218", "blocks that expand to more layers than a net may have";
    NameTooLong = "E0219", "a layer whose name, with the names of the blocks around it, is longer than a net may have";
    LayerMisfit = "E0300", "a layer that cannot apply to its input or arguments";
    ShapeMismatch = "E0301", "shapes that must agree do not";
    BadInputShape = "E0302", "an input shape that is not a list of one to three positive integers";
    TooLarge = "E0303", "a tensor with more than 2^31 elements per example";
    TooMuchMemory = "E0304", "a training or evaluation step that needs more memory than the limit";
    UnknownSetting = "E0400", "unknown `train` setting";
    BadSetting = "E0401", "a `train` setting (or its command-line flag) with a value it does not accept";
    DuplicateTrainBlock = "E0402", "a second `train` block";
    DuplicateSetting = "E0403", "a `train` setting given twice";
    SetUnknown = "E0500", "`--set` of a parameter no net declares";
    SetWrongType = "E0501", "`--set` with a value of another type than the parameter's default";
    SetNotAValue = "E0502", "`--set` with text that is not a value, or a number out of range";
    Lowering = "E0600", "a checked layer the IR cannot lower (a bug in netc)";
    MalformedIr = "E0610", "a textual IR program (`.nir`) that does not parse or whose shapes do not fit";
    DataShape = "E0700", "the data set's images do not fit the net's input";
    DataClasses = "E0701", "the data set's classes differ from the loss's";
    Diverged = "E0800", "training diverged: a value became NaN or infinite";
    NotExportable = "E0900", "a layer that the export format cannot express";
    UnusedParam = "W0001", "a net parameter that is never used";
    Equivalent = "W0002", "a layer that is provably a simpler layer in disguise (a sign flip of the weights around it)";
}

impl Code {
    /// An error diagnostic with this code.
    pub fn error(self) -> Diagnostic {
        Diagnostic::error().with_code(self.as_str())
    }

    /// A warning diagnostic with this code.
    pub fn warning(self) -> Diagnostic {
        Diagnostic::warning().with_code(self.as_str())
    }

    /// Whether `diagnostic` carries this code.
    pub fn is_code_of(self, diagnostic: &Diagnostic) -> bool {
        diagnostic.code.as_deref() == Some(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn codes_are_unique_well_formed_and_ordered() {
        let mut seen = HashSet::new();
        for code in Code::ALL {
            let text = code.as_str();
            assert!(seen.insert(text), "{text} is registered twice");
            assert_eq!(text.len(), 5, "{text}");
            assert!(text.starts_with('E') || text.starts_with('W'), "{text}");
            assert!(text[1..].bytes().all(|b| b.is_ascii_digit()), "{text}");
            assert!(!code.meaning().is_empty() && !code.meaning().contains('\n'), "{text}");
        }
        let texts: Vec<&str> = Code::ALL.iter().map(|c| c.as_str()).collect();
        let mut sorted = texts.clone();
        sorted.sort_by_key(|t| (t.starts_with('W'), *t));
        assert_eq!(texts, sorted);
    }

    #[test]
    fn warnings_are_warnings() {
        assert_eq!(Code::UnusedParam.warning().severity, crate::Severity::Warning);
        assert_eq!(Code::Syntax.error().severity, crate::Severity::Error);
        assert!(Code::Diverged.is_code_of(&Code::Diverged.error()));
        assert!(!Code::Diverged.is_code_of(&Code::Syntax.error()));
    }
}
