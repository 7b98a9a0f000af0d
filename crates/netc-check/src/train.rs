//! Checking the `train { }` block into a [`TrainConfig`].

use crate::args::{match_args, opt, opt_pos, req, Param, Scope, Ty};
use crate::config::*;
use crate::errors;
use netc_syntax::ast::{Arg, Call, Ident, TrainBlock, Value, ValueKind};
use netc_syntax::{Diagnostic, Span};
use std::collections::HashMap;

/// A setting of the `train` block.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TrainSetting {
    Optimizer,
    LrSchedule,
    Batch,
    Epochs,
    Init,
    Preprocess,
    Augment,
    Seed,
    Data,
}

impl TrainSetting {
    /// Every setting, in the order diagnostics list them.
    pub const ALL: [TrainSetting; 9] = [
        TrainSetting::Optimizer,
        TrainSetting::LrSchedule,
        TrainSetting::Batch,
        TrainSetting::Epochs,
        TrainSetting::Init,
        TrainSetting::Preprocess,
        TrainSetting::Augment,
        TrainSetting::Seed,
        TrainSetting::Data,
    ];

    /// The setting's name in a `train` block.
    pub fn name(self) -> &'static str {
        match self {
            TrainSetting::Optimizer => "optimizer",
            TrainSetting::LrSchedule => "lr_schedule",
            TrainSetting::Batch => "batch",
            TrainSetting::Epochs => "epochs",
            TrainSetting::Init => "init",
            TrainSetting::Preprocess => "preprocess",
            TrainSetting::Augment => "augment",
            TrainSetting::Seed => "seed",
            TrainSetting::Data => "data",
        }
    }

    fn named(name: &str) -> Option<TrainSetting> {
        TrainSetting::ALL.into_iter().find(|s| s.name() == name)
    }
}

/// The argument `lr` of both optimizers.
const LR: Param = opt("lr", Ty::PositiveNumber);
/// `lr` as the only, positional, argument of a command-line flag.
const LR_POSITIONAL: Param = opt_pos("lr", Ty::PositiveNumber);

pub fn check_train(block: &TrainBlock, errors: &mut Vec<Diagnostic>) -> TrainConfig {
    let mut config = TrainConfig::default();
    let mut seen: HashMap<TrainSetting, Span> = HashMap::new();
    let no_params = HashMap::new();
    let scope = Scope { params: no_params, used: Default::default() };
    for setting in &block.settings {
        let Some(known) = TrainSetting::named(&setting.key.name) else {
            errors.push(errors::unknown_setting(&setting.key, &TrainSetting::ALL.map(TrainSetting::name)));
            continue;
        };
        if let Some(&first) = seen.get(&known) {
            errors.push(errors::duplicate_setting(known.name(), first, setting.span));
            continue;
        }
        seen.insert(known, setting.span);
        let value = &setting.value;
        let bad = |expected: &str| errors::bad_setting(known.name(), value, expected);
        match known {
            TrainSetting::Optimizer => match optimizer(value, &scope, errors) {
                Some(opt) => config.optimizer = opt,
                None => errors.push(bad("sgd(lr=.., momentum=.., weight_decay=..) or adam(lr=.., beta1=.., beta2=.., eps=.., weight_decay=..)")),
            },
            TrainSetting::LrSchedule => match schedule(value) {
                Some(s) => config.lr_schedule = s,
                None => errors.push(bad("a list of [learning rate, epochs] pairs, e.g. [[0.05, 15], [0.005, 10]]")),
            },
            TrainSetting::Batch | TrainSetting::Epochs | TrainSetting::Seed => match count(known, value) {
                Ok(v) => match known {
                    TrainSetting::Batch => config.batch = v as usize,
                    TrainSetting::Epochs => config.epochs = v as usize,
                    _ => config.seed = v,
                },
                Err(e) => errors.push(e),
            },
            TrainSetting::Init => match init(value, &scope, errors) {
                Some(i) => config.init = i,
                None => errors.push(bad("normal(std=..), xavier or he")),
            },
            TrainSetting::Preprocess => match preprocess(value) {
                Some((pixels, contrast_norm, whiten)) => {
                    config.preprocess = pixels;
                    config.contrast_norm = contrast_norm;
                    config.whiten = whiten;
                }
                None => errors.push(bad(
                    "mean_image, scale or none, or a list of steps in order: one of those, then contrast_norm, then zca, e.g. [mean_image, contrast_norm, zca]",
                )),
            },
            TrainSetting::Augment => match augment(value, &scope, errors) {
                Some(a) => config.augment = a,
                None => errors.push(bad(
                    "none, flip_batch, flip or crop(pad=..), or a list of one flip and one crop, e.g. [flip, crop(pad=4)]",
                )),
            },
            TrainSetting::Data => match &value.kind {
                ValueKind::Ident(s) | ValueKind::Str(s) => config.data = Some(s.clone()),
                _ => errors.push(bad("a data set name or a folder in quotes")),
            },
        }
    }
    config
}

/// A whole-number setting that a command-line flag may override (`--batch`, `--epochs`, `--seed`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CountSetting {
    Batch,
    Epochs,
    Seed,
}

/// A command-line override of a whole-number setting, checked exactly as the `train` block
/// checks the setting (the same diagnostic, pointing into the flag's value).
pub fn count_override(setting: CountSetting, value: &Value) -> Result<u64, Diagnostic> {
    let setting = match setting {
        CountSetting::Batch => TrainSetting::Batch,
        CountSetting::Epochs => TrainSetting::Epochs,
        CountSetting::Seed => TrainSetting::Seed,
    };
    count(setting, value)
}

/// A command-line learning rate (`--lr`), checked exactly as the optimizers' `lr` argument.
pub fn lr_override(value: &Value) -> Result<f64, Diagnostic> {
    let no_params = HashMap::new();
    let scope = Scope { params: no_params, used: Default::default() };
    let call = Call {
        op: Ident { name: "lr".into(), span: value.span },
        args: Some(vec![Arg { key: None, value: value.clone(), span: value.span }]),
        span: value.span,
    };
    let mut errors = Vec::new();
    let args = match_args(&call, "lr", &[LR_POSITIONAL], &scope, &mut errors);
    match errors.into_iter().next() {
        Some(error) => Err(error),
        None => Ok(args.f64_or(LR.name, f64::NAN)),
    }
}

/// The value of `batch`, `epochs` or `seed`: a positive integer (`seed`: non-negative).
fn count(setting: TrainSetting, value: &Value) -> Result<u64, Diagnostic> {
    let least = if setting == TrainSetting::Seed { 0 } else { 1 };
    match value.kind {
        ValueKind::Int(v) if v >= least => Ok(v as u64),
        _ => Err(errors::bad_setting(
            setting.name(),
            value,
            if least == 0 { "a non-negative integer" } else { "a positive integer" },
        )),
    }
}

/// `None` when the value is not a call of a known optimizer; argument problems of a known one
/// are reported in place.
fn optimizer(value: &Value, scope: &Scope, errors: &mut Vec<Diagnostic>) -> Option<Optimizer> {
    let call = match &value.kind {
        ValueKind::Call(call) => call,
        _ => return None,
    };
    match call.op.name.as_str() {
        "sgd" => {
            let sig = [LR, opt("momentum", Ty::Probability), opt("weight_decay", Ty::NonNegative)];
            let args = match_args(call, "sgd", &sig, scope, errors);
            let (lr, momentum, weight_decay) = SGD_DEFAULTS;
            Some(Optimizer::Sgd {
                lr: args.f64_or("lr", lr),
                momentum: args.f64_or("momentum", momentum),
                weight_decay: args.f64_or("weight_decay", weight_decay),
            })
        }
        "adam" => {
            let sig = [
                LR,
                opt("beta1", Ty::Probability),
                opt("beta2", Ty::Probability),
                opt("eps", Ty::PositiveNumber),
                opt("weight_decay", Ty::NonNegative),
            ];
            let args = match_args(call, "adam", &sig, scope, errors);
            Some(Optimizer::Adam {
                lr: args.f64_or("lr", 0.001),
                beta1: args.f64_or("beta1", 0.9),
                beta2: args.f64_or("beta2", 0.999),
                eps: args.f64_or("eps", 1e-8),
                weight_decay: args.f64_or("weight_decay", 0.0),
            })
        }
        _ => None,
    }
}

fn init(value: &Value, scope: &Scope, errors: &mut Vec<Diagnostic>) -> Option<Init> {
    match &value.kind {
        ValueKind::Ident(w) if w == "xavier" => Some(Init::Xavier),
        ValueKind::Ident(w) if w == "he" => Some(Init::He),
        ValueKind::Call(call) if call.op.name == "normal" => {
            let args = match_args(call, "normal", &[req("std", Ty::PositiveNumber)], scope, errors);
            Some(Init::Normal { std: args.f64_or("std", 0.01) })
        }
        _ => None,
    }
}

/// The preprocessing steps, in the order they apply: what the pixels become (`mean_image`,
/// `scale` or `none`), then optionally `contrast_norm`, then optionally `zca`.
fn preprocess(value: &Value) -> Option<(Preprocess, bool, bool)> {
    let steps: Vec<&str> = match &value.kind {
        ValueKind::Ident(step) => vec![step.as_str()],
        ValueKind::List(items) => items
            .iter()
            .map(|item| match &item.kind {
                ValueKind::Ident(step) => Some(step.as_str()),
                _ => None,
            })
            .collect::<Option<_>>()?,
        _ => return None,
    };
    let (pixels, rest) = match steps.split_first()? {
        (&"mean_image", rest) => (Preprocess::MeanImage, rest),
        (&"scale", rest) => (Preprocess::Scale, rest),
        (&"none", rest) => (Preprocess::None, rest),
        _ => return None,
    };
    let (contrast_norm, rest) = match rest.split_first() {
        Some((&"contrast_norm", rest)) => (true, rest),
        _ => (false, rest),
    };
    match rest {
        [] => Some((pixels, contrast_norm, false)),
        ["zca"] => Some((pixels, contrast_norm, true)),
        _ => None,
    }
}

/// `none`, a flip (`flip_batch`, `flip`), a crop (`crop(pad=4)`), or a list of at most one of each.
fn augment(value: &Value, scope: &Scope, errors: &mut Vec<Diagnostic>) -> Option<Augment> {
    let items = match &value.kind {
        ValueKind::List(items) if !items.is_empty() => items.iter().collect(),
        ValueKind::Ident(w) if w == "none" => return Some(Augment::default()),
        _ => vec![value],
    };
    let mut augment = Augment::default();
    let mut cropped = false;
    for item in items {
        match &item.kind {
            ValueKind::Ident(w) if augment.flip == Flip::None && (w == "flip_batch" || w == "flip") => {
                augment.flip = if w == "flip" { Flip::Example } else { Flip::Batch };
            }
            ValueKind::Call(call) if call.op.name == "crop" && !cropped => {
                let args = match_args(call, "crop", &[req("pad", Ty::Positive)], scope, errors);
                augment.crop_pad = args.usize_or("pad", 1);
                cropped = true;
            }
            _ => return None,
        }
    }
    Some(augment)
}

fn schedule(value: &Value) -> Option<Vec<(f64, usize)>> {
    let ValueKind::List(steps) = &value.kind else {
        return None;
    };
    steps
        .iter()
        .map(|step| match &step.kind {
            ValueKind::List(pair) => match (&pair.first()?.kind, &pair.get(1)?.kind, pair.len()) {
                (ValueKind::Float(lr), ValueKind::Int(n), 2) if *lr > 0.0 && *n >= 1 => Some((*lr, *n as usize)),
                (ValueKind::Int(lr), ValueKind::Int(n), 2) if *lr > 0 && *n >= 1 => Some((*lr as f64, *n as usize)),
                _ => None,
            },
            _ => None,
        })
        .collect::<Option<Vec<_>>>()
        .filter(|s| !s.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The message the `train` block gives for `text`.
    fn block_error(text: &str) -> String {
        let file = netc_syntax::parse(&format!("train {{ {text} }}")).unwrap();
        let mut errors = Vec::new();
        check_train(&file.trains[0], &mut errors);
        assert_eq!(errors.len(), 1, "{errors:?}");
        errors.remove(0).message
    }

    fn value(text: &str) -> Value {
        netc_syntax::parse_value(text).unwrap()
    }

    #[test]
    fn flags_are_checked_exactly_as_the_train_block() {
        for (setting, name) in [(CountSetting::Epochs, "epochs"), (CountSetting::Batch, "batch")] {
            for bad in ["0", "-3", "1.5", "x"] {
                let flag = count_override(setting, &value(bad)).unwrap_err();
                assert_eq!(flag.message, block_error(&format!("{name} = {bad}")));
            }
            assert_eq!(count_override(setting, &value("7")).unwrap(), 7);
        }
        assert_eq!(count_override(CountSetting::Seed, &value("0")).unwrap(), 0);
        assert_eq!(count_override(CountSetting::Seed, &value("-1")).unwrap_err().message, block_error("seed = -1"));
        for bad in ["0", "-1", "nan", "\"0.1\""] {
            let flag = lr_override(&value(bad)).unwrap_err();
            assert_eq!(flag.message, block_error(&format!("optimizer = sgd(lr={bad})")), "{bad}");
            assert_eq!(flag.labels[0].range, 0..bad.len());
        }
        assert_eq!(lr_override(&value("0.05")).unwrap(), 0.05);
        assert_eq!(lr_override(&value("2")).unwrap(), 2.0);
    }

    fn preprocessing(text: &str) -> (Preprocess, bool, bool) {
        let file = netc_syntax::parse(&format!("train {{ preprocess = {text} }}")).unwrap();
        let mut errors = Vec::new();
        let config = check_train(&file.trains[0], &mut errors);
        assert!(errors.is_empty(), "{errors:?}");
        (config.preprocess, config.contrast_norm, config.whiten)
    }

    fn augmentation(text: &str) -> Augment {
        let file = netc_syntax::parse(&format!("train {{ augment = {text} }}")).unwrap();
        let mut errors = Vec::new();
        let config = check_train(&file.trains[0], &mut errors);
        assert!(errors.is_empty(), "{errors:?}");
        config.augment
    }

    #[test]
    fn augmentation_takes_one_flip_and_one_crop() {
        assert_eq!(augmentation("none"), Augment::default());
        assert_eq!(augmentation("flip_batch"), Augment { flip: Flip::Batch, crop_pad: 0 });
        assert_eq!(augmentation("[flip, crop(pad=4)]"), Augment { flip: Flip::Example, crop_pad: 4 });
        assert_eq!(augmentation("crop(pad=2)"), Augment { flip: Flip::None, crop_pad: 2 });
        for bad in ["[flip, flip_batch]", "[crop(pad=1), crop(pad=2)]", "[]", "mirror", "3"] {
            let message = block_error(&format!("augment = {bad}"));
            assert!(message.contains("a list of one flip and one crop"), "{bad}: {message}");
        }
        assert!(block_error("augment = crop(pad=0)").contains("positive integer"));
    }

    #[test]
    fn preprocessing_steps_compose_in_the_recipe_order() {
        assert_eq!(preprocessing("scale"), (Preprocess::Scale, false, false));
        assert_eq!(preprocessing("[mean_image]"), (Preprocess::MeanImage, false, false));
        assert_eq!(preprocessing("[mean_image, contrast_norm, zca]"), (Preprocess::MeanImage, true, true));
        assert_eq!(preprocessing("[none, zca]"), (Preprocess::None, false, true));
        assert_eq!(preprocessing("[scale, contrast_norm]"), (Preprocess::Scale, true, false));
        for bad in [
            "[zca, mean_image]",
            "[mean_image, zca, contrast_norm]",
            "[]",
            "[contrast_norm]",
            "[mean_image, zca, zca]",
            "[mean_image, 1]",
            "whiten",
        ] {
            let message = block_error(&format!("preprocess = {bad}"));
            assert!(message.contains("then contrast_norm, then zca"), "{bad}: {message}");
        }
    }
}
